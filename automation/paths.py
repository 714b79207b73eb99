"""The one path grammar: conditions (``{"field": "lead.owner.email"}``) and templates
(``{{ lead.owner.email }}``) name values in a run's context the same way, and look them up
the same way.

A path is keys separated by single dots: each key is letters, digits, ``_`` or ``-``
(``lead.first-name``), not starting with ``_`` (private); a key of digits alone also
indexes a list (``items.0.name``). At most :data:`MAX_DEPTH` keys and
:data:`MAX_LENGTH` characters.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Final

MAX_DEPTH: Final = 32
MAX_LENGTH: Final = 255
_KEY = re.compile(r"[\w-]+")
_INDEX = re.compile(r"[0-9]{1,9}")


class PathInvalid(ValueError):
    """A path outside the grammar; ``code`` is one of ``BAD_PATH``, ``PRIVATE_KEY``,
    ``PATH_TOO_DEEP``."""

    def __init__(self, message: str, code: str) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


class _Missing:
    """The value of a path that does not resolve."""

    def __repr__(self) -> str:
        return "MISSING"


MISSING: Final = _Missing()


def parse_path(text: str) -> tuple[str, ...]:
    """The keys of ``text``; :class:`PathInvalid` when it is not a path."""
    if len(text) > MAX_LENGTH:
        raise PathInvalid(f"path is longer than {MAX_LENGTH} characters", "BAD_PATH")
    keys = tuple(text.split("."))
    if len(keys) > MAX_DEPTH:
        raise PathInvalid(f"path is deeper than {MAX_DEPTH} segments: '{text}'", "PATH_TOO_DEEP")
    for key in keys:
        if key.startswith("_"):
            raise PathInvalid(f"keys starting with '_' are not allowed: '{key}'", "PRIVATE_KEY")
        if not _KEY.fullmatch(key):
            raise PathInvalid(
                f"invalid path '{text}': use names and list indexes separated by dots,"
                " e.g. lead.owner.email or items.0.name",
                "BAD_PATH",
            )
    return keys


def is_path(text: object) -> bool:
    try:
        return isinstance(text, str) and bool(parse_path(text))
    except PathInvalid:
        return False


def lookup(context: object, keys: tuple[str, ...]) -> Any:
    """The value at ``keys`` in plain data (mappings by key, lists and tuples by an index
    key), or :data:`MISSING`."""
    value = context
    for key in keys:
        if isinstance(value, Mapping):
            value = value.get(key, MISSING)
        elif isinstance(value, list | tuple) and _INDEX.fullmatch(key):
            index = int(key)
            value = value[index] if index < len(value) else MISSING
        else:
            return MISSING
        if value is MISSING:
            return MISSING
    return value
