"""Writing events to the outbox.

``event_emit`` is the one way an event enters the system, whatever its source. It writes the
``Event`` row in the caller's transaction and rings the outbox doorbell after commit (below),
so an event exists exactly when the change that caused it exists and a worker dispatches it
soon after. If the broker is down or the message is lost, the outbox sweep dispatches the
row later.

Events raised while a workflow step executes inherit the step's causation: their depth is one
more than the run's, which is how workflow chains are bounded.
"""

from __future__ import annotations

import contextlib
import contextvars
import hashlib
import json
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from django.contrib.auth.models import AnonymousUser, User
from django.core.cache import cache
from django.db import IntegrityError, transaction
from django.utils import timezone

from automation.errors import IdempotencyKeyReused
from automation.models import Event, EventSource
from automation.registry import json_value
from config.cache import redis_for, run_script
from config.errors import ValidationFailed
from config.inserts import model_insert
from config.parsers import text_problem

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Causation:
    run_id: int
    depth: int


_causation: contextvars.ContextVar[Causation | None] = contextvars.ContextVar(
    "flowdesk_causation", default=None
)


@contextlib.contextmanager
def caused_by(run_id: int, depth: int) -> Iterator[None]:
    """Events emitted inside this block are attributed to ``run_id`` at ``depth + 1``."""
    token = _causation.set(Causation(run_id=run_id, depth=depth))
    try:
        yield
    finally:
        _causation.reset(token)


def current_causation() -> Causation | None:
    return _causation.get()


def actor_context(actor: Any) -> dict[str, Any] | None:
    if actor is None or isinstance(actor, AnonymousUser) or not getattr(actor, "pk", None):
        return None
    return {
        "id": actor.pk,
        "username": actor.get_username(),
        "email": getattr(actor, "email", ""),
        "is_staff": bool(getattr(actor, "is_staff", False)),
    }


def request_fingerprint(event_type: str, payload: Any) -> str:
    raw = json.dumps({"type": event_type, "payload": payload}, sort_keys=True, default=str)
    return hashlib.sha256(raw.encode()).hexdigest()


def event_emit(
    event_type: str,
    payload: dict[str, Any] | None = None,
    *,
    actor: User | None = None,
    source: str = EventSource.EMIT,
    entity_type: str = "",
    entity_id: str | int = "",
    idempotency_key: str | None = None,
    context: dict[str, Any] | None = None,
    dispatch: bool = True,
) -> Event:
    """Store an event in the outbox and dispatch it once the transaction commits.

    ``payload`` is the event's data; it becomes the context conditions and templates read
    (at the top level and under ``payload``), next to ``event`` and ``actor``. Model events
    pass a ready ``context`` instead. With an ``idempotency_key`` that was already used,
    the existing event is returned and nothing new is dispatched.
    """
    payload = json_value(payload or {})
    causation = current_causation()
    actor_data = actor_context(actor)
    event = Event(
        type=event_type,
        payload={},
        # The plain value: the database adapter dumps a str faster than a choices member.
        source=str(source),
        actor=actor if actor_data else None,
        entity_type=entity_type,
        entity_id=str(entity_id) if entity_id != "" else "",
        idempotency_key=idempotency_key,
        request_hash=request_fingerprint(event_type, payload) if idempotency_key else "",
        causation_depth=causation.depth + 1 if causation else 0,
        caused_by_run_id=causation.run_id if causation else None,
        occurred_at=timezone.now(),
    )
    data = dict(context) if context is not None else {**payload, "payload": payload}
    data["actor"] = actor_data
    event.payload = data
    if idempotency_key:
        try:
            with transaction.atomic():
                model_insert(event)  # save(force_insert=True), compiled once
        except IntegrityError:
            return Event.objects.get(idempotency_key=idempotency_key)
    else:
        model_insert(event)  # save(force_insert=True), compiled once
    if dispatch:
        ring_after_commit()
    return event


MAX_IDEMPOTENCY_KEY = 200


def stored_idempotency_key(user: Any, key: str | None) -> str | None:
    """The key as stored: scoped to the caller, and a fixed-length digest so that a key of
    any allowed length fits the column (``api:<user id>:<sha256 of the key>``)."""
    if not key:
        return None
    digest = hashlib.sha256(key.encode("utf-8")).hexdigest()
    return f"api:{user.pk}:{digest}"


def event_submit(
    *,
    event_type: str,
    payload: dict[str, Any],
    actor: User,
    idempotency_key: str | None = None,
) -> Event:
    """An event raised by a caller of the API, with the ``Idempotency-Key`` they sent.

    The key (1 to 200 characters, else ``VALIDATION_ERROR`` at ``headers.Idempotency-Key``)
    is scoped to the caller: their same key returns the first event and starts nothing new;
    the same key with another type or payload is ``IDEMPOTENCY_KEY_REUSED``.
    """
    if idempotency_key is not None:
        problem = text_problem(idempotency_key) or (
            None
            if 1 <= len(idempotency_key) <= MAX_IDEMPOTENCY_KEY
            else f"must be 1 to {MAX_IDEMPOTENCY_KEY} characters"
        )
        if problem:
            raise ValidationFailed.from_issues([("headers.Idempotency-Key", problem)])
    # One statement, committed on its own (with a key, inside its own transaction that
    # tells a replay from a new key); the doorbell rings once it has committed.
    event = event_emit(
        event_type,
        payload,
        actor=actor,
        source=EventSource.API,
        idempotency_key=stored_idempotency_key(actor, idempotency_key),
    )
    if idempotency_key and event.request_hash != request_fingerprint(event_type, payload):
        raise IdempotencyKeyReused(data={"event_id": event.pk})
    return event


def event_context(event: Event) -> dict[str, Any]:
    """The full context a run of this event starts from: the snapshot plus ``event``."""
    return {
        **event.payload,
        "event": {
            "id": event.pk,
            "type": event.type,
            "occurred_at": event.occurred_at.isoformat(),
            "source": event.source,
            "depth": event.causation_depth,
        },
    }


# --- the outbox doorbell --------------------------------------------------------------
#
# Committed events are dispatched by workers that drain the outbox in batches
# (``automation.services.outbox_drain``). A drain message is published when an event commits
# and none is already on its way: the doorbell is a counter in the shared cache, created
# (with its expiry) by the ring that publishes the message, moved on by every later ring
# with the number of events it stands for, and cleared by the worker that takes the
# message, before it reads the outbox. An event committed before that clear is seen by the
# read; one committed after rings again. The counter tells the drain that took the message
# how many events are waiting and for how long (the key's age): it waits for a batch's
# worth or a short deadline before it claims (``outbox_doorbell_wait``), so that steady
# traffic forms batches instead of paying a batch's fixed cost per event. The key
# expires, so a lost message only delays the next ring; the outbox sweep dispatches
# anything older still.

DOORBELL_KEY = "flowdesk:outbox:doorbell"

# INCRBY, and the expiry only when this ring created the key (a lost message must not be
# kept from ringing again by later rings): one round trip, atomic. Returns (created, count).
_RING_SCRIPT = """
local fresh = redis.call('EXISTS', KEYS[1]) == 0
local n = redis.call('INCRBY', KEYS[1], ARGV[1])
if fresh then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return {fresh and 1 or 0, n}
"""


def _doorbell_seconds() -> float:
    from django.conf import settings

    return float(settings.FLOWDESK["DISPATCH_DOORBELL_SECONDS"])


def _doorbell_add(events: int) -> bool:
    """Move the doorbell on by ``events``; whether this rang it (no message on its way)."""
    found = redis_for(DOORBELL_KEY)
    if found is not None:
        client, key = found
        args = [events, int(_doorbell_seconds() * 1000)]
        fresh, _count = run_script(client, _RING_SCRIPT, key, args)
        return bool(fresh)
    if cache.add(DOORBELL_KEY, events, timeout=_doorbell_seconds()):
        return True
    try:
        if events:
            cache.incr(DOORBELL_KEY, events)
    except ValueError:  # expired or taken meanwhile: ring anew
        return cache.add(DOORBELL_KEY, events, timeout=_doorbell_seconds())
    return False


def outbox_ring(events: int = 1) -> None:
    """Make sure a worker will drain the outbox soon: publish a drain message, unless one is
    already on its way (then only count ``events`` more for it).

    A drain whose batch was full rings with ``events=0``: the next drain then counts only
    the events committed since (a backlog, nothing new: it claims at once; steady traffic:
    it waits for a batch's worth of them, so the tail of a full batch is not claimed as a
    small one)."""
    from automation.tasks import dispatch_pending, publish

    rung = True
    try:
        if not _doorbell_add(max(events, 0)):
            return
    except Exception:  # the cache is down: publish without the doorbell
        rung = False
        logger.warning("outbox doorbell unavailable; publishing anyway", exc_info=True)
    if not publish(dispatch_pending) and rung:  # broker down: the outbox sweep picks them up
        outbox_doorbell_reset()


def outbox_doorbell_reset() -> None:
    """Let the next committed event ring again (a worker is about to read the outbox)."""
    try:
        cache.delete(DOORBELL_KEY)
    except Exception:  # the key expires on its own
        logger.warning("could not reset the outbox doorbell", exc_info=True)


def outbox_doorbell_state() -> tuple[int, float | None]:
    """(events rung since the doorbell was last reset, seconds since the first of them;
    None when the cache cannot tell). (0, None) when it is not rung."""
    # On Redis the counter's age is its TTL; on another cache it is unknown.
    found = redis_for(DOORBELL_KEY)
    if found is None:
        return int(cache.get(DOORBELL_KEY) or 0), None
    client, key = found
    pipe = client.pipeline(transaction=False)
    pipe.get(key)
    pipe.pttl(key)
    count, ttl = pipe.execute()
    if count is None or ttl is None or ttl < 0:
        return int(count or 0), None
    return int(count), max(_doorbell_seconds() - ttl / 1000, 0.0)


def outbox_doorbell_wait(batch_size: int, window: float) -> None:
    """Before a drain claims: wait until a batch's worth of events has rung, or ``window``
    seconds since the first of them (the doorbell's age; unknown: since now), whichever
    comes first. The rate seen so far says when the batch will fill, so the wait is one or
    two cache reads, not a poll (none after sleeping to the deadline). No events counted
    (rung by a full batch with a backlog behind it, a redelivery, a lost key, the cache
    down): no wait."""
    if window <= 0:
        return
    started = time.monotonic()
    for _ in range(8):
        try:
            count, age = outbox_doorbell_state()
        except Exception:  # the cache is down: drain now
            logger.warning("outbox doorbell unavailable; draining now", exc_info=True)
            return
        if count <= 0 or count >= batch_size:
            return
        if age is None:
            age = time.monotonic() - started
        left = window - age
        if left <= 0.001:
            return
        fill = (batch_size - count) * age / count if age > 0 else left
        if fill >= left:  # the deadline comes first: no need to look again
            time.sleep(left)
            return
        time.sleep(max(fill, 0.002))


class _CommitRing:
    """The doorbell ring of one transaction, counting the events it wrote."""

    __slots__ = ("events",)

    def __init__(self) -> None:
        self.events = 1

    def __call__(self) -> None:
        outbox_ring(self.events)


def ring_after_commit() -> None:
    """Ring the doorbell once the current transaction commits (once per transaction,
    however many events it writes; it counts them)."""
    connection = transaction.get_connection()
    if connection.in_atomic_block:
        for entry in connection.run_on_commit:
            if isinstance(entry[1], _CommitRing):
                entry[1].events += 1
                return
    transaction.on_commit(_CommitRing())


def emit(
    event_type: str,
    payload: dict[str, Any] | None = None,
    *,
    actor: User | None = None,
    idempotency_key: str | None = None,
) -> Event:
    """Raise a domain event from host code: ``emit("deal.won", {"deal_id": 7}, actor=user)``."""
    return event_emit(
        event_type, payload, actor=actor, source=EventSource.EMIT, idempotency_key=idempotency_key
    )
