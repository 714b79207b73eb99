"""The ASGI handler (``config.asgi_handler``): requests keep database connections between
them, Django's request signals close them on the thread that holds them, and more
requests than threads are all served.

The handler is driven in this process through its ASGI interface, committing for real
(``transactional_db``): its threads hold connections of their own.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator, Mapping
from typing import Any

import psycopg
import pytest
from asgiref.sync import async_to_sync
from django.db import connections
from rest_framework.authtoken.models import Token

from automation.models import Event
from config.asgi_handler import POOLED, PooledThreadsASGIHandler

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(not POOLED, reason="this asgiref cannot lend executors"),
]


@pytest.fixture
def handler() -> Iterator[PooledThreadsASGIHandler]:
    made = PooledThreadsASGIHandler(threads=2)
    try:
        yield made
    finally:
        made.close_connections()


@pytest.fixture
def connects(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """How many database connections the handler's threads opened (Django's backend calls
    psycopg.connect)."""
    opened = [0]
    real = psycopg.connect

    def counting(*args: Any, **kwargs: Any) -> Any:
        if threading.current_thread().name.startswith("asgi-request"):
            opened[0] += 1
        return real(*args, **kwargs)

    monkeypatch.setattr(psycopg, "connect", counting)
    return opened


def postgres_persistent() -> bool:
    settings = connections["default"].settings_dict
    return connections["default"].vendor == "postgresql" and bool(settings["CONN_MAX_AGE"])


async def post_event(handler: PooledThreadsASGIHandler, token: str, number: int) -> int:
    body = json.dumps({"type": "asgi.test", "payload": {"n": number}}).encode()
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/api/v1/events/",
        "raw_path": b"/api/v1/events/",
        "query_string": b"",
        "root_path": "",
        "headers": [
            (b"host", b"testserver"),
            (b"authorization", f"Token {token}".encode()),
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
        ],
        "client": ("127.0.0.1", 50000),
        "server": ("testserver", 80),
    }
    delivered = False
    status: list[int] = []

    async def receive() -> Mapping[str, Any]:
        nonlocal delivered
        if not delivered:
            delivered = True
            return {"type": "http.request", "body": body, "more_body": False}
        await asyncio.sleep(3600)  # the client stays connected
        return {"type": "http.disconnect"}

    async def send(message: Mapping[str, Any]) -> None:
        if message["type"] == "http.response.start":
            status.append(message["status"])

    await handler(scope, receive, send)
    return status[0]


def api_token(make_user: Any) -> str:
    return Token.objects.create(user=make_user(superuser=True)).key


def test_requests_reuse_the_threads_database_connection(
    handler: PooledThreadsASGIHandler, connects: list[int], make_user: Any
) -> None:
    if not postgres_persistent():
        pytest.skip("persistent connections need PostgreSQL and CONN_MAX_AGE > 0")
    token = api_token(make_user)

    async def sequence() -> list[int]:
        return [await post_event(handler, token, n) for n in range(6)]

    assert async_to_sync(sequence)() == [202] * 6
    assert Event.objects.filter(type="asgi.test").count() == 6
    # One request at a time takes the most recently used thread: one connection in all.
    assert connects[0] == 1


def test_a_request_closes_an_expired_connection_on_its_own_thread(
    handler: PooledThreadsASGIHandler, make_user: Any
) -> None:
    token = api_token(make_user)
    # The connection's settings are settings.DATABASES' own dict: keep the value to restore.
    max_age = connections["default"].settings_dict["CONN_MAX_AGE"]
    connections["default"].settings_dict["CONN_MAX_AGE"] = 0
    try:
        assert async_to_sync(post_event)(handler, token, 1) == 202
        held = [
            executor.submit(lambda: connections["default"].connection).result()
            for executor in handler._idle
        ]
    finally:
        connections["default"].settings_dict["CONN_MAX_AGE"] = max_age
    # request_finished ran close_old_connections where the connection lives: closed.
    assert held == [None, None]


def test_more_requests_than_threads_are_all_served(
    handler: PooledThreadsASGIHandler, make_user: Any
) -> None:
    token = api_token(make_user)

    async def together() -> list[int]:
        return list(await asyncio.gather(*(post_event(handler, token, n) for n in range(7))))

    assert async_to_sync(together)() == [202] * 7
    assert Event.objects.filter(type="asgi.test").count() == 7


def test_long_lived_objects_are_frozen_on_schedule(
    handler: PooledThreadsASGIHandler, make_user: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from config import asgi_handler

    frozen: list[int] = []
    monkeypatch.setattr(asgi_handler, "FREEZE_AFTER", frozenset({2}))
    monkeypatch.setattr(asgi_handler, "gc_freeze", lambda: frozen.append(handler.served))
    token = api_token(make_user)

    async def sequence() -> list[int]:
        return [await post_event(handler, token, n) for n in range(3)]

    assert async_to_sync(sequence)() == [202] * 3
    assert frozen == [2]  # once, after the second request


@pytest.fixture
def health_checks(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """How many ``SELECT 1`` health checks the handler's threads ran (Django's PostgreSQL
    backend runs them in ``is_usable``)."""
    from django.db.backends.postgresql.base import DatabaseWrapper

    checked = [0]
    real = DatabaseWrapper.is_usable

    def counting(self: Any) -> bool:
        if threading.current_thread().name.startswith("asgi-request"):
            checked[0] += 1
        return bool(real(self))

    monkeypatch.setattr(DatabaseWrapper, "is_usable", counting)
    return checked


def health_checked_postgres() -> bool:
    return postgres_persistent() and bool(
        connections["default"].settings_dict.get("CONN_HEALTH_CHECKS")
    )


def test_a_connection_just_used_is_not_health_checked_again(
    handler: PooledThreadsASGIHandler, health_checks: list[int], make_user: Any
) -> None:
    if not health_checked_postgres():
        pytest.skip("needs PostgreSQL with CONN_MAX_AGE > 0 and CONN_HEALTH_CHECKS")
    token = api_token(make_user)

    async def sequence() -> list[int]:
        return [await post_event(handler, token, n) for n in range(5)]

    assert async_to_sync(sequence)() == [202] * 5
    # The first request connected; each later one found the connection just used and quiet.
    assert health_checks[0] == 0


def test_a_connection_idle_longer_than_the_window_is_health_checked(
    handler: PooledThreadsASGIHandler,
    health_checks: list[int],
    make_user: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    if not health_checked_postgres():
        pytest.skip("needs PostgreSQL with CONN_MAX_AGE > 0 and CONN_HEALTH_CHECKS")
    from config import asgi_handler

    monkeypatch.setattr(asgi_handler, "HEALTH_PROVEN_SECONDS", 0.0)
    token = api_token(make_user)

    async def sequence() -> list[int]:
        return [await post_event(handler, token, n) for n in range(4)]

    assert async_to_sync(sequence)() == [202] * 4
    assert health_checks[0] == 3  # Django's SELECT 1 before each later request's query


def test_a_connection_the_server_ended_is_replaced_before_the_next_request(
    handler: PooledThreadsASGIHandler,
    health_checks: list[int],
    connects: list[int],
    make_user: Any,
) -> None:
    if not health_checked_postgres():
        pytest.skip("needs PostgreSQL with CONN_MAX_AGE > 0 and CONN_HEALTH_CHECKS")
    token = api_token(make_user)
    assert async_to_sync(post_event)(handler, token, 1) == 202
    # The thread that served it is the most recently used: the next request takes it.
    thread = handler._idle[-1]
    backend_pid = thread.submit(lambda: connections["default"].connection.info.backend_pid)
    pid = backend_pid.result()
    with connections["default"].cursor() as cursor:
        cursor.execute("SELECT pg_terminate_backend(%s)", [pid])
        for _ in range(500):  # until the backend has gone (it says so on the socket first)
            cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE pid = %s", [pid])
            if cursor.fetchone()[0] == 0:
                break
            threading.Event().wait(0.01)
    assert async_to_sync(post_event)(handler, token, 2) == 202
    # The socket had the server's goodbye to read: the SELECT 1 ran, failed, and the
    # request connected anew instead of failing.
    assert health_checks[0] == 1
    assert connects[0] == 2
    assert Event.objects.filter(type="asgi.test").count() == 2
