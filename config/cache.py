"""Django's Redis cache, with one redis-py client per connection pool.

Django's ``RedisCache`` builds a new ``redis.Redis`` client (and its table of response
callbacks) for every cache call; the pools are shared already, so the clients can be too
(redis-py clients are thread-safe). Every cache call, the rate limiter's counter and the
outbox doorbell among them, then costs its round trip and little more.
"""

from __future__ import annotations

from typing import Any

import redis
from django.core.cache.backends.redis import RedisCache as DjangoRedisCache
from django.core.cache.backends.redis import RedisCacheClient


class PooledClients(RedisCacheClient):
    """One client per pool (the pool is chosen as Django chooses it)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._clients: dict[int, redis.Redis] = {}

    def get_client(self, key: Any = None, *, write: bool = False) -> redis.Redis:
        # Private in Django's stubs, not in Django: the same pool get_client uses.
        pool = self._get_connection_pool(write)  # type: ignore[attr-defined]
        client = self._clients.get(id(pool))
        if client is None:
            made = self._client(connection_pool=pool)  # type: ignore[attr-defined]
            client = self._clients.setdefault(id(pool), made)
        return client


class RedisCache(DjangoRedisCache):
    def __init__(self, server: str, params: dict[str, Any]) -> None:
        super().__init__(server, params)
        self._class = PooledClients
