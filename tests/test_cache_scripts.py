"""Scripts on the cache's Redis (``config.cache.run_script``), sent on the process's own
connections: the server losing the script, a connection Redis has closed, and a forked
child, each still counted exactly once."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from django.core.cache import caches
from django.core.cache.backends.redis import RedisCache

from config import cache as shared
from config.throttling import WINDOW_COUNT_SCRIPT


@pytest.fixture
def counter() -> Iterator[tuple[redis.Redis, str]]:
    """The cache's client and a fresh counter key on it (deleted afterwards)."""
    if not isinstance(caches["default"], RedisCache):
        pytest.skip("the cache is not Redis")
    found = shared.redis_for(f"test-script:{uuid.uuid4().hex}")
    assert found is not None
    client, key = found
    try:
        yield client, key
    finally:
        client.delete(key)


def count(client: redis.Redis, key: str) -> int:
    return int(shared.run_script(client, WINDOW_COUNT_SCRIPT, key, [61]))


def idle_connections(client: redis.Redis) -> list[Any]:
    idle = shared._lean_idle(client.connection_pool)
    assert idle is not None, "the cache's plain pool takes the lean path"
    return idle


def test_a_script_the_server_lost_is_loaded_again(counter: tuple[redis.Redis, str]) -> None:
    client, key = counter
    assert count(client, key) == 1
    client.script_flush()  # as after a restart: EVALSHA answers NOSCRIPT
    assert count(client, key) == 2
    assert count(client, key) == 3
    assert int(client.get(key) or 0) == 3


def test_a_connection_redis_closed_is_replaced_and_the_command_sent_once(
    counter: tuple[redis.Redis, str],
) -> None:
    client, key = counter
    assert count(client, key) == 1
    idle = idle_connections(client)
    # Two idle connections, as after concurrent calls; close both from the server's side.
    idle.append(idle[0].__class__(**client.connection_pool.connection_kwargs))
    idle[-1].connect()
    for connection in list(idle):
        connection.send_command("CLIENT", "ID")
        client.client_kill_filter(_id=connection.read_response())
    assert count(client, key) == 2
    assert int(client.get(key) or 0) == 2  # counted once, not once per attempt
    assert count(client, key) == 3  # the other closed connection: replaced in turn
    assert int(client.get(key) or 0) == 3


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_does_not_share_its_parents_connections(
    counter: tuple[redis.Redis, str],
) -> None:
    client, key = counter
    assert count(client, key) == 1
    parents = [id(connection) for connection in idle_connections(client)]
    assert parents
    pid = os.fork()
    if pid == 0:  # the child: count once on a connection of its own
        code = 1
        try:
            count(client, key)
            mine = [id(connection) for connection in idle_connections(client)]
            code = 0 if mine and not set(mine) & set(parents) else 2
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert count(client, key) == 3  # and the parent's connection still works
    assert [id(connection) for connection in idle_connections(client)] == parents


def test_pools_of_another_kind_are_left_to_redis_py() -> None:
    class OtherPool(redis.ConnectionPool):
        pass

    assert shared._lean_idle(OtherPool()) is None
