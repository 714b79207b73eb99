"""Parsing templates into literals and expressions (the grammar is in the package doc)."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Literal

from automation.paths import PathInvalid, parse_path
from automation.templating.base import (
    _DATE_DIRECTIVE,
    _DATE_LETTERS,
    _FILTER_ARGS,
    _IDENT,
    _INTEGER_ARG,
    _STRING_ESCAPES,
    FILTERS,
    MAX_DAY_OFFSET,
    Limits,
    TemplateCode,
    TemplateSyntaxError,
    _template_issue,
)

if TYPE_CHECKING:
    from config.issues import Issue


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
            return _Expr("now" if date_word == "now" else "today", filters=filters)
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
    try:
        segments = parse_path(head)
    except PathInvalid as exc:
        raise _ParseIssue(exc.message, TemplateCode(exc.code)) from None
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
