"""``call_webhook``: one signed HTTP request to a public address, retried, then dead-lettered.

Config: ``url``, ``method`` (default POST), ``headers`` (strings; line breaks refused),
``body`` (any JSON value: the rendered structure is serialised with ``json.dumps``, never
pasted into a string), ``signing_secret`` (the *name* of a secret whose value is a Standard
Webhooks ``whsec_<base64>`` key), ``connect_timeout``, ``timeout`` (the whole exchange) and
``max_response_bytes`` (what is read of the answer; the rest is dropped).

- Safety: requests go through ``automation.safehttp`` (requests-hardened): non-public
  addresses refused after DNS resolution on every attempt, redirects never followed,
  proxies ignored; hosts in ``settings.FLOWDESK["WEBHOOK_ALLOW_HOSTS"]`` (``host`` or
  ``host:port``; a system check refuses any other form) may be private.
- Secrets: ``url``, ``headers`` and ``body`` may use ``{{secrets.NAME}}`` (the step's
  ``secret_fields``); the URL recorded and logged is the one sent (``safehttp.sent_url``),
  and every known secret value is masked in it and in what the step records, progress
  included, in every form (``automation.secrets.mask_known``).
- Signing (https://www.standardwebhooks.com/): ``webhook-id`` is the ActionRun's
  idempotency key, the same on every attempt and redelivery, so receivers can drop
  duplicates; ``webhook-timestamp`` is the attempt's time; ``webhook-signature`` is
  ``v1,<base64 HMAC-SHA256 of "id.timestamp.body">`` made by the ``standardwebhooks``
  package.
- Outcome: 2xx completes the step. 5xx, 408, 429 (its ``Retry-After`` honoured), timeouts
  and network errors are retryable (exponential backoff with jitter, by the step's retry
  policy; default 5 attempts); after the last attempt the step is dead-lettered
  (``DEAD_LETTER``) with the last response kept in its output. A 3xx (not followed), any
  other 4xx, or a refused URL fail at once.
- A 2xx is recorded on the ActionRun (``progress.delivered``: ids and status only) as soon
  as it arrives, so a step redelivered after that point does not call the receiver again.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import logging
import math
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

from django.conf import settings
from django.core import checks
from django.utils import timezone
from standardwebhooks import Webhook

from automation import safehttp
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
from automation.secrets import mask_known
from automation.templating import Mode
from config.issues import Issue

logger = logging.getLogger(__name__)

METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE"]
DEFAULT_RETRY = {"max_attempts": 5, "backoff_seconds": 2, "max_backoff_seconds": 300}
MAX_RETRY_AFTER_SECONDS = 86_400
KEPT_BODY_CHARS = 4096
KEPT_HEADERS = 50
# Set by the step itself, or by the HTTP client from the body: config may not set them.
RESERVED_HEADERS = frozenset(
    {
        "webhook-id",
        "webhook-timestamp",
        "webhook-signature",
        "content-length",
        "host",
        "transfer-encoding",
        "connection",
        "te",
        "upgrade",
        "trailer",
        "keep-alive",
        "proxy-authorization",
        "proxy-connection",
    }
)
DROPPED_RESPONSE_HEADERS = frozenset({"set-cookie", "set-cookie2"})

SCHEMA = object_schema(
    {
        "url": {"type": "string", "minLength": 1, "maxLength": 2000},
        "method": {"enum": METHODS},
        "headers": {
            "type": "object",
            "additionalProperties": {"type": "string", "maxLength": 8000},
            "propertyNames": {"pattern": r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]{1,100}$"},
            "maxProperties": 50,
        },
        "body": {},
        "signing_secret": {"type": "string", "pattern": r"^[A-Za-z_][A-Za-z0-9_]*$"},
        "connect_timeout": templated({"type": "number", "exclusiveMinimum": 0, "maximum": 60}),
        "timeout": templated({"type": "number", "exclusiveMinimum": 0, "maximum": 300}),
        "max_response_bytes": templated({"type": "integer", "minimum": 0, "maximum": 1024 * 1024}),
    },
    required=["url"],
)
RENDER_MODES: dict[str, Mode] = {"url": "header", "headers": "header", "method": "header"}


def check_config(config: dict[str, Any], path: str) -> list[Issue]:
    headers = config.get("headers")
    if not isinstance(headers, dict):
        return []
    return [
        Issue(
            f"{path}.headers.{name}",
            StepConfigCode.RESERVED_HEADER,
            f"header '{name}' is set by the step itself",
        )
        for name in headers
        if str(name).lower() in RESERVED_HEADERS
    ]


def _number(config: dict[str, Any], key: str, default: float, high: float) -> float:
    value = config.get(key, default)
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            raise StepFailed(f"{key} must be a number", code="INVALID_CONFIG") from None
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not (0 < value <= high or (key == "max_response_bytes" and value == 0))
    ):
        raise StepFailed(f"{key} must be a number from 0 to {high:g}", code="INVALID_CONFIG")
    return float(value)


def prepare(ctx: StepContext) -> dict[str, Any]:
    """The request as it will be sent, minus the signature (no side effect)."""
    config = ctx.config
    issues = check_config(config, "config")
    if issues:
        raise StepFailed(str(issues[0]), code="INVALID_CONFIG")
    method = str(config.get("method") or "POST").upper()
    if method not in METHODS:
        raise StepFailed(f"method must be one of {', '.join(METHODS)}", code="INVALID_CONFIG")
    headers = config.get("headers") or {}
    if not isinstance(headers, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in headers.items()
    ):
        raise StepFailed("headers must be an object of strings", code="INVALID_CONFIG")
    body: bytes | None = None
    if "body" in config:
        try:
            body = json.dumps(
                config["body"], ensure_ascii=False, separators=(",", ":"), allow_nan=False
            ).encode()
        except (TypeError, ValueError) as exc:
            raise StepFailed(
                f"the body cannot be sent as JSON ({exc})", code="INVALID_BODY"
            ) from None
        headers = {"Content-Type": "application/json", **headers}
    step_timeout = float(ctx.timeout_seconds) if ctx.timeout_seconds else 300.0
    total = min(_number(config, "timeout", 30, 300), step_timeout)
    return {
        "method": method,
        "url": str(config["url"]),
        "headers": headers,
        "body": body,
        "connect_timeout": min(_number(config, "connect_timeout", 5, 60), total),
        "total_timeout": total,
        "max_response_bytes": int(_number(config, "max_response_bytes", 64 * 1024, 1024 * 1024)),
    }


def _signer(name: str) -> Webhook:
    """The Standard Webhooks signer for the secret called ``name`` (its value never shown)."""
    from automation.secrets import resolve_secret

    value = resolve_secret(name)
    key = value.removeprefix("whsec_")
    try:
        raw = base64.b64decode(key, validate=True)
    except (binascii.Error, ValueError):
        raw = b""
    if not value.startswith("whsec_") or len(raw) < 16:
        raise StepFailed(
            f"secret '{name}' is not a Standard Webhooks signing key "
            "('whsec_' followed by at least 16 bytes in base64)",
            code="INVALID_SIGNING_SECRET",
        )
    return Webhook(raw)


def _retry_after(value: str | None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (seconds or an HTTP date)."""
    if not value:
        return None
    text = value.strip()
    if text.isdigit():
        return float(min(int(text), MAX_RETRY_AFTER_SECONDS))
    try:
        moment = parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return max(0.0, min((moment - timezone.now()).total_seconds(), MAX_RETRY_AFTER_SECONDS))


def describe_response(response: safehttp.SafeResponse) -> dict[str, Any]:
    """Status, headers and the start of the body, for the ActionRun's output."""
    text = response.body.decode("utf-8", errors="replace")
    kept: dict[str, Any] = {
        "status": response.status,
        "headers": dict(
            list(
                (k, v[:1000])
                for k, v in response.headers.items()
                if k not in DROPPED_RESPONSE_HEADERS
            )[:KEPT_HEADERS]
        ),
        "body": text[:KEPT_BODY_CHARS],
        "truncated": response.truncated or len(text) > KEPT_BODY_CHARS,
        "elapsed_ms": round(response.elapsed_ms),
    }
    if "json" in response.headers.get("content-type", "") and not kept["truncated"]:
        with contextlib.suppress(ValueError):
            kept["json"] = json.loads(text)
    return kept


def _delivered(ctx: StepContext) -> dict[str, Any] | None:
    if ctx.action_run is None:
        return None
    from automation.models import ActionRun

    progress = (
        ActionRun.objects.filter(pk=ctx.action_run.pk).values_list("progress", flat=True).first()
    )
    delivered = progress.get("delivered") if isinstance(progress, dict) else None
    return delivered if isinstance(delivered, dict) else None


def _mark_delivered(ctx: StepContext, summary: dict[str, Any], status: int) -> None:
    """Record the 2xx at once; only ids and the status (the response may echo secrets)."""
    if ctx.action_run is None:
        return
    from automation.models import ActionRun

    mark = {**summary, "status": status, "at": timezone.now().isoformat()}
    ActionRun.objects.filter(pk=ctx.action_run.pk).update(
        progress=mask_known({"delivered": mark}), updated_at=timezone.now()
    )


@checks.register(checks.Tags.compatibility, deploy=False)
def check_allow_hosts(app_configs: object = None, **kwargs: object) -> list[checks.CheckMessage]:
    """``FLOWDESK_WEBHOOK_ALLOW_HOSTS`` entries are hosts or ``host:port``, nothing else."""
    errors: list[checks.CheckMessage] = []
    for entry in settings.FLOWDESK.get("WEBHOOK_ALLOW_HOSTS") or ():
        try:
            safehttp.parse_allow_entry(entry)
        except ValueError as exc:
            errors.append(
                checks.Error(
                    str(exc),
                    hint="Fix FLOWDESK_WEBHOOK_ALLOW_HOSTS (comma-separated).",
                    id="flowdesk.E001",
                )
            )
    return errors


@step_type(
    "call_webhook",
    schema=SCHEMA,
    atomic=False,
    label="Call a webhook",
    render_modes=RENDER_MODES,
    check=check_config,
    default_retry=DEFAULT_RETRY,
    secret_fields=("url", "headers", "body"),
)
def call_webhook(ctx: StepContext) -> StepResult:
    """Send the signed request; retryable failures go through the step's retry policy."""
    request = prepare(ctx)
    earlier = _delivered(ctx)
    if earlier is not None:
        logger.info(
            "step %s: webhook %s was already delivered; not calling again",
            ctx.step.get("key"),
            ctx.idempotency_key,
        )
        return StepResult(output={**earlier, "already_delivered": True})
    headers = dict(request["headers"])
    webhook_id = ctx.idempotency_key
    sent_at = datetime.now(UTC).replace(microsecond=0)
    headers["webhook-id"] = webhook_id
    headers["webhook-timestamp"] = str(math.floor(sent_at.timestamp()))
    if ctx.config.get("signing_secret"):
        signer = _signer(str(ctx.config["signing_secret"]))
        payload = (request["body"] or b"").decode()
        headers["webhook-signature"] = signer.sign(webhook_id, sent_at, payload)
    summary = {
        "webhook_id": webhook_id,
        "method": request["method"],
        "url": mask_known(safehttp.sent_url(request["url"])),
        "attempt": ctx.attempt,
    }
    try:
        response = safehttp.safe_request(
            request["method"],
            request["url"],
            headers=headers,
            body=request["body"],
            connect_timeout=request["connect_timeout"],
            read_timeout=request["total_timeout"],
            total_timeout=request["total_timeout"],
            max_response_bytes=request["max_response_bytes"],
            allow_hosts=settings.FLOWDESK["WEBHOOK_ALLOW_HOSTS"],
        )
    except safehttp.UnsafeURLError as exc:
        raise StepFailed(
            f"refused to call {summary['url']}: {mask_known(exc.message)}",
            code="UNSAFE_URL",
            output=mask_known({**summary, "refused": exc.data}),
        ) from None
    except safehttp.DeliveryError as exc:
        code = {"timeout": "WEBHOOK_TIMEOUT", "network_error": "WEBHOOK_NETWORK_ERROR"}.get(
            exc.code, "INVALID_REQUEST"
        )
        raise StepFailed(
            mask_known(exc.message),
            code=code,
            retryable=exc.retryable,
            output={**summary, "error": exc.reason},
        ) from None
    except ValueError as exc:  # an allow-list entry of an unknown form
        raise StepFailed(str(exc), code="INVALID_ALLOW_LIST") from None
    summary["url"] = mask_known(response.url) or summary["url"]
    kept = describe_response(response)
    output = mask_known({**summary, "status": response.status, "response": kept})
    status = response.status
    if 200 <= status < 300:
        _mark_delivered(ctx, summary, status)
        return StepResult(output=output)
    if status == 429:
        wait = _retry_after(response.headers.get("retry-after"))
        raise StepFailed(
            f"{summary['url']} answered 429 Too Many Requests"
            + (f"; retry after {wait:g}s" if wait is not None else ""),
            code="WEBHOOK_RATE_LIMITED",
            retryable=True,
            output=output,
            retry_after=wait,
        )
    if status >= 500 or status == 408:
        raise StepFailed(
            f"{summary['url']} answered {status}",
            code="WEBHOOK_SERVER_ERROR",
            retryable=True,
            output=output,
            retry_after=_retry_after(response.headers.get("retry-after")),
        )
    if 300 <= status < 400:
        raise StepFailed(
            f"{summary['url']} answered {status} (a redirect, not followed; "
            "point the step at the final URL)",
            code="WEBHOOK_REDIRECT",
            output=output,
        )
    raise StepFailed(f"{summary['url']} answered {status}", code="WEBHOOK_REJECTED", output=output)


@dry_run_for("call_webhook")
def call_webhook_dry_run(ctx: StepContext) -> dict[str, Any]:
    request = prepare(ctx)
    body = request["body"]
    return {
        "would": f"{request['method']} {request['url']}",
        "headers": {
            **request["headers"],
            "webhook-id": ctx.idempotency_key,
            "webhook-timestamp": "(time of the attempt)",
            **(
                {"webhook-signature": f"v1,(signed with secret '{ctx.config['signing_secret']}')"}
                if ctx.config.get("signing_secret")
                else {}
            ),
        },
        "body": json.loads(body) if body else None,
        "timeouts": {"connect": request["connect_timeout"], "total": request["total_timeout"]},
        "max_response_bytes": request["max_response_bytes"],
        "retry": {**DEFAULT_RETRY, **(ctx.step.get("retry") or {})},
    }
