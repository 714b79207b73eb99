"""Secrets referenced by name from templates (``{{secrets.CRM_API_KEY}}``).

Values live outside workflow definitions, looked up in this order:

1. the ``Secret`` table (authored in the admin, which never shows a value), where each
   value is encrypted at rest with Fernet (AES-128-CBC + HMAC-SHA256). The key is derived
   with HKDF-SHA256 from ``settings.FLOWDESK_SECRETS_KEY`` when set, else from
   ``settings.SECRET_KEY``; values written under an older key (``SECRET_KEY_FALLBACKS``,
   or ``SECRET_KEY`` once a dedicated key is configured) still decrypt, so keys can be
   rotated by re-saving the secrets;
2. the environment, as ``FLOWDESK_SECRET_<NAME>``.

Every value a step used is reported by the renderer and masked in the ActionRun's input,
output and error (``automation.templating.redact``).
"""

from __future__ import annotations

import base64
import os
from functools import lru_cache

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from automation.actions import StepFailed

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
        "FLOWDESK_SECRETS_KEY", "")
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
        raise SecretUnreadable("the stored value does not decrypt with the configured keys"
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


def resolve_secret(name: str) -> str:
    """The secret's value; a missing or unreadable secret fails the step."""
    from automation.models import Secret

    token = Secret.objects.filter(name=name).values_list("value_encrypted", flat=True).first()
    if token is not None:
        try:
            return decrypt(token)
        except SecretUnreadable:
            raise StepFailed(
                f"secret '{name}' cannot be decrypted (was FLOWDESK_SECRETS_KEY or "
                "SECRET_KEY changed?)", code="UNREADABLE_SECRET",
            ) from None
    value = os.environ.get(f"FLOWDESK_SECRET_{name}")
    if value is None:
        raise StepFailed(f"unknown secret '{name}'", code="UNKNOWN_SECRET")
    return value


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
