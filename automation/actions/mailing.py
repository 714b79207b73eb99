"""Mail for the step types that send it (``send_email``, ``send_notification``, exports).

- Addresses are checked one by one (CR, LF and NUL refused, then Django's email validator);
  a display name is allowed (``Ann <ann@example.com>``).
- Every message carries ``Message-ID: <flowdesk-ar-<ActionRun id>@<domain>>``, so a
  message sent again after a crash is recognisably the same one.
- Once the backend has accepted a message, the step's ActionRun records it
  (``progress.email_sent``) in its own short transaction; a redelivered step that finds
  that mark does not send again. Only a crash between the backend accepting the message
  and that write can still send it twice, with the same Message-ID.
"""

from __future__ import annotations

import logging
import re
import smtplib
from collections.abc import Iterable
from email.utils import formataddr, parseaddr
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.mail import EmailMultiAlternatives, get_connection
from django.core.validators import validate_email
from django.utils import timezone

from automation.actions import StepContext, StepFailed

logger = logging.getLogger(__name__)

MAX_RECIPIENTS = 100
_NAMED_ADDRESS = re.compile(r"([^<>@,;]*)<([^<>\s]+)>")
SMTP_TIMEOUT_SECONDS = 30.0

ADDRESS_LIST_SCHEMA: dict[str, Any] = {
    "anyOf": [
        {"type": "string", "minLength": 1, "maxLength": 5000},
        {
            "type": "array",
            "items": {"type": "string", "minLength": 1, "maxLength": 500},
            "minItems": 1,
            "maxItems": MAX_RECIPIENTS,
        },
    ],
}


def parse_addresses(value: object, field: str, *, required: bool = True) -> list[str]:
    """Recipients from a rendered config value: one string (comma-separated) or a list."""
    if value is None or value == "" or value == []:
        if required:
            raise StepFailed(f"{field}: at least one address is needed", code="INVALID_ADDRESS")
        return []
    if isinstance(value, str):
        items: Iterable[Any] = value.split(",")
    elif isinstance(value, list):
        items = value
    else:
        raise StepFailed(
            f"{field}: expected an address or a list of addresses", code="INVALID_ADDRESS"
        )
    addresses = []
    for item in items:
        if not isinstance(item, str):
            raise StepFailed(f"{field}: every address must be a string", code="INVALID_ADDRESS")
        addresses.append(check_address(item, field))
    addresses = [a for a in addresses if a]
    if required and not addresses:
        raise StepFailed(f"{field}: at least one address is needed", code="INVALID_ADDRESS")
    if len(addresses) > MAX_RECIPIENTS:
        raise StepFailed(f"{field}: at most {MAX_RECIPIENTS} addresses", code="INVALID_ADDRESS")
    return addresses


def check_address(text: str, field: str) -> str:
    """One address, normalised; '' for an empty item of a list ("a@x.org, ")."""
    if any(char in text for char in "\r\n\0"):
        raise StepFailed(
            f"{field}: line breaks are not allowed in addresses", code="HEADER_INJECTION"
        )
    text = text.strip()
    if not text:
        return ""
    named = _NAMED_ADDRESS.fullmatch(text)
    name, address = (
        (named.group(1).strip().strip('"').strip(), named.group(2).strip()) if named else ("", text)
    )
    try:
        validate_email(address)
    except ValidationError:
        raise StepFailed(
            f"{field}: {text!r} is not a valid email address", code="INVALID_ADDRESS"
        ) from None
    return formataddr((name, address)) if name else address


def message_id(ctx: StepContext) -> str:
    """``<flowdesk-ar-<id>@<domain>>``: the same for every attempt of the step."""
    _name, sender = parseaddr(settings.DEFAULT_FROM_EMAIL)
    domain = sender.rpartition("@")[2] or "flowdesk.invalid"
    return f"<{ctx.idempotency_key}@{domain}>"


def already_sent(ctx: StepContext) -> dict[str, Any] | None:
    """The mark an earlier attempt of this step left after its message was accepted."""
    if ctx.action_run is None:
        return None
    from automation.models import ActionRun

    progress = (
        ActionRun.objects.filter(pk=ctx.action_run.pk).values_list("progress", flat=True).first()
    )
    sent = (progress or {}).get("email_sent") if isinstance(progress, dict) else None
    return sent if isinstance(sent, dict) and sent.get("message_id") == message_id(ctx) else None


def _mark_sent(ctx: StepContext, mark: dict[str, Any]) -> None:
    if ctx.action_run is None:
        return
    from automation.models import ActionRun

    progress = (
        ActionRun.objects.filter(pk=ctx.action_run.pk).values_list("progress", flat=True).first()
    )
    progress = {**(progress if isinstance(progress, dict) else {}), "email_sent": mark}
    ActionRun.objects.filter(pk=ctx.action_run.pk).update(
        progress=progress, updated_at=timezone.now()
    )
    ctx.action_run.progress = progress


def _connection() -> Any:
    if settings.EMAIL_BACKEND == "django.core.mail.backends.smtp.EmailBackend":
        timeout = getattr(settings, "EMAIL_TIMEOUT", None) or SMTP_TIMEOUT_SECONDS
        return get_connection(fail_silently=False, timeout=timeout)
    return get_connection(fail_silently=False)


def send_message(
    ctx: StepContext,
    *,
    to: list[str],
    subject: str,
    text_body: str,
    html_body: str = "",
    cc: list[str] | None = None,
    bcc: list[str] | None = None,
) -> dict[str, Any]:
    """Send one message (once per step) and return what was sent, for the step's output."""
    if any(char in subject for char in "\r\n"):
        raise StepFailed("line breaks are not allowed in subjects", code="HEADER_INJECTION")
    mid = message_id(ctx)
    summary = {
        "message_id": mid,
        "to": to,
        "cc": cc or [],
        "bcc_count": len(bcc or []),
        "subject": subject,
    }
    earlier = already_sent(ctx)
    if earlier is not None:
        logger.info(
            "step %s: message %s was already sent; not sending again", ctx.step.get("key"), mid
        )
        return {**summary, "sent_at": earlier.get("at"), "already_sent": True}
    message = EmailMultiAlternatives(
        subject=subject,
        body=text_body,
        from_email=settings.DEFAULT_FROM_EMAIL,
        to=to,
        cc=cc or None,
        bcc=bcc or None,
        headers={"Message-ID": mid},
        connection=_connection(),
    )
    if html_body:
        message.attach_alternative(html_body, "text/html")
    try:
        message.send()
    except smtplib.SMTPRecipientsRefused as exc:
        refused = ", ".join(sorted(str(address) for address in exc.recipients))
        raise StepFailed(
            f"the mail server refused the recipients: {refused}", code="EMAIL_REFUSED"
        ) from None
    except smtplib.SMTPResponseException as exc:
        permanent = 500 <= exc.smtp_code < 600
        raise StepFailed(
            f"the mail server answered {exc.smtp_code}",
            code="EMAIL_REFUSED" if permanent else "EMAIL_UNAVAILABLE",
            retryable=not permanent,
        ) from None
    except (smtplib.SMTPException, OSError) as exc:
        raise StepFailed(
            f"could not send the email ({type(exc).__name__})",
            code="EMAIL_UNAVAILABLE",
            retryable=True,
        ) from None
    at = timezone.now().isoformat()
    _mark_sent(ctx, {"message_id": mid, "at": at})
    return {**summary, "sent_at": at}
