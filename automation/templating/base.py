"""Template constants, limits, clock, issue codes and errors."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, time
from decimal import Decimal
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Final, Literal
from uuid import UUID

if TYPE_CHECKING:
    from config.issues import Issue

Mode = Literal["plain", "html", "header"]
SecretLookup = Callable[[str], str]


MODES: Final = frozenset({"plain", "html", "header"})
BUILTIN_ROOTS: Final = frozenset(
    {"today", "now", "secrets", "steps", "event", "actor", "changes", "run", "workflow", "payload"}
)
# Filter name -> kind of argument it takes.
_FILTER_ARGS: Final[dict[str, str]] = {
    "upper": "none",
    "lower": "none",
    "title": "none",
    "trim": "none",
    "default": "required",
    "date": "string",
    "int": "none",
    "float": "none",
    "str": "none",
    "json": "none",
    "length": "none",
    "join": "optional_string",
    "truncate": "count",
    "urlencode": "none",
    "sum": "none",
}
FILTERS: Final = frozenset(_FILTER_ARGS)
MAX_VALUE_DEPTH: Final = 64
MAX_DAY_OFFSET: Final = 100_000
DEFAULT_MASK: Final = "********"
# What an HTTP client leaves unquoted in a URL (requests' ``requote_uri``).
_URI_SAFE: Final = "!#$&'()*+,/:;=?@[]~"

_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_INDEX = re.compile(r"[0-9]{1,9}")
_INTEGER_ARG = re.compile(r"-?[0-9]+")
_INT_TEXT = re.compile(r"\s*([+-]?[0-9]+)(?:\.[0-9]*)?\s*")
_FLOAT_TEXT = re.compile(r"\s*[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?\s*")
_DATE_DIRECTIVE = re.compile(r"%(-?)(.?)", re.DOTALL)
_DATE_LETTERS = frozenset("aAbBcdefGHIjmMpSuUVwWxXyYzZ%")
_PLAIN_KEY = re.compile(r"[A-Za-z0-9_-]+")
_STRING_ESCAPES = {'"': '"', "\\": "\\", "n": "\n", "t": "\t"}
_SAFE_SCALARS = (str, int, float, Decimal, date, time, UUID)


@dataclass(frozen=True, slots=True)
class Limits:
    """Bounds on one template string: its length, its expressions and its output."""

    max_template_length: int = 20_000
    max_output_length: int = 100_000
    max_expressions: int = 200
    # A value kept with its type (a string that is exactly one ``{{ expr }}``), measured
    # as the characters of its JSON form; and everything one render call produces.
    max_value_size: int = 1_000_000
    max_render_size: int = 4_000_000


DEFAULT_LIMITS: Final = Limits()


@dataclass(frozen=True, slots=True)
class Clock:
    """The moment date tokens render against (``today`` in the project's time zone)."""

    today: date
    now: datetime


def system_clock() -> Clock:
    """Return the current moment from Django (``timezone.now()``, ``timezone.localdate()``)."""
    from django.utils import timezone

    now = timezone.now()
    return Clock(today=timezone.localdate(now), now=now)


class TemplateCode(StrEnum):
    """Stable codes of template issues and errors (callers branch on these)."""

    BAD_DATE_OFFSET = "BAD_DATE_OFFSET"
    BAD_EXPRESSION = "BAD_EXPRESSION"
    BAD_FILTER_ARGUMENT = "BAD_FILTER_ARGUMENT"
    BAD_PATH = "BAD_PATH"
    BAD_SECRET_REFERENCE = "BAD_SECRET_REFERENCE"  # noqa: S105 (a code, not a secret)
    DATE_OUT_OF_RANGE = "DATE_OUT_OF_RANGE"
    EMPTY_EXPRESSION = "EMPTY_EXPRESSION"
    FILTER_ERROR = "FILTER_ERROR"
    HEADER_INJECTION = "HEADER_INJECTION"
    INVALID_SECRET = "INVALID_SECRET"  # noqa: S105 (a code, not a secret)
    INVALID_TEMPLATE = "INVALID_TEMPLATE"
    OUTPUT_TOO_LARGE = "OUTPUT_TOO_LARGE"
    PATH_TOO_DEEP = "PATH_TOO_DEEP"
    PRIVATE_KEY = "PRIVATE_KEY"
    RENDER_FAILED = "RENDER_FAILED"
    SECRETS_UNAVAILABLE = "SECRETS_UNAVAILABLE"
    TEMPLATE_ERROR = "TEMPLATE_ERROR"
    TEMPLATE_TOO_LONG = "TEMPLATE_TOO_LONG"
    TOO_MANY_EXPRESSIONS = "TOO_MANY_EXPRESSIONS"
    UNCLOSED_EXPRESSION = "UNCLOSED_EXPRESSION"
    UNKNOWN_FILTER = "UNKNOWN_FILTER"
    UNKNOWN_SECRET = "UNKNOWN_SECRET"  # noqa: S105 (a code, not a secret)
    UNKNOWN_VARIABLE = "UNKNOWN_VARIABLE"
    UNSUPPORTED_VALUE = "UNSUPPORTED_VALUE"
    VALUE_TOO_DEEP = "VALUE_TOO_DEEP"
    VALUE_TOO_LARGE = "VALUE_TOO_LARGE"


def _template_issue(message: str, code: str) -> Issue:
    """One problem found in a template (``validate_value`` gives it the string's JSON
    path). The one issue type lives in ``config.issues``, imported when first needed so
    that this module imports without Django."""
    from config.issues import Issue

    return Issue("", code, message)


class TemplateError(ValueError):
    """Base of template errors: a human ``message``, a stable ``code`` and ``params``."""

    default_code = TemplateCode.TEMPLATE_ERROR

    def __init__(
        self, message: str, *, code: str | None = None, params: Mapping[str, Any] | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code or self.default_code
        self.params: dict[str, Any] = dict(params or {})


class TemplateSyntaxError(TemplateError):
    """The template text does not follow the grammar; ``issues`` lists every problem."""

    default_code = TemplateCode.INVALID_TEMPLATE

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        params: Mapping[str, Any] | None = None,
        issues: Iterable[Issue] = (),
    ) -> None:
        super().__init__(message, code=code, params=params)
        self.issues: tuple[Issue, ...] = tuple(issues) or (_template_issue(message, self.code),)


class TemplateRenderError(TemplateError):
    """Rendering failed against this context (unknown secret, injection, limits...)."""

    default_code = TemplateCode.RENDER_FAILED


@dataclass(frozen=True, slots=True)
class RenderResult:
    """A rendered value and the secret values it used (to pass to :func:`redact`)."""

    value: Any
    secrets_used: set[str] = field(default_factory=set)
