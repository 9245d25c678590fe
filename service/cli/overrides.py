"""What ``submit`` and ``extend`` send: a spec file, and ``-O KEY=JSON`` overrides with dotted
keys merged into it (or sent with a preset)."""

import json
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from service.cli.core import usage_error

# a value starting like one of these is meant as JSON: a typo in it is an error, not a string
JSON_STARTS = ("{", "[", '"')


def parse_overrides(items: list[str] | None) -> dict[str, Any]:
    """``["budget={\\"epochs\\": 1}", "budget.epochs=1", "name=my-run"]`` → a nested dict.

    The value is JSON when it parses as JSON, else the plain string (``name=my-run``); a dotted
    key sets a nested field. Later items win and nested dicts merge. Raises ``ValueError`` on an
    item without ``=`` or a value that starts as a JSON object, array or string but does not
    parse (``budget={"epochs": 1``).
    """
    merged: dict[str, Any] = {}
    for item in items or []:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"expected KEY=JSON, got {item!r}")
        try:
            value: Any = json.loads(text)
        except ValueError as error:
            if text.lstrip().startswith(JSON_STARTS):
                raise ValueError(f"{key.strip()}: not valid JSON: {error}") from None
            value = text
        path = key.strip().split(".")
        for part in reversed(path[1:]):
            value = {part: value}
        merged = merge(merged, {path[0]: value})
    return merged


def merge(base: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` with ``overrides`` merged in (nested dicts merge by key, as the presets do)."""
    merged = dict(base)
    for key, value in overrides.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def overrides_option(items: list[str] | None) -> dict[str, Any]:
    """:func:`parse_overrides` of ``-O`` items; a bad one ends the command (exit 2)."""
    try:
        return parse_overrides(items)
    except ValueError as error:
        usage_error(f"--override: {error}")


def read_spec(path: Path) -> dict[str, Any]:
    """A JSON or YAML object from a file (``-``: standard input); anything else ends the
    command (exit 2). What YAML reads as a date or another non-JSON value (``name:
    2024-01-01``) is sent as its text."""
    import yaml  # only the commands that read a file need it

    try:
        text = sys.stdin.read() if str(path) == "-" else path.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        usage_error(f"{path}: not UTF-8 text: {error}")
    except OSError as error:
        usage_error(f"{path}: cannot be read: {error.strerror or error}")
    try:
        # YAML for every other name (and stdin): it reads JSON objects too
        spec = json.loads(text) if path.suffix.lower() == ".json" else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as error:
        usage_error(f"{path}: not valid JSON/YAML: {error}")
    if not isinstance(spec, dict):
        usage_error(f"{path}: must be a JSON/YAML object (a mapping)")
    return _as_json(spec)


def _as_json(value: Any) -> Any:
    """``value`` with every key and every value JSON has no type for (a YAML date) as text."""
    if isinstance(value, dict):
        return {k if isinstance(k, str) else str(k): _as_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_as_json(item) for item in value]
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)
