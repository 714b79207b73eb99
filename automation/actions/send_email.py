"""``send_email``: a message from a named template (authored in the admin) or an inline body.

Config: ``to``, ``cc``, ``bcc`` (an address, a comma-separated string or a list),
``subject``, and either ``template`` (the name of an ``EmailTemplate``) or ``body`` (plain
text) with an optional ``html_body``; ``variables`` (an object) is merged into the context
the template is rendered with.

Escaping: addresses and the subject are rendered in "header" mode (a line break is refused,
so no header can be injected); ``html_body`` and a template's HTML body in "html" mode
(every interpolated value is HTML-escaped); plain-text bodies as they are. Email templates
cannot read secrets. Sent through Django's email backend with the ActionRun's id in the
Message-ID (see ``automation.actions.mailing``).
"""

from __future__ import annotations

from typing import Any

from django.utils.html import strip_tags

from automation.actions import (
    StepConfigCode,
    StepContext,
    StepFailed,
    StepResult,
    dry_run_for,
    object_schema,
    step_type,
    templated,
)
from automation.actions.entities import is_templated
from automation.actions.mailing import ADDRESS_LIST_SCHEMA, parse_addresses, send_message
from automation.templating import Mode, TemplateError, render_string
from config.issues import Issue

SCHEMA = object_schema(
    {
        "to": ADDRESS_LIST_SCHEMA,
        "cc": ADDRESS_LIST_SCHEMA,
        "bcc": ADDRESS_LIST_SCHEMA,
        "subject": {"type": "string", "minLength": 1, "maxLength": 500},
        "template": {"type": "string", "minLength": 1, "maxLength": 100},
        "body": {"type": "string", "minLength": 1, "maxLength": 100_000},
        "html_body": {"type": "string", "maxLength": 200_000},
        "variables": templated({"type": "object"}),
    },
    required=["to"],
)
RENDER_MODES: dict[str, Mode] = {
    "to": "header",
    "cc": "header",
    "bcc": "header",
    "subject": "header",
    "html_body": "html",
}


def check_config(config: dict[str, Any], path: str) -> list[Issue]:
    """Exactly one of ``template`` and ``body``; a subject unless a template gives one."""
    has_template, has_body = "template" in config, "body" in config
    code = StepConfigCode
    if has_template and has_body:
        return [
            Issue(
                f"{path}.body", code.CONFLICTING_KEYS, "give either 'template' or 'body', not both"
            )
        ]
    if not has_template and not has_body:
        return [
            Issue(
                f"{path}.body",
                code.REQUIRED,
                "give 'template' (a named email template) or 'body'",
            )
        ]
    if has_template and "html_body" in config:
        return [
            Issue(
                f"{path}.html_body",
                code.CONFLICTING_KEYS,
                "'html_body' goes with 'body'; a template has its own",
            )
        ]
    if has_body and "subject" not in config:
        return [Issue(f"{path}.subject", code.REQUIRED, "required with an inline 'body'")]
    name = config.get("template")
    if isinstance(name, str) and not is_templated(name):
        from automation.models import EmailTemplate

        if not EmailTemplate.objects.filter(name=name).exists():
            return [
                Issue(
                    f"{path}.template",
                    code.UNKNOWN_EMAIL_TEMPLATE,
                    f"no email template named {name!r}",
                )
            ]
    return []


def compose(ctx: StepContext) -> dict[str, Any]:
    """Recipients, subject and bodies as they will be sent (no side effect)."""
    config = ctx.config
    issues = check_config(config, "config")
    if issues:
        raise StepFailed(str(issues[0]), code="INVALID_CONFIG")
    message: dict[str, Any] = {
        "to": parse_addresses(config.get("to"), "to"),
        "cc": parse_addresses(config.get("cc"), "cc", required=False),
        "bcc": parse_addresses(config.get("bcc"), "bcc", required=False),
    }
    if "template" in config:
        message.update(_render_template(ctx, str(config["template"])))
        if config.get("subject"):
            message["subject"] = str(config["subject"])
    else:
        html_body = str(config.get("html_body") or "")
        message.update(
            subject=str(config["subject"]),
            text_body=str(config["body"]),
            html_body=html_body,
            template=None,
        )
    if not message["subject"].strip():
        raise StepFailed("the subject is empty", code="INVALID_CONFIG")
    return message


def _render_template(ctx: StepContext, name: str) -> dict[str, Any]:
    from automation.models import EmailTemplate

    template = EmailTemplate.objects.filter(name=name).first()
    if template is None:
        raise StepFailed(f"no email template named '{name}'", code="UNKNOWN_TEMPLATE")
    variables = ctx.config.get("variables") or {}
    if not isinstance(variables, dict):
        raise StepFailed("variables must be an object", code="INVALID_CONFIG")
    context = {**ctx.context, **variables, "variables": variables}
    rendered: dict[str, Any] = {"template": name}
    modes: tuple[tuple[str, Mode], ...] = (
        ("subject", "header"),
        ("text_body", "plain"),
        ("html_body", "html"),
    )
    for field, mode in modes:
        try:
            rendered[field] = render_string(getattr(template, field), context, mode=mode).value
        except TemplateError as exc:
            raise StepFailed(
                f"email template '{name}', {field}: {exc.message}",
                code=f"TEMPLATE_{exc.code.upper()}",
            ) from None
    if not rendered["text_body"].strip() and rendered["html_body"]:
        rendered["text_body"] = strip_tags(rendered["html_body"])
    return rendered


@step_type(
    "send_email",
    schema=SCHEMA,
    atomic=False,
    label="Send an email",
    render_modes=RENDER_MODES,
    check=check_config,
    default_retry={"max_attempts": 3, "backoff_seconds": 30, "max_backoff_seconds": 600},
)
def send_email(ctx: StepContext) -> StepResult:
    """Send the email through Django's email backend, once per step."""
    message = compose(ctx)
    sent = send_message(
        ctx,
        to=message["to"],
        cc=message["cc"],
        bcc=message["bcc"],
        subject=message["subject"],
        text_body=message["text_body"],
        html_body=message["html_body"],
    )
    return StepResult(output={**sent, "template": message["template"]})


@dry_run_for("send_email")
def send_email_dry_run(ctx: StepContext) -> dict[str, Any]:
    message = compose(ctx)
    return {"would": "send an email", **message}
