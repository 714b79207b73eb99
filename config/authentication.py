"""API token authentication with the token lookup cached in the process.

DRF's ``TokenAuthentication`` reads the token and its user from the database on every
request: one query, most of the cost of a small API call. ``CachedTokenAuthentication``
keeps the answer for ``API_TOKEN_CACHE_SECONDS`` (default 5; 0 turns the cache off) in the
process that served it. Each request gets its own copy of the user, without the permission
caches Django fills on it, so granted or removed permissions count at once.

Revoking is prompt: deleting or replacing a token, saving or deleting its user (being made
inactive, say) forgets the cached answers in the process that made the change at once, and
in every other process within ``API_TOKEN_CACHE_SECONDS``.
"""

from __future__ import annotations

import copy
import threading
import time
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db.models.signals import post_delete, post_save
from rest_framework.authentication import TokenAuthentication
from rest_framework.authtoken.models import Token

_PERMISSION_CACHES = ("_perm_cache", "_user_perm_cache", "_group_perm_cache")
_lock = threading.Lock()
# token key -> (expires at, user id, user, token)
_cache: dict[str, tuple[float, int, Any, Token]] = {}
_MAX_ENTRIES = 10_000


def token_cache_seconds() -> float:
    return float(getattr(settings, "API_TOKEN_CACHE_SECONDS", 5))


def token_cache_clear(user_id: int | None = None) -> None:
    """Forget the cached tokens (of one user, or all of them)."""
    with _lock:
        if user_id is None:
            _cache.clear()
            return
        for key in [k for k, entry in _cache.items() if entry[1] == user_id]:
            del _cache[key]


def _user_copy(user: Any) -> Any:
    fresh = copy.copy(user)
    for name in _PERMISSION_CACHES:
        fresh.__dict__.pop(name, None)
    return fresh


class CachedTokenAuthentication(TokenAuthentication):
    """``TokenAuthentication`` (the same header, answers and errors) with the lookup of a
    valid token kept for a few seconds in the process."""

    def authenticate_credentials(self, key: str) -> tuple[Any, Token]:
        ttl = token_cache_seconds()
        if ttl <= 0:
            return super().authenticate_credentials(key)
        now = time.monotonic()
        entry = _cache.get(key)
        if entry is not None and entry[0] > now:
            return _user_copy(entry[2]), entry[3]
        user, token = super().authenticate_credentials(key)  # raises for a bad token
        with _lock:
            if len(_cache) >= _MAX_ENTRIES:
                _cache.clear()
            _cache[key] = (now + ttl, user.pk, user, token)
        return _user_copy(user), token


def _token_changed(sender: Any, instance: Token, **kwargs: object) -> None:
    token_cache_clear(instance.user_id)


def _user_changed(sender: Any, instance: Any, **kwargs: object) -> None:
    token_cache_clear(instance.pk)


post_save.connect(_token_changed, sender=Token, dispatch_uid="token_cache_token_saved")
post_delete.connect(_token_changed, sender=Token, dispatch_uid="token_cache_token_deleted")
post_save.connect(_user_changed, sender=get_user_model(), dispatch_uid="token_cache_user_saved")
post_delete.connect(_user_changed, sender=get_user_model(), dispatch_uid="token_cache_user_gone")
