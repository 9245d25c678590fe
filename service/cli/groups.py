"""Options that several commands share, declared once: ``@grouped(name=GROUP)`` lets a command
take a group of options as one parameter.

Typer reads a command's options from its signature, one parameter each, and the analyses take
the same seven (the metric, its direction, ``--value`` and the slice of the other axes): each
would write them out again. :func:`grouped` puts a group's options into the signature that typer
reads, at the place of the command's parameter ``name``, and calls the command with the dict of
their values there; the command line and ``--help`` are those of the options written out.
"""

import functools
import inspect
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])
# a group: each option's parameter name -> its type, ``Annotated[..., typer.Option(...)]``
OptionGroup = Mapping[str, Any]
# what the command's parameter of a group holds: each option's name -> its value
GroupValues = dict[str, Any]


def grouped(**groups: OptionGroup) -> Callable[[F], F]:
    """The decorator (under ``@app.command``) that expands, for each ``name=GROUP``, the
    command's keyword-only parameter ``name`` into the group's options, in the group's order,
    each defaulting to ``None`` (not given); the command gets ``{option: value}`` as ``name``.
    A ``name`` that is not a keyword-only parameter of the command is a TypeError."""

    def decorate(command: F) -> F:
        signature = inspect.signature(command)
        given = signature.parameters
        wrong = [n for n in groups if n not in given or given[n].kind is not given[n].KEYWORD_ONLY]
        if wrong:
            raise TypeError(f"{command.__name__} has no keyword-only parameter {wrong[0]!r}")
        parameters = []
        for parameter in given.values():
            group = groups.get(parameter.name)
            if group is None:
                parameters.append(parameter)
                continue
            parameters += [
                inspect.Parameter(name, parameter.KEYWORD_ONLY, default=None, annotation=kind)
                for name, kind in group.items()
            ]

        @functools.wraps(command)
        def run(**values: Any) -> Any:
            for name, group in groups.items():
                values[name] = {option: values.pop(option) for option in group}
            return command(**values)

        # what typer reads: the signature (inspect stops at __signature__ rather than follow
        # __wrapped__ back to the command) and the type hints (of __annotations__)
        run.__signature__ = signature.replace(parameters=parameters)  # type: ignore[attr-defined]
        run.__annotations__ = {
            p.name: p.annotation for p in parameters if p.annotation is not p.empty
        }
        if signature.return_annotation is not signature.empty:
            run.__annotations__["return"] = signature.return_annotation
        return run  # type: ignore[return-value]

    return decorate
