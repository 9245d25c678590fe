"""User text: the one length limit per kind of text, shared by the spec and the SQL schema, and
the check that a string can be stored and shown.

A limit here is the length of the column that stores the text (``String(n)`` in
:mod:`studies.store.models`) and the ``max_length`` the spec accepts, so that what validates
also fits: PostgreSQL refuses a longer value (SQLite stores it silently), and a refusal at
insert time would be a 500 instead of a 422 naming the field. Lengths are in characters
(code points), as both pydantic and PostgreSQL count them.

:func:`text_problem` says why a string cannot be stored or shown, or ``None``:

- a lone surrogate (``"\\ud800"``; ``json.loads`` accepts its ``\\u`` escape) has no UTF-8
  form, so the database driver and the JSON response encoder both fail on it;
- NUL cannot be held by PostgreSQL text;
- other control characters (C0, DEL, C1: line breaks, escapes, bells) have no place in a
  one-line name, label or tag and break table, CSV and plot layouts.

:data:`StudyName`, :data:`StudyTag` and :data:`OptimizerLabel` are the pydantic types of
those fields. Their check runs before pydantic's own string validation, so the message says
what is wrong (not "unable to parse raw data as a unicode string"). Messages never contain the
offending character itself: a response holding a lone surrogate could not be encoded either.

Torch-free and matplotlib-free: the spec, the store and the API all import it.
"""

import unicodedata
from typing import Annotated, Any

from pydantic import BeforeValidator, StringConstraints

NAME_MAX = 200  # a study's name: sens_studies.name
TAG_MAX = 100  # one tag of a study (stored in the JSON column sens_studies.tags)
TAGS_MAX = 50  # tags per study: the JSON column is unbounded, the list is not
LABEL_MAX = 100  # an optimizer entry's row label: sens_trials.optimizer
TASK_MAX = 100  # a task's catalog name: sens_studies.task
METRIC_NAME_MAX = 100  # a reported metric's name: sens_metric_points.name
IDEMPOTENCY_KEY_MAX = 255  # the Idempotency-Key of POST /studies: sens_studies.idempotency_key


def text_problem(value: str) -> str | None:
    """Why ``value`` cannot be stored and shown (see the module docstring), or ``None``."""
    for index, character in enumerate(value):
        category = unicodedata.category(character)
        if category == "Cs":
            return (
                f"must not contain a lone surrogate (U+{ord(character):04X} at character {index})"
            )
        if category == "Cc":
            return (
                f"must not contain control characters (U+{ord(character):04X} at character {index})"
            )
    return None


def check_text(value: Any) -> Any:
    """A pydantic before-validator: ``ValueError`` for a string with a :func:`text_problem`;
    anything else goes on unchanged (to the type's own validation, which refuses non-strings)."""
    if isinstance(value, str):
        problem = text_problem(value)
        if problem is not None:
            raise ValueError(problem)
    return value


# the order matters: the check wraps (runs before) pydantic's string validation
StudyName = Annotated[
    str, StringConstraints(min_length=1, max_length=NAME_MAX), BeforeValidator(check_text)
]
StudyTag = Annotated[
    str, StringConstraints(min_length=1, max_length=TAG_MAX), BeforeValidator(check_text)
]
# an empty label is allowed, as before: the entry's row is then its registry name
OptimizerLabel = Annotated[
    str, StringConstraints(min_length=0, max_length=LABEL_MAX), BeforeValidator(check_text)
]
