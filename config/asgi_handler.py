"""Django's ASGI handler on long-lived threads, so database connections outlive a request.

Django's ``ASGIHandler`` runs each request's synchronous code (sync middleware, views, the
ORM) on a thread made for that request and discarded after it, and keeps database
connections per request context. Under daphne every request that touches the database
therefore opened a new PostgreSQL connection (and PostgreSQL forked a backend for it), and
``CONN_MAX_AGE`` and the health checks did nothing: the connection was dropped, unclosed,
with its thread. For a small API call (``POST /api/v1/events/``: one INSERT) connecting
was most of the cost.

``PooledThreadsASGIHandler`` keeps Django's model, one thread per request in flight and
never two requests' synchronous code interleaved on a thread, but takes that thread from
a fixed set (``ASGI_REQUEST_THREADS``, default 8), the most recently used first; when all
are busy a request waits for one, without blocking the event loop. Database connections
are kept per thread, as under a threaded WSGI server, so ``close_old_connections`` at the
start and the end of each request (Django's ``request_started`` / ``request_finished``,
which run on the request's thread) applies ``CONN_MAX_AGE`` and the health checks exactly
as it does under WSGI: a connection lives on while it is healthy and young enough, and
is replaced when the database restarts.

The process's long-lived objects (modules, settings, URL resolvers, caches: a few hundred
thousand) are moved out of the garbage collector's sight with ``gc.freeze()``: once the
application is loaded, and again after 1,000 requests and each time that count doubles
(to about a million), by when what the first requests of each kind built lazily has
settled. Otherwise every full collection walks them all, holding the event loop and
every request in flight: 150-280 ms every few seconds under load, which set the 99th
percentile latency.

``CONN_HEALTH_CHECKS`` costs a ``SELECT 1`` round trip before each request's first query.
A PostgreSQL connection that completed a query on this thread less than
``HEALTH_PROVEN_SECONDS`` ago, is idle (no transaction open) and has nothing waiting on
its socket is taken as healthy without it: a server that ends a session (a restart, a
terminated backend, an idle timeout) sends an error and closes the socket, which makes it
readable, and then the ``SELECT 1`` runs as before and the connection is replaced. What
only a round trip finds (a middlebox that forgot an idle connection) takes minutes of
silence, not a second.
"""

from __future__ import annotations

import asyncio
import gc
import inspect
import select
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from asgiref.local import Local
from asgiref.sync import ThreadSensitiveContext
from django.conf import settings
from django.core.handlers.asgi import ASGIHandler
from django.core.signals import request_started
from django.db import connections
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.backends.signals import connection_created

# As django-stubs type ASGIHandler's arguments.
Scope = dict[str, Any]
Receive = Callable[[], Awaitable[Mapping[str, Any]]]
Send = Callable[[Mapping[str, Any]], Awaitable[None]]

DEFAULT_THREADS = 8
# After so many requests, what has survived is frozen (see above).
FREEZE_AFTER = frozenset(1_000 * 2**doubling for doubling in range(11))
# asgiref's ThreadSensitiveContext takes a caller-owned executor in recent releases (the
# 3.13 this project runs); without that the handler is Django's own, unchanged.
POOLED = "executor" in inspect.signature(ThreadSensitiveContext).parameters
# A query completed this recently on a quiet connection stands for its health check.
HEALTH_PROVEN_SECONDS = 1.0
_PROVEN_AT = "_flowdesk_proven_at"  # set on a connection wrapper: monotonic seconds


def gc_freeze() -> None:
    """Collect the garbage, then exempt every object left from later collections (they
    are still freed when no longer referenced; only cycles among them would stay)."""
    gc.collect()
    gc.freeze()


def connections_per_thread() -> None:
    """Keep Django's database connections per thread rather than per request context.

    ``django.db.connections`` holds them in an asgiref ``Local``; Django's own is not
    thread-critical, so each ASGI request context starts without one. The connections
    this thread already holds are carried over.
    """
    # ``_connections`` is private to Django's ConnectionHandler: the one place it keeps
    # the connections (``BaseConnectionHandler.thread_critical`` picks its kind).
    old = connections._connections  # type: ignore[attr-defined]
    new = Local(thread_critical=True)
    for alias in connections:
        held = getattr(old, alias, None)
        if held is not None:
            setattr(new, alias, held)
    connections._connections = new  # type: ignore[attr-defined]


def _note_query_done(
    execute: Callable[..., object],
    sql: str,
    params: object,
    many: bool,
    context: dict[str, Any],
) -> object:
    """An execute wrapper: note when a query on the connection last completed."""
    result = execute(sql, params, many, context)
    setattr(context["connection"], _PROVEN_AT, time.monotonic())
    return result


def postgres_quiet(wrapper: BaseDatabaseWrapper) -> bool:
    """Whether ``wrapper``'s psycopg connection is open and idle with nothing to read (a
    server ending the session makes its socket readable: an error message, then EOF)."""
    from psycopg import pq

    raw = wrapper.connection
    try:
        pgconn = raw.pgconn
        if (
            raw.broken
            or pgconn.status != pq.ConnStatus.OK
            or pgconn.transaction_status != pq.TransactionStatus.IDLE
        ):
            return False
        poller = select.poll()
        poller.register(pgconn.socket, select.POLLIN | select.POLLPRI)
        return not poller.poll(0)
    except Exception:  # closed meanwhile, or not psycopg: leave it to the health check
        return False


def note_queries(connection: BaseDatabaseWrapper, **kwargs: object) -> None:
    """On ``connection_created``: a new connection is proven by its connecting, and each
    query it completes proves it again."""
    if connection.vendor != "postgresql":
        return
    setattr(connection, _PROVEN_AT, time.monotonic())
    if _note_query_done not in connection.execute_wrappers:
        connection.execute_wrappers.append(_note_query_done)


def health_checks_proven(**kwargs: object) -> None:
    """On ``request_started``: spare this thread's connections that a recent query and a
    quiet socket show healthy the ``SELECT 1`` of this request (see the module's
    docstring). The check is switched off on the connection for this request rather than
    marked done, since Django's ``close_old_connections`` clears that mark and may run
    after this receiver (the test client reconnects it at the end of the receivers); each
    request starts from the setting again."""
    now = time.monotonic()
    # Any: django-stubs do not declare the wrappers' health check attributes.
    held: Sequence[Any] = connections.all(initialized_only=True)
    for wrapper in held:
        if wrapper.vendor != "postgresql":
            continue
        wanted = bool(wrapper.settings_dict.get("CONN_HEALTH_CHECKS"))
        wrapper.health_check_enabled = wanted  # as connecting set it: a proof lasts a request
        if not wanted or wrapper.connection is None or wrapper.errors_occurred:
            continue
        proven_at = getattr(wrapper, _PROVEN_AT, None)
        recent = proven_at is not None and now - proven_at < HEALTH_PROVEN_SECONDS
        if recent and postgres_quiet(wrapper):
            wrapper.health_check_enabled = False


class PooledThreadsASGIHandler(ASGIHandler):
    """``ASGIHandler`` whose requests run their synchronous code on pooled threads."""

    def __init__(self, threads: int | None = None) -> None:
        super().__init__()
        self.pooled = POOLED
        count = threads or int(getattr(settings, "ASGI_REQUEST_THREADS", DEFAULT_THREADS))
        self.threads = max(count, 1)
        # A stack: the most recently used thread (and its warm connection) goes first.
        self._idle = [
            ThreadPoolExecutor(max_workers=1, thread_name_prefix="asgi-request")
            for _ in range(self.threads)
        ]
        # Counts the idle threads for the event loop serving (daphne runs one).
        self._free: tuple[asyncio.AbstractEventLoop, asyncio.Semaphore] | None = None
        self.served = 0
        if self.pooled:
            connections_per_thread()
            connection_created.connect(note_queries, dispatch_uid="note_queries")
            request_started.connect(health_checks_proven, dispatch_uid="health_checks_proven")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            if not self.pooled or scope["type"] != "http":
                await super().__call__(scope, receive, send)
            else:
                await self._pooled_call(scope, receive, send)
        finally:
            self.served += 1
            if self.served in FREEZE_AFTER:
                gc_freeze()

    async def _pooled_call(self, scope: Scope, receive: Receive, send: Send) -> None:
        loop = asyncio.get_running_loop()
        if self._free is None or self._free[0] is not loop:
            self._free = (loop, asyncio.Semaphore(len(self._idle)))
        free = self._free[1]
        async with free:
            executor = self._idle.pop()
            try:
                async with ThreadSensitiveContext(executor=executor):
                    await self.handle(scope, receive, send)
            finally:
                self._idle.append(executor)

    def close_connections(self) -> None:
        """Close the database connections the idle threads hold (a thread's connection
        otherwise lives until ``CONN_MAX_AGE`` has passed at the end of a request)."""
        for executor in list(self._idle):
            executor.submit(connections.close_all).result()


def daphne_without_form_parsing() -> bool:
    """Keep daphne's HTTP requests (twisted ``Request`` objects) from parsing POST bodies
    into ``Request.args``, which daphne never reads: it hands the raw body to the
    application, which parses it itself. For that, twisted parses every POST's
    ``Content-Type`` with the email package, about 50 us of the server's CPU per request
    (more than the events endpoint's URL resolution and permission check together).
    Whether it took effect (False when daphne or that twisted argument is missing)."""
    try:
        from daphne.http_protocol import WebRequest
        from twisted.web.http import Request
    except ImportError:
        return False
    if "parsePOSTFormSubmission" not in inspect.signature(Request.__init__).parameters:
        return False
    original = WebRequest.__init__
    if getattr(original, "without_form_parsing", False):
        return True

    def __init__(self: object, *args: object, **kwargs: object) -> None:
        kwargs.setdefault("parsePOSTFormSubmission", False)
        original(self, *args, **kwargs)

    __init__.without_form_parsing = True  # type: ignore[attr-defined]
    WebRequest.__init__ = __init__
    return True


def get_asgi_application() -> PooledThreadsASGIHandler:
    """As ``django.core.asgi.get_asgi_application``, with the pooled threads (and daphne
    spared the form parsing it never uses)."""
    import django

    django.setup(set_prefix=False)
    daphne_without_form_parsing()
    handler = PooledThreadsASGIHandler()
    gc_freeze()
    return handler
