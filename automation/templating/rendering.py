"""Rendering parsed templates over a context, and validating them."""

from __future__ import annotations

import html
import json
from collections.abc import Iterable, Mapping
from dataclasses import replace
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from automation.paths import MISSING, lookup
from automation.templating.base import (
    _PLAIN_KEY,
    DEFAULT_LIMITS,
    MAX_VALUE_DEPTH,
    MODES,
    Clock,
    Limits,
    Mode,
    RenderResult,
    SecretLookup,
    TemplateCode,
    TemplateError,
    TemplateRenderError,
    _template_issue,
    system_clock,
)
from automation.templating.parsing import (
    _checked_template,
    _Expr,
    _parse,
)
from automation.templating.values import (
    _FILTER_FUNCTIONS,
    _copy_data,
    _data_size,
    _to_text,
)

if TYPE_CHECKING:
    from config.issues import Issue


def _check_mode(mode: str) -> None:
    if mode not in MODES:
        raise ValueError(f"unknown template mode {mode!r}; expected one of {sorted(MODES)}")


def _child_path(base: str, key: object) -> str:
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

    def tree(
        self, value: object, mode: str, modes: Mapping[str, str], path: str, depth: int
    ) -> object:
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

    def text(self, text: str, mode: str, *, typed: bool) -> object:
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

    def evaluate(self, expr: _Expr) -> object:
        if expr.kind == "path":
            value = lookup(self.context, expr.path)
            if value is MISSING:
                value = None
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
    value: object,
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
    value: object,
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
