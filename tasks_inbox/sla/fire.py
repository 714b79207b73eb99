"""Firing the due thresholds of a batch of tasks with set-based statements.

``fire_batch`` checks a batch of claimed tasks in one transaction with a fixed number of
statements, whatever the batch's size:

- **read**: the tasks, locked ``FOR UPDATE`` in primary-key order (one statement); their
  configs, lifecycles, queues and users (assignees, creators, the queues' managers, the
  ladders' reassignment targets), and the thresholds already recorded (one each);
- **decide** in Python, task by task and threshold by threshold, in the order they fire
  (a level's actions change the task the next level sees: a level that moved the task
  to another queue notifies that queue's managers);
- **write**: the records with one ``INSERT ... SELECT FROM unnest(...) ON CONFLICT DO
  NOTHING RETURNING``; the clocks, markers, priorities and assignments with one ``UPDATE
  ... FROM unnest(...)``; the escalations' history rows, the events and the notifications
  with one ``INSERT ... SELECT FROM unnest(...)`` each (events and notifications built as
  plain rows, not model instances; arrays sent in binary, shared columns sent once).

Exactly once. Every writer of a task's SLA records holds the task's row lock, so under the
batch's locks the recorded thresholds read at the start cannot change: a threshold already
recorded is only marked (it fired in an earlier transaction), the others are inserted, and
the insert must win for every one of them, otherwise the batch raises and rolls back
whole (nothing emitted, nothing notified) and the sweep checks its tasks one by one.

Per task problems stay per task: a task whose config cannot be compiled or whose decision
fails is logged, left out of the writes and reported in ``BatchOutcome.failed`` (the sweep
leases it: a later sweep tries again once the lease runs out). A reassignment whose queue
or user no longer exists is skipped, named in the ``task.escalated`` event's
``escalation.skipped`` and counted in ``BatchOutcome.skipped``.

Reassigning into a queue routes like a new task (``tasks_inbox.services.queue_route``):
each target queue's settings row is locked once per batch and its members' open tasks are
counted once; the batch's own assignments are then counted in memory, one after the other.
"""

from __future__ import annotations

import gc
import json
import logging
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from functools import cache
from typing import Any, NamedTuple, cast

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.db import connection, transaction
from django.db.models import BooleanField, Count, ExpressionWrapper, F, Field, Max, Model, Q
from django.db.models.expressions import RawSQL
from django.urls import reverse
from django.utils import timezone

from automation.events import actor_context, current_causation, ring_after_commit
from automation.live import Audience, publish_many_now, users_listening
from automation.models import Event, EventSource
from tasks_inbox.models import (
    Notification,
    Priority,
    Queue,
    RoutingMode,
    SLAConfig,
    SLAEventKind,
    SLAEventRecord,
    Task,
    TaskHistory,
    priority_name,
    priority_parse,
)
from tasks_inbox.selectors import task_context, visibility_filter
from tasks_inbox.sla.clock import clock_elapsed, clock_schedule, pending_thresholds
from tasks_inbox.sla.rules import SLASpec, Threshold, sla_spec
from workflows.models import Lifecycle

logger = logging.getLogger(__name__)

Key = tuple[int, str, int]  # (task id, kind, level): one record each


class RecordsLost(RuntimeError):
    """A threshold's record was written by someone else under the batch's row locks."""


@dataclass
class BatchOutcome:
    fired: int = 0
    failed: list[int] = field(default_factory=list)
    skipped: int = 0
    statements: int = 0


@dataclass
class _Record:
    key: Key
    config_id: int | None
    due_at: datetime
    details: dict[str, Any]


class _EventRow(NamedTuple):
    """An event row to insert: its type, payload (JSON-safe), task and time."""

    type: str
    payload: dict[str, Any]
    task_id: int
    occurred_at: datetime


class _NotificationRow(NamedTuple):
    recipient_id: int
    message: str
    task_id: int


@dataclass
class _Writes:
    """What one task adds to the batch's statements (kept apart until it is decided), as
    plain rows: no model instances for the events and notifications."""

    records: list[_Record] = field(default_factory=list)
    events: list[_EventRow] = field(default_factory=list)
    notifications: list[_NotificationRow] = field(default_factory=list)
    history: list[TaskHistory] = field(default_factory=list)
    routed: list[tuple[int, int | None, int | None]] = field(default_factory=list)
    skipped: int = 0


# --- the connection ---------------------------------------------------------------------


@contextmanager
def server_binding() -> Iterator[None]:
    """Run the batch's statements with server-side parameter binding (Django's own
    ``server_side_binding`` cursor, for this block only): a batch's arrays and JSON texts
    then travel as parameters, instead of being quoted into the SQL text one character at a
    time, which costs more than the statements themselves. The cursor also reads
    timestamps with psycopg's own loader (``_batch_cursor``)."""
    if not _postgres():
        yield
        return
    connection.ensure_connection()
    raw = connection.connection
    previous = raw.cursor_factory
    raw.cursor_factory = _batch_cursor(connection.timezone_name == "UTC")
    try:
        yield
    finally:
        raw.cursor_factory = previous


@cache
def _batch_cursor(utc: bool) -> type:
    """Django's server-binding cursor; on a UTC connection, reading ``timestamptz`` with
    psycopg's own loader (compiled, when psycopg has its C part) instead of Django's, a
    Python subclass of the pure-Python one that costs about 2.5 microseconds a value: a batch
    reads nine timestamps per task. Both give the instant in the session's time zone, which
    Django sets to the connection's (UTC: ``datetime.timezone.utc`` from either)."""
    from django.db.backends.postgresql import base  # psycopg 3: ServerBindingCursor
    from psycopg import adapters
    from psycopg.pq import Format

    server_binding_cursor: type = base.ServerBindingCursor  # type: ignore[attr-defined]
    if not utc:
        return server_binding_cursor
    loader = adapters.get_loader(adapters.types["timestamptz"].oid, Format.TEXT)

    class BatchCursor(server_binding_cursor):
        def __init__(self, *args: object, **kwargs: object) -> None:
            super().__init__(*args, **kwargs)
            self.adapters.register_loader("timestamptz", loader)

    return BatchCursor


def _postgres() -> bool:
    """PostgreSQL gets the array statements; elsewhere (the embedded SQLite default) the
    same steps run through the ORM's bulk operations."""
    return connection.vendor == "postgresql"


def id_array(ids: Iterable[int]) -> RawSQL | list[int]:
    """``pk__in=id_array(ids)``: the ids as one array parameter (``IN (SELECT unnest(...))``)
    rather than one placeholder each, which the driver would split and bind one by one."""
    if not _postgres():
        return sorted(ids)
    return RawSQL("SELECT unnest(%s::bigint[])", (sorted(ids),))


# --- reading ----------------------------------------------------------------------------


class _Directory:
    """The rows a batch reads besides its tasks, each kind in one statement."""

    def __init__(self, tasks: list[Task], specs: dict[int, SLASpec]) -> None:
        user_model = get_user_model()
        queue_names: set[str] = set()
        usernames: set[str] = set()
        for spec in specs.values():
            for threshold in spec.thresholds:
                for action in threshold.actions:
                    if action.get("type") != "reassign":
                        continue
                    if action.get("queue"):
                        queue_names.add(str(action["queue"]))
                    elif action.get("user"):
                        usernames.add(str(action["user"]))
        self.lifecycles = Lifecycle.objects.in_bulk({t.lifecycle_id for t in tasks})
        self.targets_by_name: dict[str, Group] = (
            {g.name: g for g in Group.objects.filter(name__in=queue_names)} if queue_names else {}
        )
        group_ids = {t.queue_id for t in tasks if t.queue_id}
        self.groups: dict[int, Group] = dict(Group.objects.in_bulk(group_ids)) if group_ids else {}
        self.groups.update({g.pk: g for g in self.targets_by_name.values()})
        name_field = user_model.USERNAME_FIELD
        self.targets_by_username: dict[str, Any] = (
            {
                user.get_username(): user
                for user in user_model._default_manager.filter(
                    is_active=True, **{f"{name_field}__in": usernames}
                )
            }
            if usernames
            else {}
        )
        user_ids = {
            pk
            for t in tasks
            for pk in (t.assignee_id, t.created_by_id, t.completed_by_id)
            if pk is not None
        }
        self.users: dict[int, Any] = (
            dict(user_model._default_manager.in_bulk(user_ids)) if user_ids else {}
        )
        self.users.update({u.pk: u for u in self.targets_by_username.values()})
        self.managers: dict[int, list[Any]] = {}
        if self.groups:
            for user in (
                user_model._default_manager.filter(managed_queues__group__in=list(self.groups))
                .annotate(managed_group=F("managed_queues__group"))
                .order_by("pk")
            ):
                self.managers.setdefault(user.managed_group, []).append(user)
        self._manager_contexts: dict[int, list[dict[str, Any]]] = {}
        self._routers: dict[int, _Router] = {}

    def attach(self, task: Task) -> None:
        """Give the task its related rows from the directory (no query on access): put in
        the task's cache of related rows as ``select_related`` does (the ids are the
        task's own, so the assignment's checks have nothing to do)."""
        lifecycle, queue, *people = _attached_fields()
        lifecycle.set_cached_value(task, self.lifecycles[task.lifecycle_id])
        queue.set_cached_value(task, self.groups.get(task.queue_id) if task.queue_id else None)
        for person in people:
            pk = getattr(task, person.attname)
            if pk is not None and pk in self.users:
                person.set_cached_value(task, self.users[pk])

    def queue_managers(self, queue_id: int | None) -> list[Any]:
        return self.managers.get(queue_id, []) if queue_id else []

    def manager_contexts(self, queue_id: int | None) -> list[dict[str, Any]]:
        if not queue_id:
            return []
        if queue_id not in self._manager_contexts:
            self._manager_contexts[queue_id] = [
                context
                for context in map(actor_context, self.queue_managers(queue_id))
                if context is not None
            ]
        return self._manager_contexts[queue_id]

    def router(self, group: Group) -> _Router:
        if group.pk not in self._routers:
            self._routers[group.pk] = _Router(group)
        return self._routers[group.pk]


@cache
def _attached_fields() -> tuple[Any, ...]:
    """The task's relations ``attach`` fills (once the models are loaded)."""
    return tuple(
        Task._meta.get_field(name)
        for name in ("lifecycle", "queue", "assignee", "created_by", "completed_by")
    )


class _Router:
    """``queue_route`` for every task a batch sends into one queue: the settings row locked
    once, the members' load counted once, then kept up to date in memory."""

    def __init__(self, group: Group) -> None:
        settings_row = Queue.objects.get_or_create(group=group)[0]
        settings_row = Queue.objects.select_for_update().get(pk=settings_row.pk)
        self.claim = settings_row.routing == RoutingMode.CLAIM
        self.members: dict[int, Any] = {}
        self.load: dict[int, list[Any]] = {}
        if self.claim:
            return
        for user in (
            get_user_model()
            ._default_manager.filter(groups=group, is_active=True)
            .annotate(
                open_tasks=Count("assigned_tasks", filter=Q(assigned_tasks__is_open=True)),
                last_assigned=Max("assigned_tasks__assigned_at"),
            )
            .order_by("pk")
        ):
            self.members[user.pk] = user
            self.load[user.pk] = [user.open_tasks, user.last_assigned]

    def route(self, previous_assignee_id: int | None, now: datetime) -> Any:
        """The least busy member (fewest open tasks, then assigned least recently, never
        assigned first, then the lowest id), counting the batch's earlier moves."""
        if self.claim or not self.members:
            return None

        def order(pk: int) -> tuple[int, int, datetime | None, int]:
            count, last = self.load[pk]
            return (count, last is not None, last, pk)

        chosen = min(self.members, key=order)
        if previous_assignee_id in self.load:
            self.load[previous_assignee_id][0] -= 1  # the task leaves its old assignee
        self.load[chosen][0] += 1
        self.load[chosen][1] = now
        return self.members[chosen]


# --- deciding ---------------------------------------------------------------------------


def sla_context(
    task: Task,
    spec: SLASpec | None,
    threshold: Threshold,
    due_at: datetime,
    now: datetime,
    managers: list[dict[str, Any]],
) -> dict[str, Any]:
    """The ``sla`` part of the events' context (with the managers of the task's queue, so
    that a workflow can tell them: ``{{sla.manager.username}}``). JSON-safe as built (what
    ``json_value`` would make of it: instants as ISO texts); ``managers`` are actor contexts,
    already JSON-safe, shared by the batch's tasks of one queue (the rows are serialised, not
    kept)."""
    return {
        "config_id": task.sla_config_id,
        "config": spec.name if spec else None,
        "kind": threshold.kind,
        "level": threshold.level,
        "reached_at": due_at.isoformat(),
        "target_seconds": spec.target_seconds if spec else None,
        "threshold_seconds": threshold.seconds if spec else None,
        "elapsed_seconds": int(clock_elapsed(task, spec, now)),
        "started_at": _iso(task.sla_started_at),
        "warning_at": _iso(task.sla_warning_at),
        "due_at": _iso(task.sla_due_at),
        "priority": priority_name(task.priority),
        "managers": managers,
        "manager": managers[0] if managers else None,
    }


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None


def mark_fired(task: Task, threshold: Threshold, now: datetime) -> None:
    if threshold.kind == SLAEventKind.WARNING:
        task.sla_warned_at = task.sla_warned_at or now
    elif threshold.kind == SLAEventKind.BREACH:
        task.sla_breached_at = task.sla_breached_at or now
    else:
        task.sla_escalation_level = max(task.sla_escalation_level, threshold.level)


def _event(task: Task, event_type: str, extra: dict[str, Any], now: datetime) -> _EventRow:
    """The event ``tasks_inbox.services`` would emit (``event_emit``) as a row to insert
    (``events_insert`` adds the columns every SLA event shares). ``extra`` is JSON-safe
    already (``sla_context``, the escalation's details)."""
    payload = task_context(task)
    payload.update(extra)
    payload["actor"] = None  # the system: actor_context(None)
    return _EventRow(event_type, payload, task.pk, now)


def _escalate(
    task: Task,
    threshold: Threshold,
    sla: dict[str, Any],
    directory: _Directory,
    writes: _Writes,
) -> None:
    """A ladder level's actions, in order, on the task in memory."""
    now = timezone.now()
    before = task.priority
    done: list[str] = []
    skipped: list[str] = []
    remind: list[str] = []
    notify: list[str] = []
    for action in threshold.actions:
        kind_of = action.get("type")
        if kind_of == "raise_priority":
            if action.get("to"):
                wanted = priority_parse(action["to"])
                task.priority = max(task.priority, wanted if wanted is not None else 0)
            else:
                task.priority = min(
                    [v for v in Priority.values if v > task.priority], default=task.priority
                )
            done.append(f"priority {priority_name(task.priority)}")
        elif kind_of == "reassign":
            queue = directory.targets_by_name.get(action["queue"]) if action.get("queue") else None
            user = directory.targets_by_username.get(action["user"]) if action.get("user") else None
            if queue is None and user is None:
                skipped.append(f"reassign to {action.get('queue') or action.get('user')}")
                continue
            previous = task.assignee_id
            if queue is not None:
                task.queue = queue
                if user is None:
                    user = directory.router(queue).route(previous, now)
            task.assignee = user
            task.assigned_at = now if user is not None else None
            writes.routed.append((task.pk, previous, task.assignee_id))
            if user is not None and action.get("user"):
                done.append(f"reassigned to {user.get_username()}")
            else:
                routed = task.assignee.get_username() if task.assignee is not None else "unassigned"
                done.append(f"moved to queue {queue.name if queue else ''} ({routed})")
        elif kind_of == "remind":
            remind.append(action.get("message") or "")
            done.append("reminded the assignee")
        elif kind_of == "notify_manager":
            notify.append(action.get("message") or "")
            done.append("notified the managers")
    task.updated_at = now
    details = {
        "level": threshold.level,
        "reason": f"SLA '{sla.get('config')}' level {threshold.level}",
        "actions": done,
        "skipped": skipped,
        "from_priority": priority_name(before),
        "priority": priority_name(task.priority),
        "assignee": task.assignee.get_username() if task.assignee is not None else None,
        "queue": task.queue.name if task.queue is not None else None,
    }
    if skipped:
        logger.warning(
            "SLA escalation of task %s (level %s) skipped: %s",
            task.pk,
            threshold.level,
            "; ".join(skipped),
        )
        writes.skipped += len(skipped)
    writes.history.append(
        TaskHistory(
            task=task,
            action="escalate",
            from_state=task.state,
            to_state=task.state,
            actor=None,
            created_at=task.updated_at,
            input=details,
        )
    )
    writes.events.append(
        _event(task, "task.escalated", {"escalation": details, "sla": sla}, timezone.now())
    )
    label = f"SLA escalation (level {threshold.level}): {task.title}"
    if remind and task.assignee_id:
        writes.notifications.append(
            _NotificationRow(task.assignee_id, remind[0] or f"Reminder — {label}", task.pk)
        )
    if notify and task.queue_id:
        for manager in directory.queue_managers(task.queue_id):
            writes.notifications.append(_NotificationRow(manager.pk, notify[0] or label, task.pk))


def _warn_or_breach(
    task: Task, threshold: Threshold, sla: dict[str, Any], directory: _Directory, writes: _Writes
) -> None:
    kind = threshold.kind
    event_type = "task.sla_warning" if kind == SLAEventKind.WARNING else "task.sla_breached"
    writes.events.append(_event(task, event_type, {"sla": sla}, timezone.now()))
    due = sla.get("due_at") or ""
    text = (
        f"SLA warning: {task.title} is due {due}"
        if kind == SLAEventKind.WARNING
        else f"SLA breached: {task.title} was due {due}"
    )
    if task.assignee_id:
        writes.notifications.append(_NotificationRow(task.assignee_id, text, task.pk))
    else:
        writes.notifications.extend(
            _NotificationRow(user.pk, text, task.pk)
            for user in directory.queue_managers(task.queue_id)
        )


def _decide(
    task: Task,
    spec: SLASpec | None,
    recorded: set[Key],
    directory: _Directory,
    now: datetime,
) -> _Writes:
    """Everything the task's due thresholds do, in order, the task changed in memory."""
    writes = _Writes()
    if task.is_open and (spec is None or spec.is_active):
        for threshold, due_at in pending_thresholds(task, spec):
            if due_at is None or due_at > now:
                break
            key = (task.pk, threshold.kind, threshold.level)
            if key in recorded:  # fired in an earlier transaction: only marked
                mark_fired(task, threshold, now)
                continue
            sla = sla_context(
                task, spec, threshold, due_at, now, directory.manager_contexts(task.queue_id)
            )
            writes.records.append(_Record(key, task.sla_config_id, due_at, sla))
            mark_fired(task, threshold, now)
            if threshold.kind == SLAEventKind.ESCALATION:
                _escalate(task, threshold, sla, directory, writes)
            else:
                _warn_or_breach(task, threshold, sla, directory, writes)
    clock_schedule(task, spec)
    return writes


# --- writing ----------------------------------------------------------------------------


def _column(name: str) -> str:
    return connection.ops.quote_name(cast(Field, Task._meta.get_field(name)).column)


def records_insert(records: Iterable[_Record], fired_at: datetime) -> set[Key]:
    """Insert the records in one statement, those that exist left alone; the keys inserted."""
    return records_send(records, fired_at)()


def records_send(records: Iterable[_Record], fired_at: datetime) -> Callable[[], set[Key]]:
    """``records_insert``, its answer read later (``Later``)."""
    rows = list(records)
    if not rows:
        return set
    if not _postgres():
        won = _records_insert_values(rows, fired_at)
        return lambda: won
    quote = connection.ops.quote_name
    table = quote(SLAEventRecord._meta.db_table)
    columns = ", ".join(
        map(quote, ["task_id", "kind", "level", "config_id", "due_at", "fired_at", "details"])
    )
    # Identifiers come from the model's meta, values go as array parameters.
    sql = (
        f"INSERT INTO {table} ({columns}) "  # noqa: S608
        "SELECT v.task_id, v.kind, v.level, v.config_id, v.due_at, %s::timestamptz, "
        "v.details::jsonb FROM unnest(%b::bigint[], %b::text[], %b::int[], %b::bigint[], "
        "%b::timestamptz[], %b::text[]) "
        "AS v(task_id, kind, level, config_id, due_at, details) "
        f"ON CONFLICT ({quote('task_id')}, {quote('kind')}, {quote('level')}) DO NOTHING "
        f"RETURNING {quote('task_id')}, {quote('kind')}, {quote('level')}"
    )
    params: list[Any] = [
        fired_at,
        [r.key[0] for r in rows],
        [str(r.key[1]) for r in rows],
        [r.key[2] for r in rows],
        [r.config_id for r in rows],
        [r.due_at for r in rows],
        [json.dumps(r.details) for r in rows],
    ]
    later = Later(sql, params)
    return lambda: {(row[0], row[1], row[2]) for row in later.rows()}


def _records_insert_values(rows: list[_Record], fired_at: datetime) -> set[Key]:
    """``records_insert`` without arrays: multi-row ``VALUES``, in chunks."""
    quote = connection.ops.quote_name
    meta = SLAEventRecord._meta
    names = ["task_id", "kind", "level", "config_id", "due_at", "fired_at", "details"]
    won: set[Key] = set()
    for start in range(0, len(rows), 500):
        chunk = rows[start : start + 500]
        params: list[Any] = []
        for r in chunk:
            params += [
                r.key[0],
                r.key[1],
                r.key[2],
                r.config_id,
                meta.get_field("due_at").get_db_prep_save(r.due_at, connection),
                meta.get_field("fired_at").get_db_prep_save(fired_at, connection),
                json.dumps(r.details),
            ]
        values = ", ".join(["(" + ", ".join(["%s"] * len(names)) + ")"] * len(chunk))
        sql = (
            f"INSERT INTO {quote(meta.db_table)} ({', '.join(map(quote, names))}) "  # noqa: S608
            f"VALUES {values} "
            f"ON CONFLICT ({quote('task_id')}, {quote('kind')}, {quote('level')}) DO NOTHING "
            f"RETURNING {quote('task_id')}, {quote('kind')}, {quote('level')}"
        )
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            won |= {(row[0], row[1], int(row[2])) for row in cursor.fetchall()}
    return won


def rows_insert(model: Any, objects: list[Any], *, returning: str | None = None) -> list[Any]:
    """Insert model instances in one statement (``columns_insert``, their values column by
    column); the ``returning`` column's values, in order."""
    if not objects:
        return []
    fields = [f for f in model._meta.concrete_fields if not f.primary_key]
    columns = {f.attname: [getattr(obj, f.attname) for obj in objects] for f in fields}
    return columns_insert(model, columns, returning=returning)


def columns_insert(
    model: type[Model],
    columns: dict[str, list[Any]],
    same: dict[str, Any] | None = None,
    *,
    returning: str | None = None,
) -> list[Any]:
    """Insert rows given column by column (attribute name -> one value per row, every list
    as long) in one ``INSERT ... SELECT FROM unnest(...)``: arrays sent in binary (no
    per-value quoting), JSON columns as JSON texts; ``same`` gives the columns every row
    shares, sent once each, and the columns in neither take their field's default. The
    ``returning`` column's values, in order. No model instances on PostgreSQL."""
    return columns_send(model, columns, same, returning=returning)()


def columns_send(
    model: type[Model],
    columns: dict[str, list[Any]],
    same: dict[str, Any] | None = None,
    *,
    returning: str | None = None,
) -> Callable[[], list[Any]]:
    """``columns_insert``, its answer read later (``Later``)."""
    count = len(next(iter(columns.values()))) if columns else 0
    if not count:
        return list
    same = same or {}
    fields = [f for f in model._meta.concrete_fields if not f.primary_key]
    shared = {
        f.attname: same[f.attname] if f.attname in same else f.get_default()
        for f in fields
        if f.attname not in columns
    }
    if not _postgres():
        objects = [
            model(**shared, **{name: values[n] for name, values in columns.items()})
            for n in range(count)
        ]
        created = model._default_manager.bulk_create(objects)
        values = [getattr(obj, returning) for obj in created] if returning else []
        return lambda: values
    quote = connection.ops.quote_name
    selects: list[str] = []
    arrays: list[str] = []
    names: list[str] = []
    select_params: list[Any] = []
    array_params: list[list[Any]] = []
    for f in fields:
        is_json = f.get_internal_type() == "JSONField"
        encoder = getattr(f, "encoder", None)
        kind = "jsonb" if is_json else f.db_type(connection)
        if f.attname in shared:
            value = shared[f.attname]
            selects.append(f"%s::{kind}")
            select_params.append(json.dumps(value, cls=encoder) if is_json else value)
            continue
        name = f"c{len(names)}"
        names.append(name)
        values = columns[f.attname]
        if is_json:
            arrays.append("%b::text[]")
            selects.append(f"v.{name}::jsonb")
            array_params.append([json.dumps(value, cls=encoder) for value in values])
        else:
            arrays.append(f"%b::{kind}[]")
            selects.append(f"v.{name}")
            array_params.append(values)
    sql = (
        f"INSERT INTO {quote(model._meta.db_table)} "  # noqa: S608
        f"({', '.join(quote(f.column) for f in fields)}) "
        f"SELECT {', '.join(selects)} FROM unnest({', '.join(arrays)}) "
        f"AS v({', '.join(names)})"
    )
    if not returning:
        with connection.cursor() as cursor:
            cursor.execute(sql, [*select_params, *array_params])
        return list
    later = Later(f"{sql} RETURNING {quote(returning)}", [*select_params, *array_params])
    return lambda: [row[0] for row in later.rows()]


class Later:
    """A statement sent now whose rows are read when asked for: in a pipeline
    (``pipelined``), the statements after it go out before its answer is awaited."""

    def __init__(self, sql: str, params: list[Any]) -> None:
        self.cursor = connection.cursor()
        try:
            self.cursor.execute(sql, params)
        except BaseException:
            self.cursor.close()
            raise

    def rows(self) -> list[tuple[Any, ...]]:
        try:
            return list(self.cursor.fetchall())
        finally:
            self.cursor.close()


@contextmanager
def pipelined() -> Iterator[None]:
    """Send the block's statements without waiting for each one's answer (psycopg's
    pipeline mode, PostgreSQL only): the database works through a statement while the next
    one's parameters are built, instead of one waiting for the other. An error comes out at
    the first answer read, or at the block's end."""
    if not _postgres():
        yield
        return
    connection.ensure_connection()
    with connection.connection.pipeline():
        yield


def events_insert(rows: list[_EventRow]) -> None:
    """The batch's events, as ``event_emit`` writes them: source ``task``, no actor, the
    causation of the sweep's context (none for the beat task)."""
    if not rows:
        return
    causation = current_causation()
    columns_insert(
        Event,
        {
            "type": [r.type for r in rows],
            "payload": [r.payload for r in rows],
            "entity_id": [str(r.task_id) for r in rows],
            "occurred_at": [r.occurred_at for r in rows],
        },
        {
            "source": str(EventSource.TASK),
            "actor_id": None,
            "entity_type": "task",
            "idempotency_key": None,
            "request_hash": "",
            "causation_depth": causation.depth + 1 if causation else 0,
            "caused_by_run_id": causation.run_id if causation else None,
        },
    )


def notifications_send(rows: list[_NotificationRow]) -> Callable[[], list[int]]:
    """The batch's notifications (linking to their task's page, one URL per task); their
    ids, in order, read later (``Later``)."""
    if not rows:
        return list
    link = _task_link()
    links = {row.task_id: link(row.task_id) for row in rows}
    return columns_send(
        Notification,
        {
            "recipient_id": [r.recipient_id for r in rows],
            "message": [r.message[:1000] for r in rows],
            "link": [links[r.task_id] for r in rows],
        },
        {"read_at": None, "action_run_id": None, "created_at": timezone.now()},
        returning="id",
    )


_LINK_SENTINEL = "987654321012345"


def _task_link() -> Callable[[int], str]:
    """``Task.get_absolute_url`` for the batch's tasks, the URL reversed once: with an id
    that cannot occur elsewhere in it, then the id put in its place (every task's URL has
    the same shape); reversed per task if the id does not appear exactly once."""
    template = reverse("inbox:task", args=[int(_LINK_SENTINEL)])
    if template.count(_LINK_SENTINEL) != 1:
        return lambda pk: reverse("inbox:task", args=[pk])
    head, tail = template.split(_LINK_SENTINEL)
    return lambda pk: f"{head}{pk}{tail}"


TASK_UPDATE = [
    ("sla_warning_at", "timestamptz"),
    ("sla_due_at", "timestamptz"),
    ("sla_next_check_at", "timestamptz"),
    ("sla_warned_at", "timestamptz"),
    ("sla_breached_at", "timestamptz"),
    ("sla_escalation_level", "int"),
    ("priority", "int"),
    ("assignee_id", "bigint"),
    ("assigned_at", "timestamptz"),
    ("queue_id", "bigint"),
    ("updated_at", "timestamptz"),
]


@cache
def _update_fields() -> tuple[tuple[Field, str], ...]:
    """``TASK_UPDATE``'s fields with their array types (once the models are loaded)."""
    return tuple(
        (cast(Field, Task._meta.get_field(name.removesuffix("_id"))), kind)
        for name, kind in TASK_UPDATE
    )


def update_values(task: Task) -> tuple[Any, ...]:
    """The task's values of the columns ``tasks_update`` may write, in order."""
    return tuple(getattr(task, f.attname) for f, _ in _update_fields())


def tasks_update(tasks: list[Task], before: dict[int, tuple[Any, ...]] | None = None) -> None:
    """Write the batch's clocks, markers, priorities and assignments in one statement: the
    columns that some task of the batch changed (``before``: each task's ``update_values``
    as read; without it, every column). A breach moves two columns of the eleven, and each
    column left out is one array less to build and send."""
    if not tasks:
        return
    fields = list(_update_fields())
    if before is not None:
        changed = {
            n
            for task in tasks
            for n, (value, old) in enumerate(zip(update_values(task), before[task.pk], strict=True))
            if value != old
        }
        fields = [field for n, field in enumerate(fields) if n in changed]
        if not fields:
            return
    if not _postgres():
        Task.objects.bulk_update(tasks, [f.name for f, _ in fields])
        return
    assignments = ", ".join(f"{_column(f.name)} = v.c{n}" for n, (f, _) in enumerate(fields))
    arrays = ", ".join(f"%b::{kind}[]" for _, kind in fields)
    names = ", ".join(f"c{n}" for n in range(len(fields)))
    sql = (
        f"UPDATE {connection.ops.quote_name(Task._meta.db_table)} AS t "  # noqa: S608
        f"SET {assignments} FROM unnest(%b::bigint[], {arrays}) AS v(id, {names}) "
        f"WHERE t.{_column('id')} = v.id"
    )
    params: list[list[Any]] = [[t.pk for t in tasks]]
    params += [[getattr(t, f.attname) for t in tasks] for f, _ in fields]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)


def _specs(tasks: list[Task], outcome: BatchOutcome, strict: bool) -> dict[int, SLASpec]:
    configs = SLAConfig.objects.in_bulk({t.sla_config_id for t in tasks if t.sla_config_id})
    specs: dict[int, SLASpec] = {}
    for pk, config in configs.items():
        try:
            specs[pk] = sla_spec(config)
        except Exception:
            if strict:
                raise
            broken = [t.pk for t in tasks if t.sla_config_id == pk]
            for task_id in broken:
                logger.exception(
                    "SLA check of task %s failed; skipped until its lease ends", task_id
                )
            outcome.failed.extend(broken)
    return specs


def fire_batch(
    task_ids: list[int], *, strict: bool = False, claimed: list[Task] | None = None
) -> BatchOutcome:
    """Fire what is due on these tasks, set-based (in the caller's transaction, which must
    be atomic). ``strict``: a task's failure raises instead of leaving it out. ``claimed``:
    the tasks' rows as the caller read and locked them in this transaction (the claim), not
    read again."""
    with server_binding(), collection_paused():
        return _fire_batch(task_ids, strict=strict, claimed=claimed)


@contextmanager
def collection_paused() -> Iterator[None]:
    """No cyclic garbage collection while a batch is decided and written: the batch makes
    tens of thousands of short-lived containers (model rows, payloads, parameter lists),
    which trigger a collection every few hundred allocations, each one walking the young
    objects again and now and then the worker's whole heap, to find no cycle
    (reference counting frees the batch's objects). About a tenth of a batch's time; the
    collector runs again as soon as the batch ends."""
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def _fire_batch(task_ids: list[int], *, strict: bool, claimed: list[Task] | None) -> BatchOutcome:
    outcome = BatchOutcome()
    if claimed is not None:
        tasks = sorted(claimed, key=lambda task: task.pk)
    else:
        tasks = list(
            Task.objects.select_for_update().filter(pk__in=id_array(task_ids)).order_by("pk")
        )
    if not tasks:
        return outcome
    now = timezone.now()
    specs = _specs(tasks, outcome, strict)
    failed = set(outcome.failed)
    tasks = [t for t in tasks if t.pk not in failed]
    directory = _Directory(tasks, specs)
    before = {task.pk: update_values(task) for task in tasks}
    recorded: set[Key] = {
        (task_id, kind, level)
        for task_id, kind, level in SLAEventRecord.objects.filter(
            task_id__in=id_array(t.pk for t in tasks)
        ).values_list("task_id", "kind", "level")
    }
    done: list[Task] = []
    batch = _Writes()
    for task in tasks:
        try:
            directory.attach(task)
            spec = specs.get(task.sla_config_id) if task.sla_config_id else None
            writes = _decide(task, spec, recorded, directory, now)
        except Exception:
            if strict:
                raise
            logger.exception("SLA check of task %s failed; skipped until its lease ends", task.pk)
            outcome.failed.append(task.pk)
            continue
        done.append(task)
        batch.records += writes.records
        batch.events += writes.events
        batch.notifications += writes.notifications
        batch.history += writes.history
        batch.skipped += writes.skipped
    # The writes go out together; the records' answer is read last. Should one of them
    # have been written already (never, under the batch's locks), the batch raises before
    # anything is emitted or published and its transaction rolls back whole.
    expected = {r.key for r in batch.records}
    with pipelined():
        won_read = records_send(batch.records, now)
        tasks_update(done, before)
        rows_insert(TaskHistory, batch.history)
        events_insert(batch.events)
        notifications_read = notifications_send(batch.notifications)
        won = won_read()
        notification_ids = notifications_read()
    if won != expected:
        raise RecordsLost(f"{len(expected - won)} SLA record(s) of this batch were already written")
    if batch.events:
        ring_after_commit()
    if batch.events or batch.notifications:
        updates = [
            (e.task_id, e.payload.get("state"), e.payload.get("queue_id"), e.type)
            for e in batch.events
        ]
        notified = [
            (pk, n.recipient_id)
            for pk, n in zip(notification_ids, batch.notifications, strict=True)
        ]
        owners = {t.pk: (t.assignee_id, t.queue_id) for t in done}
        transaction.on_commit(lambda: publish_batch(updates, notified, owners))
    outcome.fired = len(won)
    outcome.skipped = batch.skipped
    return outcome


# --- live updates ---------------------------------------------------------------------


Owners = dict[int, tuple[int | None, int | None]]  # task id -> (assignee id, queue id)


def publish_batch(
    updates: list[tuple[int, str | None, int | None, str]],
    notified: list[tuple[int, int]],
    owners: Owners,
) -> int:
    """After the batch's commit: the live updates ``tasks_inbox.live`` sends for each event
    and notification (``task``: id, state, event; ``queue``: id, once per queue of the
    batch; ``notification``: id), their audiences worked out together with the same rules
    (``tasks_visible_to`` for a task) in a few statements per batch and the users of its
    queues, then sent in one pass. ``owners``: each task's assignee and queue as the batch
    wrote them. Never raises."""
    try:
        with server_binding(), collection_paused():
            messages = _live_messages(updates, notified, owners)
            return publish_many_now(messages)
    except Exception:
        logger.exception("live updates of an SLA batch could not be published")
        return 0


def _live_messages(
    updates: list[tuple[int, str | None, int | None, str]],
    notified: list[tuple[int, int]],
    owners: Owners,
) -> list[tuple[str, dict[str, Any], Audience]]:
    user_model = get_user_model()
    task_ids = sorted({task_id for task_id, _, _, _ in updates})
    rows = {
        pk: {"assignee_id": owners[pk][0], "queue_id": owners[pk][1]}
        for pk in task_ids
        if pk in owners
    }
    queue_ids = {row["queue_id"] for row in rows.values() if row["queue_id"]}
    queue_ids |= {queue_id for _, _, queue_id, _ in updates if queue_id}
    staff = set(
        user_model._default_manager.filter(is_active=True, is_staff=True).values_list(
            "pk", flat=True
        )
    )
    members: dict[int, set[int]] = {}
    managers: dict[int, set[int]] = {}
    if queue_ids:
        membership = user_model.groups.through
        for group_id, user_id in membership.objects.filter(
            group_id__in=queue_ids, **{f"{membership_user_field()}__is_active": True}
        ).values_list("group_id", membership_user_field() + "_id"):
            members.setdefault(group_id, set()).add(user_id)
        for group_id, user_id in Queue.objects.filter(
            group_id__in=queue_ids, managers__is_active=True
        ).values_list("group_id", "managers"):
            managers.setdefault(group_id, set()).add(user_id)
    # Only the users with a live socket open get a message: the audiences are worked out
    # for them alone (with nobody listening, a batch sends nothing and asks no more).
    everyone = staff | {row["assignee_id"] for row in rows.values() if row["assignee_id"]}
    everyone |= {recipient for _, recipient in notified}
    for group in (members, managers):
        everyone = everyone.union(*group.values())
    listening = users_listening(everyone)
    if not listening:
        return []
    staff &= listening
    members = {pk: users & listening for pk, users in members.items()}
    managers = {pk: users & listening for pk, users in managers.items()}
    notified = [(pk, recipient) for pk, recipient in notified if recipient in listening]
    near: dict[int, set[int]] = {}
    for pk, row in rows.items():
        people = set(staff)
        if row["assignee_id"] in listening:
            people.add(row["assignee_id"])
        if row["queue_id"]:
            people |= members.get(row["queue_id"], set()) | managers.get(row["queue_id"], set())
        near[pk] = people
    candidates = set().union(*near.values()) - staff if near else set()
    active = list(
        user_model._default_manager.filter(pk__in=candidates, is_active=True).order_by("pk")
    )
    viewers = task_viewers(active, task_ids)
    messages: list[tuple[str, dict[str, Any], Audience]] = []
    nobody: frozenset[int] = frozenset()
    for task_id, state, _, event_type in updates:
        # staff see every task; the others as the rule says (a task gone: nobody)
        around = near.get(task_id)
        audience = Audience(
            user_ids=frozenset(around & (viewers.get(task_id, nobody) | staff))
            if around
            else nobody
        )
        messages.append(("task", {"id": task_id, "state": state, "event": event_type}, audience))
    for queue_id in sorted({queue_id for _, _, queue_id, _ in updates if queue_id}):
        audience = Audience(
            user_ids=frozenset(staff | members.get(queue_id, set()) | managers.get(queue_id, set()))
        )
        messages.append(("queue", {"id": queue_id}, audience))
    for notification_id, recipient_id in notified:
        messages.append(
            ("notification", {"id": notification_id}, Audience(user_ids=frozenset([recipient_id])))
        )
    return messages


VISIBILITY_COLUMNS = 100  # users per statement (one boolean column each)


def task_viewers(users: list[Any], task_ids: list[int]) -> dict[int, set[int]]:
    """Which of these active users who are not staff may see each of ``task_ids`` (task id
    -> user ids): the visibility rule as ``tasks_visible_to`` applies it
    (``visibility_filter``), one boolean column per user, so a batch asks once per
    ``VISIBILITY_COLUMNS`` users instead of once per user."""
    viewers: dict[int, set[int]] = {}
    for start in range(0, len(users), VISIBILITY_COLUMNS):
        chunk = users[start : start + VISIBILITY_COLUMNS]
        with connection.cursor() as cursor:
            cursor.execute(*_visibility_statement(chunk, task_ids))
            for pk, *flags in cursor.fetchall():
                seen = viewers.setdefault(pk, set())
                seen.update(user.pk for user, flag in zip(chunk, flags, strict=True) if flag)
    return viewers


# Compiled visibility statements by their users (ids in order). The statement depends on
# nothing else: the rule's memberships are subqueries, read when it runs. Compiling one is
# what costs (a rule with two subqueries per user), so a worker's sweeps compile each set
# of users once.
_VISIBILITY_SQL: dict[tuple[int, ...], tuple[str, list[Any]]] = {}
_VISIBILITY_SQL_MAX = 256


def _visibility_statement(users: list[Any], task_ids: list[int]) -> tuple[str, list[Any]]:
    """The SQL and parameters of the visibility columns of ``users`` over ``task_ids``
    (``pk``, then one boolean per user, in order)."""
    key = tuple(user.pk for user in users)
    cached = _VISIBILITY_SQL.get(key) if _postgres() else None
    if cached is not None:
        sql, params = cached
        return sql, [*params, task_ids]
    columns = {
        f"visible_{n}": ExpressionWrapper(visibility_filter(user), output_field=BooleanField())
        for n, user in enumerate(users)
    }
    ids = RawSQL("SELECT unnest(%s::bigint[])", (task_ids,)) if _postgres() else task_ids
    query = Task.objects.filter(pk__in=ids).annotate(**columns).values_list("pk", *columns)
    compiled, values = query.query.sql_with_params()
    if _postgres() and values and values[-1] is task_ids:  # the ids come last: reusable
        if len(_VISIBILITY_SQL) >= _VISIBILITY_SQL_MAX:
            _VISIBILITY_SQL.clear()
        _VISIBILITY_SQL[key] = (compiled, list(values[:-1]))
    return compiled, list(values)


def membership_user_field() -> str:
    """The user side of the user-group membership table (``user`` for Django's own)."""
    through = get_user_model().groups.through
    return next(
        f.name
        for f in through._meta.get_fields()
        if getattr(f, "related_model", None) is get_user_model()
    )
