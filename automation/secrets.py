"""Secrets referenced by name from templates (``{{secrets.CRM_API_KEY}}``).

Values live outside workflow definitions, looked up in this order:

1. the ``Secret`` table (authored in the admin, which never shows a value), where each
   value is encrypted at rest with Fernet (AES-128-CBC + HMAC-SHA256). The key is derived
   with HKDF-SHA256 from ``settings.FLOWDESK_SECRETS_KEY`` when set, else from
   ``settings.SECRET_KEY``; values written under an older key (``SECRET_KEY_FALLBACKS``,
   or ``SECRET_KEY`` once a dedicated key is configured) still decrypt, so keys can be
   rotated by re-saving the secrets;
2. the environment, as ``FLOWDESK_SECRET_<NAME>``.

Where a secret may be used (the policy): only in the config fields of step types that send
it outward, declared per step type as ``secret_fields`` (``call_webhook``: ``url``,
``headers``, ``body``). Anywhere else (a note, an emitted event's payload, a task, a
notification, a field update, an email...) a ``{{secrets.NAME}}`` is refused when the
workflow is validated (:func:`secret_policy_issues`, code ``secret_not_allowed``), and
rendering such a field at run time has no secrets to read (:func:`step_config_render`),
so an author cannot copy a value somewhere it can be read back.

Masking: every value a step used is reported by the renderer and masked in the
ActionRun's input, output, progress and error (:func:`mask_action_run`), in every form it
can take (``automation.templating.secret_forms``: any case, URL-encoded, JSON-, repr- and
backslash-escaped). Every value this process has resolved or stored is also remembered
(:func:`remember`), and :class:`SecretMaskFilter`, installed on the log handlers by
``settings.LOGGING``, masks those values in every log record, whoever logs it.
"""

from __future__ import annotations

import base64
import logging
import os
import threading
from collections.abc import Callable
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from automation.actions import StepConfigCode, StepFailed
from automation.templating import (
    DEFAULT_MASK,
    TemplateSyntaxError,
    redact,
    render_value,
    secret_pattern,
    template_roots,
)
from config.issues import Issue

if TYPE_CHECKING:
    from automation.actions import StepType
    from automation.models import ActionRun

_KDF_SALT = b"flowdesk.secrets.v1"
_KDF_INFO = b"flowdesk secret values"


class SecretUnreadable(Exception):
    """A stored value does not decrypt with any configured key."""


@lru_cache(maxsize=8)
def _fernet(key_material: str) -> Fernet:
    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=_KDF_SALT, info=_KDF_INFO).derive(
        key_material.encode()
    )
    return Fernet(base64.urlsafe_b64encode(key))


def _keys() -> list[str]:
    """Key material, the one to encrypt with first (settings are read at call time)."""
    dedicated = getattr(settings, "FLOWDESK_SECRETS_KEY", "") or os.environ.get(
        "FLOWDESK_SECRETS_KEY", ""
    )
    keys = [dedicated] if dedicated else []
    keys.append(settings.SECRET_KEY)
    keys.extend(getattr(settings, "SECRET_KEY_FALLBACKS", ()))
    return list(dict.fromkeys(k for k in keys if k))


def encrypt(value: str) -> str:
    return MultiFernet([_fernet(k) for k in _keys()]).encrypt(value.encode()).decode()


def decrypt(token: str) -> str:
    try:
        return MultiFernet([_fernet(k) for k in _keys()]).decrypt(token.encode()).decode()
    except InvalidToken:
        raise SecretUnreadable(
            "the stored value does not decrypt with the configured keys"
        ) from None


@transaction.atomic
def secret_set(*, name: str, value: str, description: str | None = None) -> None:
    """Create or replace a stored secret (the value is encrypted before it is written)."""
    from automation.models import Secret

    secret = Secret.objects.select_for_update().filter(name=name).first() or Secret(name=name)
    secret.set_value(value)
    if description is not None:
        secret.description = description
    secret.updated_at = timezone.now()
    secret.full_clean()
    secret.save()
    remember(value)


def resolve_secret(name: str) -> str:
    """The secret's value; a missing or unreadable secret fails the step."""
    from automation.models import Secret

    token = Secret.objects.filter(name=name).values_list("value_encrypted", flat=True).first()
    if token is not None:
        try:
            return remember(decrypt(token))
        except SecretUnreadable:
            raise StepFailed(
                f"secret '{name}' cannot be decrypted (was FLOWDESK_SECRETS_KEY or "
                "SECRET_KEY changed?)",
                code="UNREADABLE_SECRET",
            ) from None
    value = os.environ.get(f"FLOWDESK_SECRET_{name}")
    if value is None:
        raise StepFailed(f"unknown secret '{name}'", code="UNKNOWN_SECRET")
    return remember(value)


# --- values known to this process, masked in every log record -------------------------

# Shorter values are masked where a step used them, but not in every log line (a
# two-letter value would eat every word that contains it).
MIN_LOGGED_LENGTH = 4
MAX_REMEMBERED = 10_000
_known: dict[str, None] = {}
_known_lock = threading.Lock()
_environment_read = False


_known_now: frozenset[str] = frozenset()


def remember(value: str) -> str:
    """Add ``value`` to the secrets masked in every log record of this process; returns it."""
    global _known_now
    if isinstance(value, str) and len(value) >= MIN_LOGGED_LENGTH and value not in _known:
        with _known_lock:
            _known[value] = None
            while len(_known) > MAX_REMEMBERED:
                _known.pop(next(iter(_known)))
            _known_now = frozenset(_known)
    return value


def known_values() -> frozenset[str]:
    """Every secret value this process resolved or stored, and those of the environment."""
    global _environment_read
    if not _environment_read:
        _environment_read = True
        for key, value in os.environ.items():
            if key.startswith("FLOWDESK_SECRET_") and key != "FLOWDESK_SECRETS_KEY":
                remember(value)
    return _known_now


def mask_known(obj: object) -> Any:
    """``obj`` (JSON-like) with every form of every known secret value masked."""
    return redact(obj, known_values())


def mask_action_run(
    action_run: ActionRun, secret_values: set[str] | frozenset[str] = frozenset()
) -> ActionRun:
    """Mask the step's own secret values and every known one in each field of the
    ActionRun that can carry text (input, output, progress, error), in place; call it
    right before the row is saved."""
    values = set(secret_values) | known_values()
    for name in ("input", "output", "progress", "error"):
        current = getattr(action_run, name)
        if current:
            setattr(action_run, name, redact(current, values))
    return action_run


class SecretMaskFilter(logging.Filter):
    """A log filter masking every known secret value (:func:`known_values`) in the
    message, its arguments, the traceback and the stack of every record it sees. Install
    it on handlers (``settings.LOGGING`` does, on the console handler) so records logged
    by any library (an HTTP client logging a URL) are masked too."""

    def filter(self, record: logging.LogRecord) -> bool:
        pattern = secret_pattern(known_values())
        if pattern is None:
            return True
        try:
            message = record.getMessage()
        except Exception:  # a malformed record: leave it to the formatter to report
            return True
        masked = pattern.sub(DEFAULT_MASK, message)
        if masked != message:
            record.msg, record.args = masked, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = pattern.sub(DEFAULT_MASK, record.exc_text)
        if record.stack_info:
            record.stack_info = pattern.sub(DEFAULT_MASK, record.stack_info)
        return True


# --- where secrets may be used --------------------------------------------------------

POLICY_CODE = "secret_not_allowed"


def _secret_strings(value: object, path: str) -> list[str]:
    """JSON paths of the strings in ``value`` whose templates read ``secrets``."""
    found: list[str] = []
    pending: list[tuple[Any, str]] = [(value, path)]
    while pending:
        item, where = pending.pop()
        if isinstance(item, str):
            if "secrets" in item and "{{" in item:
                try:
                    roots = template_roots(item)
                except TemplateSyntaxError:
                    continue  # reported by the template validation
                if "secrets" in roots:
                    found.append(where)
        elif isinstance(item, dict):
            pending.extend((child, f"{where}.{key}") for key, child in item.items())
        elif isinstance(item, list):
            pending.extend((child, f"{where}[{index}]") for index, child in enumerate(item))
    return sorted(found)


def secret_policy_issues(step_type: StepType, config: dict[str, Any], path: str) -> list[Issue]:
    """An issue (code ``SECRET_NOT_ALLOWED``) for every ``{{secrets.*}}`` outside the step
    type's ``secret_fields``; each message starts with ``secret_not_allowed``."""
    allowed = set(step_type.secret_fields)
    where_allowed = ", ".join(sorted(allowed)) if allowed else "nowhere in this step"
    issues = []
    for key, value in config.items():
        if key in allowed:
            continue
        for where in _secret_strings(value, f"{path}.{key}"):
            issues.append(
                Issue(
                    where,
                    StepConfigCode.SECRET_NOT_ALLOWED,
                    f"{POLICY_CODE}: a {step_type.name} step may not "
                    f"use secrets here (allowed: {where_allowed})",
                )
            )
    return issues


def step_config_render(
    step_type: StepType,
    config: dict[str, Any],
    context: dict[str, Any],
    lookup: Callable[[str], str] = resolve_secret,
) -> tuple[dict[str, Any], set[str]]:
    """Render a step's config; only its ``secret_fields`` can read secrets (elsewhere a
    ``{{secrets.NAME}}`` fails with ``secrets_unavailable``). Returns the rendered config
    and the secret values used, to mask."""
    allowed = {key: value for key, value in config.items() if key in step_type.secret_fields}
    others = {key: value for key, value in config.items() if key not in allowed}
    outward = render_value(allowed, context, secrets=lookup, modes=step_type.render_modes)
    inward = render_value(others, context, secrets=None, modes=step_type.render_modes)
    rendered = {**inward.value, **outward.value}
    return {key: rendered[key] for key in config}, set(outward.secrets_used)


@transaction.atomic
def secret_describe(*, name: str, description: str) -> None:
    """Change a stored secret's description, keeping its value."""
    from automation.models import Secret

    secret = Secret.objects.select_for_update().get(name=name)
    secret.description = description
    secret.updated_at = timezone.now()
    secret.full_clean()
    secret.save(update_fields=["description", "updated_at"])


@transaction.atomic
def secret_delete(*, name: str) -> None:
    """Remove a stored secret (templates that use it then fall back to the environment)."""
    from automation.models import Secret

    Secret.objects.filter(name=name).delete()
