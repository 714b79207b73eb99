"""Dispatching events into runs, and draining the outbox in batches.

Events are dispatched in batches claimed with ``SKIP LOCKED`` (``outbox_drain``): one
transaction creates a batch's runs and executes their atomic steps. If it fails, the batch
is redone one event per transaction, and an event that fails alone is put off with backoff,
so no event can hold the others back.

Under steady traffic a drain that found a small batch keeps the doorbell rung for a while
(``DoorbellHold``): the events committed meanwhile count on it instead of publishing a
drain message each batch, and the same drain claims them a window later. A drain message
(its broker round trips, the worker's bookkeeping, the task's own overhead) then serves
many small batches instead of one.
"""

from __future__ import annotations

import logging
import secrets
import time
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import redis
from django.db import DatabaseError, connection, transaction
from django.db.models import F, Q
from django.utils import timezone

from automation.events import DOORBELL_KEY, event_context, outbox_doorbell_reset, outbox_ring
from automation.matcher import COUNTER_KEY, EPOCH_KEY, trigger_index
from automation.models import Event, Run, RunStatus
from automation.services.advance import (
    AfterCommit,
    CommitAndAdvance,
    HandOff,
    advance_locked,
    run_advance,
    runs_advance,
)
from automation.services.common import (
    deferred_writes,
    engine_setting,
    enqueue_advance_now,
)
from automation.services.creation import CreatedRun, RunSpec, runs_create
from automation.services.execution import StepRedo
from automation.services.retry import backoff_delay
from config.cache import redis_for, run_script

logger = logging.getLogger(__name__)

# How long a drain goes on claiming steady traffic's batches itself (``DoorbellHold``)
# before it lets the doorbell ring again; a worker's warm shutdown waits for it at most this
# long, and its other tasks meet one drain message's delay at most this often.
HOLD_SECONDS = 1.0


@dataclass
class Dispatched:
    """What dispatching some events created, and what is left for after their commit."""

    run_ids: list[int]
    # (run id, work left for after commit; see ``advance_locked``).
    after_commit: list[tuple[int, AfterCommit]]


def event_dispatch(
    *, event_id: int, advance: bool = True, inline_external: bool = True
) -> list[int]:
    """Match an event against the triggers, create its runs and advance them (once, whoever
    calls); returns the ids of the runs it created.

    Runs whose steps are atomic finish in this one transaction. Work that must happen
    outside it (an external step, parallel branches) is done after commit, and those runs
    are advanced further (here, or with ``inline_external=False`` by another worker). With
    ``advance=False`` the runs are only created.
    """
    try:
        done = _event_dispatch_once(event_id, advance, inline_external, savepoints=False)
    except StepRedo:  # rolled back: again, with a savepoint per step
        done = _event_dispatch_once(event_id, advance, inline_external, savepoints=True)
    if done is None:
        return []
    _continue_after_commit(done, inline_external=inline_external)
    return done.run_ids


def _event_dispatch_once(
    event_id: int, advance: bool, inline_external: bool, *, savepoints: bool
) -> Dispatched | None:
    """``event_dispatch``'s transaction; None when the event is taken or dispatched."""
    with transaction.atomic():
        event = Event.objects.select_for_update(skip_locked=True).filter(pk=event_id).first()
        if event is None or event.dispatched_at is not None:
            return None
        return _dispatch_locked(
            [event], advance=advance, inline_external=inline_external, savepoints=savepoints
        )


def outbox_drain(
    *,
    batch_size: int | None = None,
    max_batches: int = 20,
    window: float = 0.0,
    hold_seconds: float = 0.0,
) -> int:
    """Dispatch the events waiting in the outbox, a batch per transaction; returns how many.

    What the ``flowdesk.dispatch_pending`` task runs when the doorbell rings (see
    ``automation.events.outbox_ring``). Batches are claimed with ``SKIP LOCKED``, so workers
    drain side by side: a full batch rings the doorbell again for another worker to help.
    If a batch fails, its events are dispatched one by one, so one bad event costs only
    itself (it is retried later, with backoff).

    With ``window`` and ``hold_seconds`` (a worker's drain), the drain keeps the doorbell
    rung instead of resetting it (``DoorbellHold``), and while its batches are not full it
    claims what rang it every ``window`` (or as soon as a batch's worth has), for up to
    ``hold_seconds``, until a window brings nothing; a full batch (a backlog) lets the
    doorbell go and is drained as above, with help.
    """
    size = batch_size or engine_setting("DISPATCH_BATCH_SIZE")
    hold = DoorbellHold.take() if window > 0 and hold_seconds > 0 else None
    if hold is None:
        return _drain_batches(size, max_batches)
    total = 0
    deadline = time.monotonic() + hold_seconds
    try:
        while True:
            claimed, count = _dispatch_batch(size, hold=hold)
            total += count
            if claimed == size or time.monotonic() >= deadline:
                break  # a backlog (claimed below, with help), or held long enough
            rang = hold.wait(size, window)
            if rang < 0:
                break  # taken over by another drain, expired, or the cache is unreachable
            if not rang and hold.release_if_quiet():
                return total  # nothing rang since the last claim: nothing is left behind
    except BaseException:
        hold.let_go()  # the task's retry drains what rang
        raise
    # Events committed from now on ring again; those that rang the held doorbell are
    # claimed here.
    hold.let_go()
    return total + _drain_batches(size, max_batches, reset=False)


def _drain_batches(size: int, max_batches: int, *, reset: bool = True) -> int:
    """Reset the doorbell (unless the caller let it go), then claim and dispatch batches
    until one is not full; how many events were dispatched."""
    if reset:
        outbox_doorbell_reset()  # events committed from now on ring again
    total = 0
    for _ in range(max_batches):
        claimed, count = _dispatch_batch(size)
        total += count
        if claimed < size:
            return total
    outbox_ring(0)  # still full after its share: another message goes on
    return total


# The hold's steps, each one round trip and atomic. KEYS: the doorbell, the holder's key
# (its token: a drain that takes the doorbell over supersedes the one holding it, which then
# leaves it alone). ARGV: the token, the expiry in milliseconds.
_TAKE_SCRIPT = """
redis.call('SET', KEYS[1], 0, 'PX', ARGV[2])
redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[2])
return 1
"""
# The count since the last claim, and the count restarted for the next; -1: not held. With
# KEYS[3] and KEYS[4] (the definitions generation's epoch and counter, on the same server),
# their values too, '' when missing: the claim that follows needs no read of its own.
_RESTART_SCRIPT = """
if redis.call('GET', KEYS[2]) ~= ARGV[1] then return {-1} end
local count = redis.call('GET', KEYS[1])
if count == false then return {-1} end
redis.call('SET', KEYS[1], 0, 'PX', ARGV[2])
redis.call('PEXPIRE', KEYS[2], ARGV[2])
if #KEYS < 4 then return {tonumber(count)} end
return {tonumber(count), redis.call('GET', KEYS[3]) or '', redis.call('GET', KEYS[4]) or ''}
"""
# Let go if nothing rang since the last claim (1), or taken over (1: the other drain claims
# what rings); 0 when something rang, or the doorbell expired (the drain claims then).
_RELEASE_IF_QUIET_SCRIPT = """
if redis.call('GET', KEYS[2]) ~= ARGV[1] then return 1 end
local count = redis.call('GET', KEYS[1])
if count == false or tonumber(count) ~= 0 then return 0 end
redis.call('DEL', KEYS[1], KEYS[2])
return 1
"""
_LET_GO_SCRIPT = """
if redis.call('GET', KEYS[2]) == ARGV[1] then redis.call('DEL', KEYS[1], KEYS[2]) end
return 1
"""


class DoorbellHold:
    """A drain keeping the outbox doorbell rung (the doorbell's counter, present at zero):
    events committed meanwhile count on it and publish no drain message, and this drain
    claims them. Only on Redis (the counter's commands); one drain holds it at a time (the
    last to take it). Every exit lets the doorbell go (deleted: the next commit rings again)
    before a last claim, or atomically when nothing rang it since the last claim. A drain
    that dies holding it leaves it to expire (``DISPATCH_DOORBELL_SECONDS``), as a lost
    message does."""

    def __init__(
        self, client: redis.Redis, key: str, holder_key: str, generation_keys: list[str]
    ) -> None:
        self.client = client
        self.keys = [key, holder_key]
        self.generation_keys = generation_keys  # read with the count, when on its server
        self.token = secrets.token_hex(8)
        self.expiry_ms = int(engine_setting("DISPATCH_DOORBELL_SECONDS") * 1000)
        self.started = time.monotonic()
        self.rang = 0  # how many rang in the last window
        # The definitions generation read with the last count (the trigger index's, for the
        # claim that follows it), or None.
        self.generation: tuple[int, int] | None = None

    @classmethod
    def take(cls) -> DoorbellHold | None:
        """Hold the doorbell, instead of resetting it, before the drain's first claim (the
        events that rang it are committed: the claim sees them); None when the cache is
        not Redis or cannot be reached."""
        try:
            found = redis_for(DOORBELL_KEY)
            holder = redis_for(f"{DOORBELL_KEY}:holder")
            if found is None or holder is None:
                return None
            pool = found[0].connection_pool
            generation = [redis_for(EPOCH_KEY), redis_for(COUNTER_KEY)]
            same_server = all(
                item is not None and item[0].connection_pool is pool for item in generation
            )
            keys = [item[1] for item in generation if item is not None] if same_server else []
            hold = cls(found[0], found[1], holder[1], keys)
            hold._script(_TAKE_SCRIPT)
        except Exception:
            logger.warning("outbox doorbell unavailable; not holding it", exc_info=True)
            return None
        return hold

    def _script(self, source: str) -> int:
        """Run one of the hold's other scripts (``config.cache.run_script``: one round
        trip)."""
        return int(run_script(self.client, source, self.keys, [self.token, self.expiry_ms]))

    def wait(self, size: int, window: float) -> int:
        """Sleep until ``size`` events have rung since the last claim, or ``window`` seconds
        from then; returns how many have, and restarts the count for the next claim (the
        events that rang are committed: the claim sees them). When the last window brought
        half a batch or more, a look halfway, then at the time the rate seen says the batch
        fills; else none before the end of the window. -1 when the doorbell is no longer
        held (taken over, expired) or the cache cannot be reached."""
        try:
            # The look halfway only when the last window brought half a batch or more: at
            # lower rates a batch seldom fills first, and one round trip a window will do.
            looks = 8 if self.rang * 2 >= size else 0
            first = window / 2 if looks else window
            time.sleep(max(first - (time.monotonic() - self.started), 0.0))
            for _ in range(looks):
                elapsed = time.monotonic() - self.started
                left = window - elapsed
                if left <= 0.001:
                    break
                count = int(self.client.get(self.keys[0]) or 0)
                if count >= size:
                    break
                fill = (size - count) * elapsed / count if count else left
                time.sleep(min(max(fill, 0.002), left))
            found = run_script(
                self.client,
                _RESTART_SCRIPT,
                [*self.keys, *self.generation_keys],
                [self.token, self.expiry_ms],
            )
            rang = int(found[0])
            self.generation = None
            if len(found) == 3 and found[1] and found[2]:
                self.generation = (int(found[1]), int(found[2]))
        except Exception:
            logger.warning("outbox doorbell unavailable; letting it go", exc_info=True)
            return -1
        self.started = time.monotonic()
        self.rang = rang
        return rang

    def release_if_quiet(self) -> bool:
        """Let the doorbell go if nothing rang it since the last claim (then nothing is
        left for this drain; nor when another drain took it over); False if something
        did."""
        try:
            return bool(self._script(_RELEASE_IF_QUIET_SCRIPT))
        except Exception:
            logger.warning("outbox doorbell unavailable; letting it go", exc_info=True)
            return False

    def let_go(self) -> None:
        """Let the doorbell go (unless another drain took it over): the next commit rings
        again."""
        try:
            self._script(_LET_GO_SCRIPT)
        except Exception:  # the keys expire on their own
            logger.warning("could not let the outbox doorbell go", exc_info=True)


# What a claim reads of each event, in the model's field order (``Model.from_db``; the rest
# is deferred, as ``only()`` leaves it): ``dispatch_attempts`` as it was before the claim,
# for the matching.
_CLAIMED = [
    "id",
    "type",
    "payload",
    "source",
    "causation_depth",
    "caused_by_run_id",
    "occurred_at",
    "dispatch_attempts",
]
_CLAIM_SQL = (
    "SELECT id, type, payload, source, causation_depth, caused_by_run_id, occurred_at, "
    "dispatch_attempts - 1 FROM automation_outbox_claim(%s, %s)"
)


def _claim(size: int, now: Any) -> tuple[list[Event], bool]:
    """Lock up to ``size`` due events (oldest first, ``SKIP LOCKED``); (events, marked).

    On PostgreSQL one statement claims them and marks them dispatched (an ``UPDATE ...
    RETURNING`` walking the outbox index in order; the events keep ``dispatch_attempts`` as
    it was before, for the matching), so ``marked`` is true; elsewhere they are read with
    ``SELECT ... FOR UPDATE``."""
    if connection.vendor == "postgresql":
        # ``automation_outbox_claim`` (migration 0008): the claim as an ordered index scan.
        # Its rows made events as a raw queryset makes them, without its per-call setup.
        with connection.cursor() as cursor:
            cursor.execute(_CLAIM_SQL, [now, size])
            rows = cursor.fetchall()
        payload = Event._meta.get_field("payload")
        events = []
        for row in rows:
            values = list(row)
            # (JSONField reads no expression: the column is the field's own.)
            values[2] = payload.from_db_value(values[2], None, connection)  # type: ignore[arg-type]
            events.append(Event.from_db(connection.alias, _CLAIMED, values))
        events.sort(key=lambda event: (event.occurred_at, event.pk))
        return events, True
    events = list(
        Event.objects.select_for_update(skip_locked=True)
        .filter(dispatched_at__isnull=True)
        .filter(Q(dispatch_after__isnull=True) | Q(dispatch_after__lte=now))
        .order_by("occurred_at", "pk")[:size]
    )
    return events, False


def _dispatch_batch(size: int, *, hold: DoorbellHold | None = None) -> tuple[int, int]:
    """Claim up to ``size`` due events and dispatch them; (claimed, dispatched). A full
    batch rings for help (a drain holding the doorbell, ``hold``, lets it go first).

    The batch's first steps run with no savepoint; if one raises (:class:`StepRedo`),
    everything the batch did is rolled back and it is claimed and done again with a
    savepoint per step, which records that step's failure as it always does."""
    try:
        return _dispatch_batch_once(size, hold=hold, savepoints=False)
    except StepRedo:
        return _dispatch_batch_once(size, hold=hold, savepoints=True)


def _dispatch_batch_once(
    size: int, *, hold: DoorbellHold | None, savepoints: bool
) -> tuple[int, int]:
    now = timezone.now()
    event_ids: list[int] = []
    # The generation the hold read with the count just before this claim, once.
    generation = hold.generation if hold is not None else None
    if hold is not None:
        hold.generation = None
    try:
        with transaction.atomic():
            events, marked = _claim(size, now)
            event_ids = [event.pk for event in events]
            if len(events) == size:
                # More may be waiting: another worker takes the next batch (at once, or
                # once a batch's worth has come if only new events are waiting).
                if hold is not None:
                    hold.let_go()
                outbox_ring(0)
            if not events:
                return 0, 0
            done = _dispatch_locked(
                events,
                advance=True,
                inline_external=False,
                marked=marked,
                now=now,
                savepoints=savepoints,
                generation=generation,
            )
    except DatabaseError:
        if not event_ids:
            raise
        logger.warning(
            "dispatching %s events together failed; one by one now", len(event_ids), exc_info=True
        )
        return len(event_ids), _dispatch_each(event_ids)
    _continue_after_commit(done, inline_external=False)
    return len(event_ids), len(event_ids)


def _dispatch_each(event_ids: list[int]) -> int:
    """Dispatch events in a transaction each; an event that fails is put off (backoff)."""
    dispatched = 0
    for event_id in event_ids:
        try:
            event_dispatch(event_id=event_id, inline_external=False)
        except DatabaseError as exc:
            logger.exception("event %s could not be dispatched; retrying later", event_id)
            event_dispatch_put_off(event_id, exc)
        else:
            dispatched += 1
    return dispatched


def event_dispatch_put_off(event_id: int, exc: BaseException) -> None:
    """Record a failed dispatch on the event and leave it alone for a while (exponential
    backoff with jitter, 5 s doubling up to an hour); drains and sweeps try it again after."""
    attempts = Event.objects.filter(pk=event_id).values_list("dispatch_attempts", flat=True).first()
    if attempts is None:
        return
    delay = backoff_delay({"backoff_seconds": 5, "max_backoff_seconds": 3600}, attempts + 1)
    Event.objects.filter(pk=event_id, dispatched_at__isnull=True).update(
        dispatch_attempts=F("dispatch_attempts") + 1,
        dispatch_after=timezone.now() + timedelta(seconds=delay),
        dispatch_error=f"{type(exc).__name__}: {exc}"[:2000],
    )


def _dispatch_locked(
    events: list[Event],
    *,
    advance: bool,
    inline_external: bool,
    marked: bool = False,
    now: Any = None,
    savepoints: bool = True,
    generation: tuple[int, int] | None = None,
) -> Dispatched:
    """Under the events' row locks: create the runs of every event in a few statements,
    mark the events dispatched (unless the claim did: ``marked``, at ``now``), then advance
    each new run (its atomic steps execute here). Without ``savepoints`` the steps run with
    no savepoint, and one that raises raises :class:`StepRedo`: the caller rolls its
    transaction back and dispatches again with them. ``generation``: the definitions
    generation as the drain's hold read it just before the claim (else it is read here).
    """
    planned: list[tuple[Event, dict[str, Any], Any]] = []
    # Once a batch (``generation``: read by the hold with the count, just before the claim).
    trigger_index.refresh(min((event.pk for event in events), default=None), generation)
    for event in events:
        context = event_context(event)
        # A first dispatch meets the versions that were current when the event was written;
        # a retry after a failed dispatch, or a replay, meets what is published now (the fix,
        # the workflow added since).
        written = event.pk if not event.dispatch_attempts else None
        for candidate in trigger_index.match(event.type, context, refresh=False, event_id=written):
            planned.append((event, context, candidate))
    replayed = [event.pk for event in events if event.dispatch_attempts]
    started = (
        set(
            Run.objects.filter(event_id__in=replayed, rerun_of__isnull=True).values_list(
                "event_id", "workflow_id"
            )
        )
        if planned and replayed
        else set()
    )
    existing = trigger_index.versions_existing(
        {candidate.version_id for _, _, candidate in planned}
    )
    created = runs_create(
        [
            RunSpec(
                event=event,
                context=context,
                workflow_id=candidate.workflow_id,
                version_id=candidate.version_id,
                trigger_index=candidate.trigger_index,
            )
            for event, context, candidate in planned
            # Not twice for a replayed event; not on a version deleted since it was indexed.
            if (event.pk, candidate.workflow_id) not in started and candidate.version_id in existing
        ]
    )
    if not marked:
        now = timezone.now()
        Event.objects.filter(pk__in=[event.pk for event in events]).update(
            dispatched_at=now,
            dispatch_attempts=F("dispatch_attempts") + 1,
            dispatch_after=None,
            dispatch_error="",
        )
    done = Dispatched(run_ids=[new.run.pk for new in created], after_commit=[])
    if not advance or not created:
        return done
    # A batch's runs start here until its time budget is spent; the rest go to other
    # workers, so one slow step does not hold the whole batch's commit back for long.
    deadline = time.monotonic() + engine_setting("DISPATCH_INLINE_SECONDS")
    # The new runs' rows were inserted by this transaction: nobody else can hold them.
    # What their first steps change is written at the end, one statement for all the step
    # rows and runs.
    with deferred_writes():
        _advance_created(created, done, inline_external, deadline, savepoints=savepoints)
    return done


def _advance_created(
    created: list[CreatedRun],
    done: Dispatched,
    inline_external: bool,
    deadline: float,
    *,
    savepoints: bool,
) -> None:
    """Start the runs a dispatch just created (their first atomic steps execute here)."""
    for new in created:
        run = new.run
        if run.status != RunStatus.PENDING:
            continue
        if not inline_external and time.monotonic() > deadline:
            done.after_commit.append((run.pk, HandOff()))
            continue
        work = advance_locked(
            run,
            fresh=True,
            inline_external=inline_external,
            new_rows=new.action_runs,
            savepoints=savepoints,
        )
        if work is not None:
            done.after_commit.append((run.pk, work))


def _continue_after_commit(done: Dispatched, *, inline_external: bool = True) -> None:
    """Carry on with the runs that have work outside their dispatching transaction: their
    next atomic steps here (the runs whose first step the batch executed: all their chains
    in one transaction, ``runs_advance``); external steps here too, or
    (``inline_external=False``, after a batch) in another worker."""
    chains: list[int] = []
    for run_id, work in done.after_commit:
        if work.hands_off:
            enqueue_advance_now(run_id)
        elif type(work) is CommitAndAdvance:
            chains.append(run_id)
        else:
            _continue_run(run_id, work, inline_external)
    if len(chains) > 1:
        try:
            chains = runs_advance(chains, inline_external=inline_external)
        except DatabaseError:  # rolled back whole: each run on its own, one bad run costs itself
            logger.warning("%s runs together failed; one by one now", len(chains), exc_info=True)
    for run_id in chains:
        _continue_run(run_id, CommitAndAdvance(), inline_external)


def _continue_run(run_id: int, work: AfterCommit, inline_external: bool) -> None:
    try:
        work.execute()
        run_advance(run_id=run_id, inline_external=inline_external)
    except DatabaseError:  # the event is dispatched: another attempt takes the run on
        logger.warning("run %s: continuing on another worker", run_id, exc_info=True)
        enqueue_advance_now(run_id)
