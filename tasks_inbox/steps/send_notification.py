"""``send_notification``: tell a user, in the inbox (``in_app``) or by ``email``.

Config: ``recipient`` (a user id, username or email address; for ``email`` also any
address), ``message``, ``link`` (a path on this site such as ``/leads/7`` or an http(s)
URL; anything else, ``javascript:`` included, is refused) and ``notification_type``
(``in_app``, the default, or ``email``).

In-app: one ``tasks_inbox.Notification`` per step, written in one short transaction under
the ActionRun's row lock and keyed by the ActionRun, so a redelivered step finds the row
instead of writing a second one. Email: through ``automation.actions.mailing`` (Message-ID
carrying the ActionRun id, sent once per step). The type is not atomic because of the
email case: no transaction is held while talking to a mail server. The type lives with the
tasks app because in-app notifications are its rows (and its inbox shows them).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urljoin, urlsplit

from django.conf import settings
from django.db import transaction

from automation.actions import (
    Mode,
    StepContext,
    StepFailed,
    StepResult,
    dry_run_for,
    object_schema,
    step_type,
    templated,
)
from automation.actions.mailing import check_address, send_message
from automation.models import ActionRun
from config.references import users_named
from tasks_inbox.models import Notification

MESSAGE_MAX = 1000
LINK_MAX = 500
SCHEMA = object_schema(
    {
        "recipient": templated({"type": ["string", "integer"], "minLength": 1}),
        "message": {"type": "string", "minLength": 1, "maxLength": 20_000},
        "link": {"type": "string", "maxLength": LINK_MAX},
        "notification_type": {"enum": ["in_app", "email"]},
        "subject": {"type": "string", "minLength": 1, "maxLength": 200},
    },
    required=["recipient", "message"],
)
RENDER_MODES: dict[str, Mode] = {"recipient": "header", "subject": "header", "link": "header"}


def find_user(recipient: object) -> Any:
    """The active user a recipient names (id, username or email: ``config.references``),
    or None if none does."""
    found = users_named(recipient, active_only=True)
    if len(found) > 1:
        raise StepFailed(
            f"{recipient!r} names several users; give the id or the username",
            code="AMBIGUOUS_RECIPIENT",
        )
    return found[0] if found else None


def check_link(link: object) -> str:
    """A site path (``/leads/7``) or an absolute http(s) URL; '' when there is none."""
    text = str(link or "").strip()
    if not text:
        return ""
    parts = urlsplit(text)
    local = text.startswith("/") and not text.startswith("//") and "\\" not in text
    web = parts.scheme in ("http", "https") and bool(parts.netloc)
    if not (local or web) or any(char in text for char in "\r\n\0 "):
        raise StepFailed(
            "link must be a path on this site (/...) or an http(s) URL", code="INVALID_LINK"
        )
    if len(text) > LINK_MAX:
        raise StepFailed(f"link is longer than {LINK_MAX} characters", code="INVALID_LINK")
    return text


def plan(ctx: StepContext) -> dict[str, Any]:
    """Who gets what, checked, with no side effect."""
    config = ctx.config
    kind = config.get("notification_type") or "in_app"
    message = str(config["message"]).strip()
    if not message:
        raise StepFailed("the message is empty", code="INVALID_CONFIG")
    if len(message) > MESSAGE_MAX:
        message = message[: MESSAGE_MAX - 1] + "\u2026"
    recipient = config.get("recipient")
    if recipient in (None, ""):
        raise StepFailed("recipient is empty", code="UNKNOWN_RECIPIENT")
    user = find_user(recipient)
    planned: dict[str, Any] = {
        "notification_type": kind,
        "message": message,
        "link": check_link(config.get("link")),
        "user_id": user.pk if user else None,
    }
    if kind == "in_app":
        if user is None:
            raise StepFailed(
                f"no active user {recipient!r} (give a user id, username or email)",
                code="UNKNOWN_RECIPIENT",
            )
        return planned
    address = getattr(user, "email", "") if user is not None else str(recipient)
    if not address:
        raise StepFailed(f"user {recipient!r} has no email address", code="UNKNOWN_RECIPIENT")
    planned["to"] = [check_address(address, "recipient")]
    planned["subject"] = str(config.get("subject") or "You have a new notification")
    return planned


@step_type(
    "send_notification",
    schema=SCHEMA,
    atomic=False,
    label="Send a notification",
    render_modes=RENDER_MODES,
    default_retry={"max_attempts": 3, "backoff_seconds": 30, "max_backoff_seconds": 600},
)
def send_notification(ctx: StepContext) -> StepResult:
    """Store an in-app notification, or email it; once per step either way."""
    planned = plan(ctx)
    if planned["notification_type"] == "in_app":
        return StepResult(output=_notify_in_app(ctx, planned))
    link = planned["link"]
    body = planned["message"]
    if link:
        body += "\n\n" + urljoin(settings.SITE_URL.rstrip("/") + "/", link)
    sent = send_message(ctx, to=planned["to"], subject=planned["subject"], text_body=body)
    return StepResult(output={"notification_type": "email", **sent})


def _notify_in_app(ctx: StepContext, planned: dict[str, Any]) -> dict[str, Any]:
    assert ctx.action_run is not None
    with transaction.atomic():
        ActionRun.objects.select_for_update().filter(pk=ctx.action_run.pk).first()
        notification = Notification.objects.filter(action_run_id=ctx.action_run.pk).first()
        created = notification is None
        if notification is None:
            notification = Notification.objects.create(
                recipient_id=planned["user_id"],
                message=planned["message"],
                link=planned["link"],
                action_run_id=ctx.action_run.pk,
            )
    return {
        "notification_type": "in_app",
        "notification_id": notification.pk,
        "recipient_id": notification.recipient_id,
        "created": created,
    }


@dry_run_for("send_notification")
def send_notification_dry_run(ctx: StepContext) -> dict[str, Any]:
    planned = plan(ctx)
    return {"would": f"send an {planned['notification_type']} notification", **planned}
