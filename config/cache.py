"""Django's Redis cache, with its connection pools and clients shared by the whole process.

Django's ``RedisCache`` builds a new ``redis.Redis`` client (and its table of response
callbacks) for every cache call, and keeps its connection pools on the backend object.
Django makes a backend object per thread, and under ASGI per request context: so each
request served by daphne built a fresh pool and opened a new Redis connection for its
first cache call (the rate limiter's counter, the outbox doorbell). Here the pools, and
one client per pool, belong to the process (keyed by pool class, server URL and options;
redis-py pools and clients are thread-safe, and a pool drops its connections in a forked
child), so every cache call costs its round trip and little more.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Sequence
from typing import Any

import redis
from django.core.cache.backends.redis import RedisCache as DjangoRedisCache
from django.core.cache.backends.redis import RedisCacheClient

_lock = threading.Lock()
# (pool class, server URL, pool options) -> (pool, client on that pool)
_shared: dict[tuple[str, str, str], tuple[redis.ConnectionPool, redis.Redis]] = {}


class PooledClients(RedisCacheClient):
    """One pool and one client per server and options, for the whole process (the server is
    chosen as Django chooses it: writes to the first, reads from the others if any)."""

    def _shared(self, write: bool) -> tuple[redis.ConnectionPool, redis.Redis]:
        # Private in Django's stubs, not in Django: the server choice and pool settings
        # Django's own client uses.
        index = self._get_connection_pool_index(write)  # type: ignore[attr-defined]
        server: str = self._servers[index]  # type: ignore[attr-defined]
        options: dict[str, Any] = self._pool_options  # type: ignore[attr-defined]
        pool_class: type[redis.ConnectionPool] = self._pool_class  # type: ignore[attr-defined]
        key = (repr(pool_class), server, repr(sorted(options.items())))
        found = _shared.get(key)
        if found is None:
            with _lock:
                found = _shared.get(key)
                if found is None:
                    pool = pool_class.from_url(server, **options)
                    found = (pool, self._client(connection_pool=pool))  # type: ignore[attr-defined]
                    _shared[key] = found
        return found

    def _get_connection_pool(self, write: bool) -> redis.ConnectionPool:
        return self._shared(write)[0]

    def get_client(self, key: object = None, *, write: bool = False) -> redis.Redis:
        return self._shared(write)[1]


class RedisCache(DjangoRedisCache):
    def __init__(self, server: str, params: dict[str, Any]) -> None:
        super().__init__(server, params)
        self._class = PooledClients


# (script source, client id) -> the script registered on that client (redis-py loads it
# again by itself if the server has lost it, after a restart).
_scripts: dict[tuple[str, int], Any] = {}
# script source -> its SHA1, as EVALSHA names it
_shas: dict[str, str] = {}
# id(pool) -> (pool, process id, idle connections of the lean path)
_lean: dict[int, tuple[redis.ConnectionPool, int, list[Any]]] = {}


def redis_for(key: str) -> tuple[redis.Redis, str] | None:
    """The default cache's redis-py client for ``key`` and the key as the cache stores it,
    or None when the default cache is not Redis (callers fall back to the cache API)."""
    from django.core.cache import DEFAULT_CACHE_ALIAS, caches

    backend = caches[DEFAULT_CACHE_ALIAS]
    if not isinstance(backend, DjangoRedisCache):
        return None
    full_key = backend.make_and_validate_key(key)
    # django-stubs do not declare the backend's client wrapper, ``RedisCache._cache``.
    client = backend._cache.get_client(full_key, write=True)  # type: ignore[attr-defined]
    return client, full_key


def _lean_idle(pool: redis.ConnectionPool) -> list[Any] | None:
    """The idle connections the lean path keeps for ``pool`` in this process; None for
    pools it leaves to redis-py (client-side caching, subclasses such as Sentinel's)."""
    entry = _lean.get(id(pool))
    pid = os.getpid()
    if entry is None or entry[0] is not pool or entry[1] != pid:
        if type(pool) is not redis.ConnectionPool or getattr(pool, "cache", None) is not None:
            return None
        # New, or after a fork: the parent's sockets are left to the parent.
        entry = _lean[id(pool)] = (pool, pid, [])
    return entry[2]


def _lean_call(pool: redis.ConnectionPool, idle: list[Any], *args: object) -> object:
    """One command and its reply on a connection of ``idle`` (a new one if none is idle).

    A stale idle connection (Redis restarted, the socket closed) fails before Redis has
    run anything: it is dropped and the command sent once more, on a new connection."""
    try:
        connection = idle.pop()  # list.pop is atomic: no lock
        fresh = False
    except IndexError:
        connection = pool.connection_class(**pool.connection_kwargs)
        fresh = True
    while True:
        try:
            connection.send_packed_command(connection.pack_command(*args), check_health=False)
            reply = connection.read_response()
        except redis.ResponseError:  # the reply was read whole: the connection is sound
            idle.append(connection)
            raise
        except redis.ConnectionError:
            connection.disconnect()
            if fresh:
                raise
            connection = pool.connection_class(**pool.connection_kwargs)
            fresh = True
            continue
        except BaseException:  # a timeout, say: a reply may still be on its way
            connection.disconnect()
            raise
        idle.append(connection)
        return reply


def run_script(client: redis.Redis, source: str, key: str | Sequence[str], args: list[Any]) -> Any:
    """Run the Lua ``source`` on ``key`` (or on several keys, in order, on this one
    server): one round trip, EVALSHA (EVAL once more if the server has lost the script,
    after a restart).

    On a plain connection pool it is sent on a connection of the process's own, taken from
    and put back on a list: redis-py's per-command path (the pool's lock and bookkeeping,
    a poll of the socket, retries, metrics) cost several times the round trip's own CPU,
    paid twice by every event posted to the API (rate limit, doorbell)."""
    keys = [key] if isinstance(key, str) else list(key)
    pool = client.connection_pool
    idle = _lean_idle(pool)
    if idle is None:
        script = _scripts.get((source, id(client)))
        if script is None or script.registered_client is not client:
            script = _scripts[(source, id(client))] = client.register_script(source)
        return script(keys=keys, args=args, client=client)
    sha = _shas.get(source)
    if sha is None:
        sha = _shas[source] = hashlib.sha1(source.encode(), usedforsecurity=False).hexdigest()
    try:
        return _lean_call(pool, idle, "EVALSHA", sha, len(keys), *keys, *args)
    except redis.exceptions.NoScriptError:
        return _lean_call(pool, idle, "EVAL", source, len(keys), *keys, *args)
