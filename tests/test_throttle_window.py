"""The rate limiter's fixed-window counter (``config.throttling.window_count``) on Redis:
one per client and window, counting up, expiring with its window."""

from __future__ import annotations

import uuid

import pytest
from django.core.cache import caches
from django.core.cache.backends.redis import RedisCache

from config.throttling import window_count


def test_the_counter_counts_and_expires_with_its_window() -> None:
    backend = caches["default"]
    if not isinstance(backend, RedisCache):
        pytest.skip("the cache is not Redis")
    key = f"test-window:{uuid.uuid4().hex}"
    full_key = backend.make_and_validate_key(key)
    client = backend._cache.get_client(full_key, write=True)  # type: ignore[attr-defined]
    try:
        assert [window_count(key, 61) for _ in range(3)] == [1, 2, 3]
        assert 0 < client.ttl(full_key) <= 61
        client.expire(full_key, 5)  # a later increment leaves the window's expiry alone
        assert window_count(key, 61) == 4
        assert 0 < client.ttl(full_key) <= 5
    finally:
        client.delete(full_key)
