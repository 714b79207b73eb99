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

from automation.templating.base import (
    BUILTIN_ROOTS,
    DEFAULT_LIMITS,
    DEFAULT_MASK,
    FILTERS,
    MODES,
    Clock,
    Limits,
    Mode,
    RenderResult,
    SecretLookup,
    TemplateCode,
    TemplateError,
    TemplateRenderError,
    TemplateSyntaxError,
    system_clock,
)
from automation.templating.redaction import (
    redact,
    secret_base64_forms,
    secret_forms,
    secret_pattern,
)
from automation.templating.rendering import (
    render_string,
    render_value,
    template_paths,
    template_roots,
    validate_template,
    validate_value,
)

__all__ = [
    "BUILTIN_ROOTS",
    "DEFAULT_LIMITS",
    "DEFAULT_MASK",
    "FILTERS",
    "MODES",
    "Clock",
    "Limits",
    "Mode",
    "RenderResult",
    "SecretLookup",
    "TemplateCode",
    "TemplateError",
    "TemplateRenderError",
    "TemplateSyntaxError",
    "redact",
    "render_string",
    "render_value",
    "secret_base64_forms",
    "secret_forms",
    "secret_pattern",
    "system_clock",
    "template_paths",
    "template_roots",
    "validate_template",
    "validate_value",
]
