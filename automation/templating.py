"""Workflow templates: a small grammar of our own, rendered over a JSON-like context.

Step configs hold strings such as ``"Follow up with {{ lead.company_name }}"``. They are
rendered against a pre-serialized context dict (dicts, lists, str, int, float, bool,
None) and never against model instances. The grammar is closed and has no way to call
anything or to reach Python attributes, so it is safe by construction:

    text        := (literal | "{{" expr "}}")*
    expr        := head ("|" filter)*
    head        := path | "today" | "today+N" | "today-N" | "now" | "secrets.NAME"
    path        := name ("." (name | index))*      e.g. lead.owner.email, items.0.name
    filter      := name [":" ("\\"string\\"" | integer)]

Paths only look up dict keys and list indexes; keys starting with ``_`` are refused.
A missing path renders as "" (or None for a typed single expression). A string that is
exactly one ``{{ expr }}`` keeps the value's type in "plain" mode. Output is escaped for
where it goes: ``html`` escapes interpolated values, ``header`` refuses CR/LF. Secrets
are looked up by name through a caller-supplied callable and every value used is
reported in :class:`RenderResult` so callers can :func:`redact` logs and run records.
There is no escape for a literal ``{{``, and an expression ends at the first ``}}``.
"""

from __future__ import annotations

import html
import json
import math
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from enum import StrEnum
from functools import lru_cache
from typing import TYPE_CHECKING, Any, Final, Literal
from urllib.parse import quote, quote_plus, urlencode
from uuid import UUID

if TYPE_CHECKING:
    from config.issues import Issue

__all__ = [
    "BUILTIN_ROOTS",
    "DEFAULT_LIMITS",
    "FILTERS",
    "MODES",
    "Clock",
    "Limits",
    "Mode",
    "RenderResult",
    "TemplateCode",
    "TemplateError",
    "TemplateRenderError",
    "TemplateSyntaxError",
    "redact",
    "render_string",
    "render_value",
    "secret_forms",
    "secret_pattern",
    "system_clock",
    "template_paths",
    "template_roots",
    "validate_template",
    "validate_value",
]

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
MAX_PATH_DEPTH: Final = 32
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


class _Missing:
    """Marker for a path that does not resolve."""


_MISSING: Final = _Missing()


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


# --- parsing -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Filter:
    name: str
    arg: str | int | None


@dataclass(frozen=True, slots=True)
class _Expr:
    kind: Literal["path", "secret", "today", "now"]
    path: tuple[str, ...] = ()
    offset: int = 0
    filters: tuple[_Filter, ...] = ()

    @property
    def root(self) -> str:
        return self.path[0] if self.path else self.kind


@dataclass(frozen=True, slots=True)
class _Template:
    parts: tuple[str | _Expr, ...]
    expressions: tuple[_Expr, ...]
    issues: tuple[Issue, ...]
    single: _Expr | None


class _ParseIssue(Exception):
    def __init__(self, message: str, code: str) -> None:
        super().__init__(message)
        self.issue = _template_issue(message, code)


@lru_cache(maxsize=4096)
def _parse(text: str) -> _Template:
    """Split ``text`` into literals and expressions, collecting every syntax issue."""
    parts: list[str | _Expr] = []
    issues: list[Issue] = []
    pos = end = 0
    while True:
        start = text.find("{{", pos)
        if start == -1:
            if pos < len(text):
                parts.append(text[pos:])
            break
        if start > pos:
            parts.append(text[pos:start])
        if end < start + 2:  # reuse the closing "}}" after a nested "{{": stays linear
            end = text.find("}}", start + 2)
        nested = text.find("{{", start + 2, end) if end != -1 else -1
        if end == -1 or nested != -1:
            issues.append(
                _template_issue(
                    f"unclosed '{{{{' at position {start}", TemplateCode.UNCLOSED_EXPRESSION
                )
            )
            if end == -1:
                break
            pos = nested
            continue
        try:
            parts.append(_parse_expression(text[start + 2 : end]))
        except _ParseIssue as exc:
            issues.append(exc.issue)
        pos = end + 2
    expressions = tuple(part for part in parts if isinstance(part, _Expr))
    single = None
    only_space = all(isinstance(part, _Expr) or not part.strip() for part in parts)
    if not issues and len(expressions) == 1 and only_space:
        single = expressions[0]
    return _Template(tuple(parts), expressions, tuple(issues), single)


def _parse_expression(body: str) -> _Expr:
    source = body.strip()
    if not source:
        raise _ParseIssue("empty expression '{{ }}'", TemplateCode.EMPTY_EXPRESSION)
    head, bar, rest = source.partition("|")
    head = head.strip()
    if not head:
        raise _ParseIssue(
            "expression has filters but no value before '|'", TemplateCode.EMPTY_EXPRESSION
        )
    filters = _parse_filters(rest) if bar else ()
    return _parse_head(head, filters)


def _parse_head(head: str, filters: tuple[_Filter, ...]) -> _Expr:
    word = _IDENT.match(head)
    if word and word.group() in ("today", "now"):
        date_word, rest = word.group(), head[word.end() :].strip()
        if not rest:
            return _Expr(date_word, filters=filters)
        if rest[0] in "+-":
            if date_word == "now":
                raise _ParseIssue(
                    "'now' takes no offset; use today+N", TemplateCode.BAD_DATE_OFFSET
                )
            digits = rest[1:].strip()
            if not digits.isascii() or not digits.isdigit():
                raise _ParseIssue(
                    f"date offset must be a whole number of days: '{head}'",
                    TemplateCode.BAD_DATE_OFFSET,
                )
            if len(digits) > 6 or int(digits) > MAX_DAY_OFFSET:
                raise _ParseIssue(
                    f"date offset is larger than {MAX_DAY_OFFSET} days: '{head}'",
                    TemplateCode.BAD_DATE_OFFSET,
                )
            sign = -1 if rest[0] == "-" else 1
            return _Expr("today", offset=sign * int(digits), filters=filters)
        if rest[0] == ".":
            raise _ParseIssue(
                f"'{date_word}' is a date token and has no fields", TemplateCode.BAD_PATH
            )
    segments = head.split(".")
    if len(segments) > MAX_PATH_DEPTH:
        raise _ParseIssue(
            f"path is deeper than {MAX_PATH_DEPTH} segments: '{head}'", TemplateCode.PATH_TOO_DEEP
        )
    for index, segment in enumerate(segments):
        if segment.startswith("_"):
            raise _ParseIssue(
                f"keys starting with '_' are not allowed: '{segment}'", TemplateCode.PRIVATE_KEY
            )
        if _IDENT.fullmatch(segment) or (index and _INDEX.fullmatch(segment)):
            continue
        raise _ParseIssue(
            f"invalid path '{head}': use names and list indexes separated by dots,"
            " e.g. lead.owner.email or items.0.name",
            TemplateCode.BAD_PATH,
        )
    if segments[0] == "secrets":
        if len(segments) != 2 or not _IDENT.fullmatch(segments[1]):
            raise _ParseIssue(
                f"secrets are referenced by name as secrets.NAME, not '{head}'",
                TemplateCode.BAD_SECRET_REFERENCE,
            )
        return _Expr("secret", path=tuple(segments), filters=filters)
    return _Expr("path", path=tuple(segments), filters=filters)


def _parse_filters(text: str) -> tuple[_Filter, ...]:
    filters: list[_Filter] = []
    pos = 0
    while True:
        pos = _skip_space(text, pos)
        match = _IDENT.match(text, pos)
        if not match:
            raise _ParseIssue("expected a filter name after '|'", TemplateCode.BAD_EXPRESSION)
        name, pos = match.group(), _skip_space(text, match.end())
        if name not in _FILTER_ARGS:
            known = ", ".join(sorted(FILTERS))
            raise _ParseIssue(
                f"unknown filter '{name}' (known: {known})", TemplateCode.UNKNOWN_FILTER
            )
        arg: str | int | None = None
        has_arg = pos < len(text) and text[pos] == ":"
        if has_arg:
            arg, pos = _parse_argument(text, _skip_space(text, pos + 1), name)
            pos = _skip_space(text, pos)
        _check_filter(name, arg, has_arg)
        filters.append(_Filter(name, arg))
        if pos >= len(text):
            return tuple(filters)
        if text[pos] != "|":
            raise _ParseIssue(
                f"unexpected '{text[pos:]}' after filter '{name}'", TemplateCode.BAD_EXPRESSION
            )
        pos += 1


def _skip_space(text: str, pos: int) -> int:
    while pos < len(text) and text[pos].isspace():
        pos += 1
    return pos


def _parse_argument(text: str, pos: int, name: str) -> tuple[str | int, int]:
    if pos < len(text) and text[pos] == '"':
        chars: list[str] = []
        pos += 1
        while pos < len(text):
            char = text[pos]
            if char == '"':
                return "".join(chars), pos + 1
            if char == "\\":
                escaped = _STRING_ESCAPES.get(text[pos + 1 : pos + 2])
                if escaped is None:
                    raise _ParseIssue(
                        f"filter '{name}': unsupported escape in string argument"
                        ' (use \\" \\\\ \\n or \\t)',
                        TemplateCode.BAD_FILTER_ARGUMENT,
                    )
                chars.append(escaped)
                pos += 2
                continue
            chars.append(char)
            pos += 1
        raise _ParseIssue(
            f"filter '{name}': unterminated string argument", TemplateCode.BAD_FILTER_ARGUMENT
        )
    match = _INTEGER_ARG.match(text, pos)
    if not match:
        raise _ParseIssue(
            f"filter '{name}': argument must be a double-quoted string or an integer",
            TemplateCode.BAD_FILTER_ARGUMENT,
        )
    if len(match.group()) > 10:
        raise _ParseIssue(
            f"filter '{name}': integer argument too large", TemplateCode.BAD_FILTER_ARGUMENT
        )
    return int(match.group()), match.end()


def _check_filter(name: str, arg: str | int | None, has_arg: bool) -> None:
    kind = _FILTER_ARGS[name]
    problem = None
    if kind == "none" and has_arg:
        problem = f"filter '{name}' takes no argument"
    elif kind == "required" and not has_arg:
        problem = f"filter '{name}' needs an argument, e.g. {name}:\"n/a\""
    elif kind in ("string", "optional_string") and not isinstance(arg, str):
        if kind == "string" or has_arg:
            problem = f"filter '{name}' needs a double-quoted string argument"
    elif kind == "count" and not (isinstance(arg, int) and arg >= 0):
        problem = f"filter '{name}' needs a non-negative integer argument"
    elif name == "date" and isinstance(arg, str):
        for directive in _DATE_DIRECTIVE.finditer(arg):
            if directive.group(2) not in _DATE_LETTERS or (
                directive.group(1) and directive.group(2) == "%"
            ):
                problem = f"filter 'date' does not support '{directive.group()}'"
                break
    if problem:
        raise _ParseIssue(problem, TemplateCode.BAD_FILTER_ARGUMENT)


def _checked_template(text: str, limits: Limits) -> _Template:
    """Parse ``text`` within ``limits``, raising :class:`TemplateSyntaxError` on issues."""
    if len(text) > limits.max_template_length:
        raise TemplateSyntaxError(
            f"template is longer than {limits.max_template_length} characters",
            code=TemplateCode.TEMPLATE_TOO_LONG,
        )
    template = _parse(text)
    if template.issues:
        first = template.issues[0]
        raise TemplateSyntaxError(first.message, code=first.code, issues=template.issues)
    if len(template.expressions) > limits.max_expressions:
        raise TemplateSyntaxError(
            f"template has more than {limits.max_expressions} expressions",
            code=TemplateCode.TOO_MANY_EXPRESSIONS,
        )
    return template


# --- values --------------------------------------------------------------------------


def _child(value: Any, segment: str) -> Any:
    """Look one path segment up in plain data only; base-class methods, no overrides."""
    if isinstance(value, dict):
        return dict.get(value, segment, _MISSING)
    if isinstance(value, list | tuple) and segment.isdigit():
        base = list if isinstance(value, list) else tuple
        index = int(segment)
        if index < base.__len__(value):
            return base.__getitem__(value, index)
    return _MISSING


def _unsupported(value: Any) -> TemplateRenderError:
    return TemplateRenderError(
        f"cannot render a value of type '{type(value).__name__}'",
        code=TemplateCode.UNSUPPORTED_VALUE,
    )


def _copy_data(value: Any, *, for_json: bool = False, depth: int = 0) -> Any:
    """Copy plain data; with ``for_json`` turn Decimal, dates and UUIDs into strings."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, _SAFE_SCALARS):
        return _to_text(value) if for_json else value
    if depth >= MAX_VALUE_DEPTH:
        raise TemplateRenderError(
            f"value is nested deeper than {MAX_VALUE_DEPTH} levels",
            code=TemplateCode.VALUE_TOO_DEEP,
        )
    if isinstance(value, dict):
        copied = {}
        for key, item in dict.items(value):
            if key is not None and not isinstance(key, bool | int | float | str):
                raise _unsupported(key)
            copied[key] = _copy_data(item, for_json=for_json, depth=depth + 1)
        return copied
    if isinstance(value, list | tuple):
        items = list.__iter__(value) if isinstance(value, list) else tuple.__iter__(value)
        return [_copy_data(item, for_json=for_json, depth=depth + 1) for item in items]
    raise _unsupported(value)


def _data_size(value: Any, limit: int) -> int:
    """The length of ``value``'s compact JSON form, about (strings counted unescaped);
    raises ``value_too_large`` as soon as it passes ``limit``, without copying anything."""
    size = 0
    pending: list[tuple[Any, int]] = [(value, 0)]
    while pending:
        item, depth = pending.pop()
        if isinstance(item, str):
            size += len(item) + 2
        elif isinstance(item, dict):
            if depth >= MAX_VALUE_DEPTH:
                raise TemplateRenderError(
                    f"value is nested deeper than {MAX_VALUE_DEPTH} levels",
                    code=TemplateCode.VALUE_TOO_DEEP,
                )
            size += 2 + dict.__len__(item)
            for key, child in dict.items(item):
                size += (len(key) if isinstance(key, str) else 8) + 3
                pending.append((child, depth + 1))
        elif isinstance(item, list | tuple):
            if depth >= MAX_VALUE_DEPTH:
                raise TemplateRenderError(
                    f"value is nested deeper than {MAX_VALUE_DEPTH} levels",
                    code=TemplateCode.VALUE_TOO_DEEP,
                )
            base = list if isinstance(item, list) else tuple
            size += 2 + base.__len__(item)
            pending.extend((child, depth + 1) for child in base.__iter__(item))
        elif item is None or isinstance(item, (bool, float, *_SAFE_SCALARS)):
            size += len(_to_text(item)) if not isinstance(item, float) else 24
        if size > limit:
            raise TemplateRenderError(
                f"the value is larger than {limit} characters (as JSON)",
                code=TemplateCode.VALUE_TOO_LARGE,
                params={"limit": limit},
            )
    return size


def _to_json(value: Any) -> str:
    try:
        return json.dumps(
            _copy_data(value, for_json=True),
            separators=(",", ":"),
            ensure_ascii=False,
            allow_nan=False,
        )
    except ValueError as exc:
        if isinstance(exc, TemplateError):
            raise
        message = "value cannot be written as JSON"
        raise TemplateRenderError(message, code=TemplateCode.UNSUPPORTED_VALUE) from exc


def _to_text(value: Any) -> str:
    """Stringify a value: None -> "", bools -> true/false, containers -> compact JSON."""
    if value is None or value is _MISSING:
        return ""
    if isinstance(value, str):
        return str.__str__(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        try:
            return int.__repr__(value)
        except ValueError as exc:
            message = "number too large to render"
            raise TemplateRenderError(message, code=TemplateCode.UNSUPPORTED_VALUE) from exc
    if isinstance(value, float):
        return float.__repr__(value)
    if isinstance(value, Decimal):
        return Decimal.__str__(value)
    if isinstance(value, datetime):
        return datetime.isoformat(value)
    if isinstance(value, date):
        return date.isoformat(value)
    if isinstance(value, time):
        return time.isoformat(value)
    if isinstance(value, UUID):
        return UUID.__str__(value)
    if isinstance(value, dict | list | tuple):
        return _to_json(value)
    raise _unsupported(value)


# --- filters -------------------------------------------------------------------------


def _filter_failed(name: str, expected: str) -> TemplateRenderError:
    return TemplateRenderError(
        f"filter '{name}' expects {expected}",
        code=TemplateCode.FILTER_ERROR,
        params={"filter": name},
    )


def _filter_default(value: Any, arg: Any) -> Any:
    return arg if value is None or (isinstance(value, str) and not value) else value


def _filter_date(value: Any, fmt: Any) -> str:
    if value is None or (isinstance(value, str) and not value.strip()):
        return ""
    moment: date
    if isinstance(value, date):
        moment = value
    elif isinstance(value, str):
        text = value.strip()
        try:
            moment = date.fromisoformat(text)
        except ValueError:
            try:
                moment = datetime.fromisoformat(text)
            except ValueError:
                raise _filter_failed("date", "an ISO date or datetime") from None
    else:
        raise _filter_failed("date", "an ISO date or datetime")
    try:
        return moment.strftime(fmt)
    except (ValueError, OverflowError):
        raise _filter_failed("date", "a date it can format") from None


def _filter_int(value: Any, _arg: Any) -> int:
    if isinstance(value, int):
        return int(value)
    try:
        if isinstance(value, float | Decimal):
            return int(value)
        if isinstance(value, str) and (match := _INT_TEXT.fullmatch(value)):
            return int(match.group(1))
    except (ValueError, OverflowError, ArithmeticError):
        pass
    raise _filter_failed("int", "a number")


def _filter_float(value: Any, _arg: Any) -> float:
    number = None
    try:
        numeric = isinstance(value, int | float | Decimal)
        if numeric or (isinstance(value, str) and _FLOAT_TEXT.fullmatch(value)):
            number = float(value)
    except (ValueError, OverflowError):
        number = None
    if number is None or not math.isfinite(number):
        raise _filter_failed("float", "a finite number")
    return number


def _filter_length(value: Any, _arg: Any) -> int:
    if value is None:
        return 0
    for base in (str, list, tuple, dict):
        if isinstance(value, base):
            return base.__len__(value)
    raise _filter_failed("length", "a string, list or object")


def _filter_join(value: Any, separator: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, list | tuple):
        items = list.__iter__(value) if isinstance(value, list) else tuple.__iter__(value)
        return (", " if separator is None else separator).join(_to_text(item) for item in items)
    raise _filter_failed("join", "a list")


def _filter_urlencode(value: Any, _arg: Any) -> str:
    try:
        if isinstance(value, dict):
            pairs = [(_to_text(key), _to_text(item)) for key, item in dict.items(value)]
            return urlencode(pairs, quote_via=quote)
        return quote(_to_text(value), safe="")
    except UnicodeEncodeError:
        raise _filter_failed("urlencode", "text that can be encoded as UTF-8") from None


def _sum_term(item: Any) -> Decimal | None:
    if item is None:
        return None
    if isinstance(item, bool):
        raise _filter_failed("sum", "numbers (not true/false)")
    if isinstance(item, int):
        return Decimal(int(item))
    if isinstance(item, float):
        if not math.isfinite(item):
            raise _filter_failed("sum", "finite numbers")
        return Decimal(repr(float(item)))
    if isinstance(item, Decimal):
        if not item.is_finite():
            raise _filter_failed("sum", "finite numbers")
        return item
    if isinstance(item, str) and _FLOAT_TEXT.fullmatch(item):
        return _sum_term(float(item)) if ("e" in item or "E" in item) else Decimal(item.strip())
    raise _filter_failed("sum", "a list of numbers or an object whose values are numbers")


def _filter_sum(value: Any, _arg: Any) -> int | float:
    """Sum a list of numbers, or an object's values; missing (null) items count as 0.

    Decimal arithmetic, so 33.3 + 33.3 + 33.4 is exactly 100; a whole result is an int.
    Numeric strings count as numbers; anything else is a filter error.
    """
    if value is None:
        return 0
    if isinstance(value, dict):
        items = list(dict.values(value))
    elif isinstance(value, list | tuple):
        items = (
            list(list.__iter__(value)) if isinstance(value, list) else list(tuple.__iter__(value))
        )
    else:
        raise _filter_failed("sum", "a list of numbers or an object whose values are numbers")
    if len(items) > 100_000:
        raise _filter_failed("sum", "at most 100000 items")
    total = Decimal(0)
    for item in items:
        term = _sum_term(item)
        if term is not None:
            total += term
    if total == total.to_integral_value():
        return int(total)
    return float(total)


_FILTER_FUNCTIONS: Final[dict[str, Callable[[Any, Any], Any]]] = {
    "upper": lambda value, _arg: _to_text(value).upper(),
    "lower": lambda value, _arg: _to_text(value).lower(),
    "title": lambda value, _arg: _to_text(value).title(),
    "trim": lambda value, _arg: _to_text(value).strip(),
    "default": _filter_default,
    "date": _filter_date,
    "int": _filter_int,
    "float": _filter_float,
    "str": lambda value, _arg: _to_text(value),
    "json": lambda value, _arg: _to_json(value),
    "length": _filter_length,
    "join": _filter_join,
    "truncate": lambda value, count: _to_text(value)[:count],
    "urlencode": _filter_urlencode,
    "sum": _filter_sum,
}


# --- rendering -----------------------------------------------------------------------


def _check_mode(mode: str) -> None:
    if mode not in MODES:
        raise ValueError(f"unknown template mode {mode!r}; expected one of {sorted(MODES)}")


def _child_path(base: str, key: Any) -> str:
    if isinstance(key, int) and not isinstance(key, bool):
        return f"{base}[{key}]"
    text = key if isinstance(key, str) else str(key)
    if _PLAIN_KEY.fullmatch(text):
        return f"{base}.{text}"
    return f"{base}[{json.dumps(text, ensure_ascii=False)}]"


class _Renderer:
    """State of one render call: context, secrets seen, and a lazily read clock."""

    def __init__(
        self,
        context: Mapping[str, Any],
        secrets: SecretLookup | None,
        clock: Clock | None,
        limits: Limits | None,
    ) -> None:
        self.context = context if isinstance(context, dict) else dict(context)
        self.secrets = secrets
        self.clock = clock
        self.limits = limits or DEFAULT_LIMITS
        self.secrets_used: set[str] = set()
        self._secret_values: dict[str, str] = {}
        self._rendered_size = 0

    def tree(self, value: Any, mode: str, modes: Mapping[str, str], path: str, depth: int) -> Any:
        try:
            if isinstance(value, str):
                return self.text(value, mode, typed=True)
            if depth >= MAX_VALUE_DEPTH:
                raise TemplateRenderError(
                    f"value is nested deeper than {MAX_VALUE_DEPTH} levels",
                    code=TemplateCode.VALUE_TOO_DEEP,
                )
            if isinstance(value, dict):
                rendered = {}
                for key, item in value.items():
                    item_mode = (
                        modes.get(key, mode) if depth == 0 and isinstance(key, str) else mode
                    )
                    rendered[key] = self.tree(
                        item, item_mode, modes, _child_path(path, key), depth + 1
                    )
                return rendered
            if isinstance(value, list | tuple):
                return [
                    self.tree(item, mode, modes, _child_path(path, index), depth + 1)
                    for index, item in enumerate(value)
                ]
            return value
        except TemplateError as exc:
            exc.params.setdefault("path", path)
            raise

    def text(self, text: str, mode: str, *, typed: bool) -> Any:
        limits = self.limits
        if "{{" not in text:
            if len(text) > limits.max_template_length:
                _checked_template(text, limits)  # raises template_too_long
            return self._finish(text, mode)
        template = _checked_template(text, limits)
        if typed and mode == "plain" and template.single is not None:
            value = self.evaluate(template.single)
            if isinstance(value, str):
                self._note_secret_output(template.single, value)
                return self._finish(value, mode)
            self._count(_data_size(value, self.limits.max_value_size))
            return _copy_data(value)
        pieces: list[str] = []
        size = 0
        for part in template.parts:
            if isinstance(part, _Expr):
                piece = _to_text(self.evaluate(part))
                if mode == "html":
                    piece = html.escape(piece, quote=True)
                self._note_secret_output(part, piece)
            else:
                piece = part
            size += len(piece)
            if size > limits.max_output_length:
                raise self._too_large()
            pieces.append(piece)
        return self._finish("".join(pieces), mode)

    def _finish(self, text: str, mode: str) -> str:
        if len(text) > self.limits.max_output_length:
            raise self._too_large()
        self._count(len(text))
        if mode == "header" and ("\r" in text or "\n" in text):
            raise TemplateRenderError(
                "line breaks are not allowed in headers, subjects and addresses",
                code=TemplateCode.HEADER_INJECTION,
            )
        return text

    def _count(self, size: int) -> None:
        """Add ``size`` to what this render call produced; refuse past the render limit."""
        self._rendered_size += size
        if self._rendered_size > self.limits.max_render_size:
            raise TemplateRenderError(
                f"the rendered values are larger than {self.limits.max_render_size} "
                "characters in all",
                code=TemplateCode.VALUE_TOO_LARGE,
            )

    def _too_large(self) -> TemplateRenderError:
        return TemplateRenderError(
            f"rendered text is longer than {self.limits.max_output_length} characters",
            code=TemplateCode.OUTPUT_TOO_LARGE,
        )

    def evaluate(self, expr: _Expr) -> Any:
        if expr.kind == "path":
            value = self.context
            for segment in expr.path:
                value = _child(value, segment)
                if value is _MISSING:
                    value = None
                    break
        elif expr.kind == "secret":
            value = self._secret(expr.path[1])
        elif expr.kind == "today":
            try:
                value = (self._clock().today + timedelta(days=expr.offset)).isoformat()
            except OverflowError:
                message = "date is out of range"
                raise TemplateRenderError(message, code=TemplateCode.DATE_OUT_OF_RANGE) from None
        else:
            value = self._clock().now.isoformat()
        for item in expr.filters:
            value = _FILTER_FUNCTIONS[item.name](value, item.arg)
        return value

    def _clock(self) -> Clock:
        if self.clock is None:
            self.clock = system_clock()
        return self.clock

    def _secret(self, name: str) -> str:
        if name in self._secret_values:
            return self._secret_values[name]
        params = {"name": name}
        if self.secrets is None:
            raise TemplateRenderError(
                f"secret '{name}' cannot be used here: no secrets are available",
                code=TemplateCode.SECRETS_UNAVAILABLE,
                params=params,
            )
        try:
            value = self.secrets(name)
        except LookupError:
            value = None
        if value is None:
            raise TemplateRenderError(
                f"unknown secret '{name}'", code=TemplateCode.UNKNOWN_SECRET, params=params
            )
        if not isinstance(value, str):
            raise TemplateRenderError(
                f"secret '{name}' is not a string", code=TemplateCode.INVALID_SECRET, params=params
            )
        self._secret_values[name] = value
        if value:
            self.secrets_used.add(value)
        return value

    def _note_secret_output(self, expr: _Expr, output: str) -> None:
        """Record a filtered or escaped form of a secret so redaction also masks it."""
        if expr.kind == "secret" and output and self._secret_values.get(expr.path[1]):
            self.secrets_used.add(output)


def render_value(
    value: Any,
    context: Mapping[str, Any],
    *,
    secrets: SecretLookup | None = None,
    clock: Clock | None = None,
    mode: Mode = "plain",
    modes: Mapping[str, Mode] | None = None,
    limits: Limits | None = None,
    path: str = "config",
) -> RenderResult:
    """Render every string inside ``value`` (dicts and lists walked; keys left alone).

    A string that is exactly one ``{{ expr }}`` keeps the value's type in "plain" mode;
    "html" and "header" modes always produce strings. ``modes`` picks a mode per
    top-level key (``{"subject": "header", "html_body": "html"}``); other keys use
    ``mode``. ``secrets`` maps a secret name to its value and raises ``KeyError`` (or
    returns None) when unknown. Errors carry the failing JSON path in ``params["path"]``.
    """
    _check_mode(mode)
    for key_mode in (modes or {}).values():
        _check_mode(key_mode)
    renderer = _Renderer(context, secrets, clock, limits)
    rendered = renderer.tree(value, mode, modes or {}, path, 0)
    return RenderResult(rendered, renderer.secrets_used)


def render_string(
    text: str,
    context: Mapping[str, Any],
    *,
    secrets: SecretLookup | None = None,
    clock: Clock | None = None,
    mode: Mode = "plain",
    limits: Limits | None = None,
) -> RenderResult:
    """Render one template to a string (never typed; see :func:`render_value`)."""
    _check_mode(mode)
    renderer = _Renderer(context, secrets, clock, limits)
    return RenderResult(renderer.text(text, mode, typed=False), renderer.secrets_used)


# --- validation ----------------------------------------------------------------------


def validate_template(
    text: str, *, allowed_roots: Iterable[str] | None = None, limits: Limits | None = None
) -> list[Issue]:
    """Return every problem in ``text``; with ``allowed_roots``, also unknown variables.

    Roots are not implied: union :data:`BUILTIN_ROOTS` in when they are allowed.
    """
    limits = limits or DEFAULT_LIMITS
    if len(text) > limits.max_template_length:
        return [
            _template_issue(
                f"template is longer than {limits.max_template_length} characters",
                TemplateCode.TEMPLATE_TOO_LONG,
            )
        ]
    if "{{" not in text:
        return []
    template = _parse(text)
    issues = list(template.issues)
    if len(template.expressions) > limits.max_expressions:
        issues.append(
            _template_issue(
                f"template has more than {limits.max_expressions} expressions",
                TemplateCode.TOO_MANY_EXPRESSIONS,
            )
        )
    if allowed_roots is not None:
        allowed = frozenset(allowed_roots)
        reported: set[str] = set()
        for expr in template.expressions:
            if expr.root not in allowed and expr.root not in reported:
                reported.add(expr.root)
                issues.append(
                    _template_issue(
                        f"unknown variable '{expr.root}'", TemplateCode.UNKNOWN_VARIABLE
                    )
                )
    return issues


def validate_value(
    value: Any,
    *,
    path: str = "config",
    allowed_roots: Iterable[str] | None = None,
    limits: Limits | None = None,
) -> list[Issue]:
    """Validate every string in a JSON structure; each issue comes with its JSON path."""
    allowed = None if allowed_roots is None else frozenset(allowed_roots)
    found: list[Issue] = []
    pending: list[tuple[Any, str, int]] = [(value, path, 0)]
    while pending:
        item, item_path, depth = pending.pop()
        if isinstance(item, str):
            issues = validate_template(item, allowed_roots=allowed, limits=limits)
            found.extend(replace(issue, path=item_path) for issue in issues)
        elif isinstance(item, dict | list | tuple):
            if depth >= MAX_VALUE_DEPTH:
                message = f"value is nested deeper than {MAX_VALUE_DEPTH} levels"
                found.append(
                    replace(_template_issue(message, TemplateCode.VALUE_TOO_DEEP), path=item_path)
                )
                continue
            children = item.items() if isinstance(item, dict) else enumerate(item)
            pending.extend(
                (child, _child_path(item_path, key), depth + 1)
                for key, child in reversed(list(children))
            )
    return found


def template_paths(text: str) -> list[tuple[str, ...]]:
    """The paths of the ``{{ path }}`` expressions of ``text``, as segments
    (``("lead", "owner", "email")``); none when ``text`` is not a valid template (its
    issues are :func:`validate_template`'s to report). Date tokens and secrets are not
    paths."""
    if "{{" not in text:
        return []
    template = _parse(text)
    if template.issues:
        return []
    return [expr.path for expr in template.expressions if expr.kind == "path"]


def template_roots(text: str) -> set[str]:
    """Return the first path segments (and date/secret roots) ``text`` uses.

    Raises :class:`TemplateSyntaxError` when ``text`` is not a valid template.
    """
    if "{{" not in text:
        return set()
    return {expr.root for expr in _checked_template(text, DEFAULT_LIMITS).expressions}


# --- redaction -----------------------------------------------------------------------


def secret_forms(value: str) -> set[str]:
    """The spellings a secret's value can take once it has passed through a URL, JSON, a
    ``repr()`` or a log line: as is, URL-encoded (``quote`` and ``quote_plus``, and as an
    HTTP client requotes a URL, leaving RFC 3986 delimiters alone), and each of
    those JSON-, repr- and backslash-escaped (once and twice). Matching is
    case-insensitive (see :func:`secret_pattern`), which also covers both cases of
    percent-encoded hex digits and a value lowercased in a host name."""
    if not value:
        return set()
    encoded = {
        value,
        quote(value, safe=""),
        quote(value),
        quote_plus(value),
        quote_plus(value, safe="/"),
        quote(value, safe=_URI_SAFE),
        quote(value, safe=_URI_SAFE + "%"),
    }
    if "://" in value:  # a whole URL: also as logs show one, without query and fragment
        encoded.add(value.split("#")[0].split("?")[0])
    forms = set(encoded)
    for base in encoded:
        once = {
            json.dumps(base)[1:-1],
            json.dumps(base, ensure_ascii=False)[1:-1],
            repr(base)[1:-1],
            ascii(base)[1:-1],
            base.replace("\\", "\\\\"),
            html.escape(base, quote=True),
            html.escape(base, quote=True).replace("&#x27;", "&#39;"),
        }
        forms |= once
        for item in once:
            forms |= {json.dumps(item)[1:-1], repr(item)[1:-1], item.replace("\\", "\\\\")}
    return {form for form in forms if form}


@lru_cache(maxsize=256)
def _secret_pattern(values: frozenset[str]) -> re.Pattern[str] | None:
    needles = sorted(
        {form for value in values for form in secret_forms(value)}, key=len, reverse=True
    )
    if not needles:
        return None
    return re.compile("|".join(map(re.escape, needles)), re.IGNORECASE)


def secret_pattern(secret_values: Iterable[str]) -> re.Pattern[str] | None:
    """One case-insensitive pattern matching every form (:func:`secret_forms`) of every
    non-empty value, longest first; None when there is nothing to mask."""
    return _secret_pattern(frozenset(s for s in secret_values if isinstance(s, str) and s))


def redact(obj: Any, secret_values: Iterable[str], mask: str = DEFAULT_MASK) -> Any:
    """Deep-copy JSON-like ``obj`` with every form of each secret replaced by ``mask``.

    Strings (dict keys included) are scrubbed of each value in every form it can take
    (:func:`secret_forms`, case-insensitively); empty secrets are ignored; other scalars
    are kept. Anything nested deeper than the value limit is replaced by ``mask``, so
    redaction fails closed and terminates on cyclic data.
    """
    pattern = secret_pattern(secret_values)

    def scrub(item: Any, depth: int) -> Any:
        if isinstance(item, str):
            return pattern.sub(lambda _match: mask, item) if pattern else item
        if isinstance(item, dict | list | tuple) and depth >= MAX_VALUE_DEPTH:
            return mask
        if isinstance(item, dict):
            return {scrub(key, depth + 1): scrub(child, depth + 1) for key, child in item.items()}
        if isinstance(item, tuple):
            return tuple(scrub(child, depth + 1) for child in item)
        if isinstance(item, list):
            return [scrub(child, depth + 1) for child in item]
        return item

    return scrub(obj, 0)
