"""Writes of tasks: creation with routing, the one transition service, claim, complete,
reassign, escalate, notes and notifications.

Every write locks the task row (``select_for_update``) after checking that the actor may
see it (out of scope answers 404 like a missing task), writes a ``TaskHistory`` row and
emits its events (``task.created``, ``task.transitioned``, ``task.completed``,
``task.cancelled``, ``task.assigned``, ``task.escalated``) in the same transaction. When a
task a run waits for reaches a final state, the run's step is resumed in that transaction
too (the ``automation.signals.waiting_step_ended`` signal); the run advances after commit.

``actor=None`` is the system (a workflow step): it sees every task and may fire any
transition; guards still apply.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, User
from django.contrib.contenttypes.models import ContentType
from django.db import models, transaction
from django.db.models import Count, F, Max, Q, QuerySet
from django.utils import timezone

from automation.events import actor_context, event_emit
from automation.models import ActionRun, EventSource, Note, NoteVisibility
from automation.registry import json_value
from automation.signals import waiting_step_ended
from config.errors import NotFound, PermissionDenied, ValidationFailed
from config.issues import Issue, IssueCode
from tasks_inbox.errors import ActionDisabled, AlreadyClaimed, FormInvalid, InvalidTransition
from tasks_inbox.form_schema import form_clean, form_issues
from tasks_inbox.lifecycles import CLAIM_OPERATION, LifecycleSpec, lifecycle_get, lifecycle_spec
from tasks_inbox.live import notification_created, task_changed
from tasks_inbox.models import (
    Notification,
    Priority,
    Queue,
    RoutingMode,
    Task,
    TaskHistory,
    priority_name,
    priority_parse,
    priority_unknown,
)
from tasks_inbox.selectors import (
    guard_context,
    may_fire,
    member_queue_ids,
    task_available_transitions,
    task_context,
    task_roles,
    tasks_claim_scope,
    tasks_visible_to,
)
from tasks_inbox.sla.clock import clock_on_create, clock_on_transition
from workflows.models import Lifecycle

Actor = User | None


def _person(actor: Any) -> User | None:
    """The actor as a user to store, or None for the system and anonymous users."""
    return actor if actor_context(actor) else None


def priority_value(value: Any) -> int:
    """``"high"`` or ``30`` -> 30; anything else is a validation error."""
    parsed = priority_parse(value)
    if parsed is None:
        raise ValidationFailed.from_issues([("priority", priority_unknown(value))])
    return parsed


# --- routing ----------------------------------------------------------------------------


def queue_settings(group: Group) -> Queue:
    return Queue.objects.get_or_create(group=group)[0]


def least_busy_member(group: Group) -> User | None:
    """The active member of ``group`` with the fewest open tasks; ties go to whoever was
    assigned a task least recently (never assigned first), then the lowest id."""
    return (
        get_user_model()
        .objects.filter(groups=group, is_active=True)
        .annotate(
            open_tasks=Count("assigned_tasks", filter=Q(assigned_tasks__is_open=True)),
            last_assigned=Max("assigned_tasks__assigned_at"),
        )
        .order_by("open_tasks", F("last_assigned").asc(nulls_first=True), "pk")
        .first()
    )


def queue_route(*, queue: Group, routing: str | None = None) -> User | None:
    """Who gets a task sent to ``queue``: the least busy member, or nobody (members claim).

    The queue's row is locked until the caller's transaction ends, so tasks routed into
    one queue at the same time are counted one after the other.
    """
    settings_row = queue_settings(queue)
    settings_row = Queue.objects.select_for_update().get(pk=settings_row.pk)
    mode = routing or settings_row.routing
    if mode not in RoutingMode.values:
        raise ValidationFailed.from_issues(
            [("routing", f"unknown routing {mode!r} (known: {', '.join(RoutingMode.values)})")]
        )
    if mode == RoutingMode.CLAIM:
        return None
    return least_busy_member(queue)


# --- creating ---------------------------------------------------------------------------


@transaction.atomic
def task_create(
    *,
    title: str,
    description: str = "",
    task_type: str = "",
    assignee: User | None = None,
    queue: Group | None = None,
    routing: str | None = None,
    priority: int | str = Priority.MEDIUM,
    due_at: datetime | None = None,
    lifecycle: Lifecycle | str | None = None,
    form: dict[str, Any] | None = None,
    related: models.Model | None = None,
    parent: Task | None = None,
    created_by: Actor = None,
    origin_action_run: ActionRun | None = None,
    wait: bool = False,
    sla_due_at: datetime | None = None,
) -> Task:
    """Create a task in its lifecycle's initial state, routed to ``assignee`` or into
    ``queue`` (least busy member, or claimable), and emit ``task.created``."""
    issues = form_issues(form)
    title = (title or "").strip()
    if not title or len(title) > 300:
        issues.append(
            Issue("title", IssueCode.INVALID, "must be non-empty text of at most 300 characters")
        )
    if len(task_type or "") > 64:
        issues.append(Issue("task_type", IssueCode.INVALID, "at most 64 characters"))
    if assignee is not None and not assignee.is_active:
        issues.append(
            Issue("assignee", IssueCode.INVALID, f"user '{assignee.get_username()}' is not active")
        )
    if due_at is not None and timezone.is_naive(due_at):
        issues.append(Issue("due_at", IssueCode.INVALID, "must carry a time zone"))
    if issues:
        raise ValidationFailed.from_issues(issues)
    if not isinstance(lifecycle, Lifecycle):
        lifecycle = lifecycle_get(lifecycle)
    initial = lifecycle_spec(lifecycle).initial
    if assignee is None and queue is not None:
        assignee = queue_route(queue=queue, routing=routing)
    now = timezone.now()
    task = Task(
        title=title,
        description=description or "",
        task_type=task_type or "",
        queue=queue,
        assignee=assignee,
        assigned_at=now if assignee else None,
        priority=priority_value(priority),
        due_at=due_at,
        lifecycle=lifecycle,
        state=initial.key,
        is_open=True,
        form=form or {},
        parent=parent,
        origin_run_id=origin_action_run.run_id if origin_action_run else None,
        origin_action_run=origin_action_run,
        wait=bool(wait and origin_action_run),
        created_by=_person(created_by),
        created_at=now,
        updated_at=now,
        sla_due_at=sla_due_at,
    )
    if related is not None:
        task.content_type = ContentType.objects.get_for_model(related)
        task.object_id = str(related.pk)
    clock_on_create(task, now=now, due_at=sla_due_at)  # the SLA: config, clock, due times
    task.save(force_insert=True)
    TaskHistory.objects.create(
        task=task,
        action="create",
        from_state="",
        to_state=initial.key,
        actor=_person(created_by),
        created_at=now,
        input={
            "assignee": assignee.get_username() if assignee else None,
            "queue": queue.name if queue else None,
        },
    )
    _emit(task, "task.created", created_by)
    if assignee is not None:
        _notify(assignee, f"New task for you: {task.title}", task)
    return task


def task_create_by_hand(
    *,
    actor: User,
    assignee: User | None = None,
    queue: Group | None = None,
    **fields: Any,
) -> Task:
    """A task a person creates (API): staff may assign anyone; others may create tasks for
    themselves or in their own queues, and one given neither is their own."""
    if not actor.is_staff:
        own_queue = queue is not None and member_queue_ids(actor).filter(pk=queue.pk).exists()
        if (assignee is not None and assignee.pk != actor.pk) or (
            queue is not None and not own_queue
        ):
            raise PermissionDenied("You may create tasks for yourself or in your queues.")
        if assignee is None and queue is None:
            assignee = actor
    return task_create(assignee=assignee, queue=queue, created_by=actor, **fields)


# --- the transition service -------------------------------------------------------------


def _open_task_for_handling(task_id: Any, actor: Actor, verb: str, past: str) -> Task:
    """Lock an open task that its assignee, its queue's managers or staff may hand on
    (``verb``/``past``: reassign/reassigned, escalate/escalated)."""
    task = _task_for_update(task_id, actor)
    spec = lifecycle_spec(task.lifecycle)
    if not task_roles(task, actor) & {"manager", "staff", "assignee", "system"}:
        raise PermissionDenied(
            f"Only the assignee, the queue's managers or staff can {verb} this task."
        )
    if not task.is_open:
        raise _invalid(task, actor, spec, f"A {task.state} task cannot be {past}.")
    return task


def _task_for_update(task_id: Any, actor: Actor, scope: QuerySet[Task] | None = None) -> Task:
    """Lock the task, then check that ``actor`` may see it (or that it is in ``scope``);
    otherwise 404, as if it did not exist.

    The row is locked first and read again after the lock is granted, so what is checked is
    what whoever held the lock before committed (the related rows too: a locking query
    that joins them could return the joined rows as they were before the wait).
    """
    try:
        pk = int(task_id)
    except (ValueError, TypeError):
        raise NotFound(f"Task {task_id} not found.") from None
    locked = list(Task.objects.select_for_update().filter(pk=pk).values_list("pk", flat=True))
    scope = tasks_visible_to(actor) if scope is None else scope
    if not locked or not scope.filter(pk=pk).exists():
        raise NotFound(f"Task {task_id} not found.")
    return Task.objects.select_related(
        "lifecycle", "assignee", "queue", "created_by", "completed_by"
    ).get(pk=pk)


def _allowed(task: Task, actor: Actor, spec: LifecycleSpec) -> list[str]:
    return [t.action for t in task_available_transitions(task, actor, spec)]


def _invalid(task: Task, actor: Actor, spec: LifecycleSpec, message: str) -> InvalidTransition:
    return InvalidTransition(
        message, data={"current_state": task.state, "allowed_actions": _allowed(task, actor, spec)}
    )


def _disabled(task: Task, actor: Actor, spec: LifecycleSpec, action: str) -> ActionDisabled:
    return ActionDisabled(
        f"The action '{action}' of the '{spec.slug}' lifecycle is disabled.",
        data={
            "action": action,
            "current_state": task.state,
            "allowed_actions": _allowed(task, actor, spec),
        },
    )


def _empty(value: Any) -> bool:
    return value is None or value == "" or value == [] or value == {}


@transaction.atomic
def task_transition(
    *,
    task_id: Any,
    action: str,
    actor: Actor,
    input: dict[str, Any] | None = None,
    outcome: str | None = None,
) -> Task:
    """Fire ``action`` on the task: the one way a task changes state."""
    task = _task_for_update(task_id, actor)
    return _transition(task, action, actor, input, outcome=outcome)


def _transition(
    task: Task,
    action: str,
    actor: Actor,
    data: Any,
    *,
    history_action: str | None = None,
    outcome: str | None = None,
    input_path: str = "input",
) -> Task:
    """Check and apply one transition to a locked task (see ``task_transition``)."""
    spec = lifecycle_spec(task.lifecycle)
    transition = spec.transitions.get(str(action))
    if transition is None:
        raise _invalid(
            task, actor, spec, f"'{action}' is not an action of the '{spec.slug}' lifecycle."
        )
    if not transition.is_enabled:  # switched off whatever the state: its own code
        raise _disabled(task, actor, spec, transition.action)
    if task.state not in transition.from_states:
        raise _invalid(
            task, actor, spec, f"'{action}' is not allowed from the state '{task.state}'."
        )
    target = spec.states[transition.to_state]
    if not target.is_enabled:
        raise _invalid(task, actor, spec, f"The state '{target.key}' is disabled.")
    if not may_fire(transition, task_roles(task, actor)):
        raise PermissionDenied(
            f"You may not '{action}' this task (allowed: {', '.join(transition.allowed)})."
        )
    if transition.guard is not None and not transition.guard(guard_context(task, actor)):
        raise _invalid(
            task, actor, spec, f"The condition of '{action}' does not hold for this task."
        )
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ValidationFailed.from_issues([(input_path, "must be an object")])
    completing = spec.is_completing(transition)
    if completing and task.form_fields:
        cleaned, errors = form_clean(task.form, data, path=input_path)
        if errors:
            first = next(iter(errors.items()))
            raise FormInvalid(f"{first[0]}: {first[1][0]}", fields=errors)
        data = cleaned
    missing = [name for name in transition.required_input if _empty(data.get(name))]
    if missing:
        raise ValidationFailed.from_issues(
            [(f"{input_path}.{name}", "this field is required") for name in missing]
        )
    data = json_value(data)

    now = timezone.now()
    from_state = task.state
    task.state = target.key
    task.is_open = not target.is_final
    task.updated_at = now
    fields = ["state", "is_open", "updated_at"]
    if transition.unassign and task.queue_id and task.assignee_id:
        task.assignee = None
        task.assigned_at = None
        fields += ["assignee", "assigned_at"]
    if target.is_final:
        task.closed_at = now
        task.completed_by = _person(actor)
        task.outcome = str(outcome or target.key)[:64]
        fields += ["closed_at", "completed_by", "outcome"]
        if completing and (task.form_fields or data):
            task.result = data
            fields.append("result")
    fields += clock_on_transition(
        task,
        to_state=target.key,
        pauses=target.pauses_sla,
        final=target.is_final,
        completed=target.is_final and not target.is_cancellation,
        now=now,
    )  # the SLA clock starts, pauses, resumes or stops
    task.save(update_fields=fields)
    TaskHistory.objects.create(
        task=task,
        action=history_action or transition.action,
        from_state=from_state,
        to_state=target.key,
        actor=_person(actor),
        input=data,
        created_at=now,
    )
    change = {
        "action": history_action or transition.action,
        "from_state": from_state,
        "to_state": target.key,
        "input": data,
    }
    extra = {
        "transition": change,
        "action": change["action"],
        "from_state": from_state,
        "to_state": target.key,
    }
    _emit(task, "task.transitioned", actor, extra)
    if target.is_final:
        _emit(task, "task.cancelled" if target.is_cancellation else "task.completed", actor, extra)
        _resume_origin(task, cancelled=target.is_cancellation, data=data)
    return task


def _resume_origin(task: Task, *, cancelled: bool, data: dict[str, Any]) -> None:
    """Resume the run waiting on this task (in this transaction)."""
    if not (task.wait and task.origin_action_run_id):
        return
    output = {
        "task_id": task.pk,
        "state": task.state,
        "outcome": task.outcome,
        "result": task.result,
        "completed_by": actor_context(task.completed_by) if task.completed_by_id else None,
    }
    reason = data.get("reason") if isinstance(data, dict) else None
    error = f"Task #{task.pk} was cancelled" + (f": {reason}" if reason else ".")
    waiting_step_ended.send(
        sender=Task,
        action_run_id=task.origin_action_run_id,
        output=output,
        failed=cancelled,
        error=error if cancelled else "",
    )


@transaction.atomic
def task_complete(
    *, task_id: Any, actor: Actor, data: dict[str, Any] | None = None, outcome: str | None = None
) -> Task:
    """Submit the task's form and fire its completing transition (the lifecycle's
    ``on_complete`` one from here, else the first one into a final, non-cancelling state)."""
    task = _task_for_update(task_id, actor)
    spec = lifecycle_spec(task.lifecycle)
    chosen = spec.completion(task.state)
    if chosen is None:
        switched_off = spec.disabled_completion(task.state)
        if switched_off is not None:
            raise _disabled(task, actor, spec, switched_off.action)
        raise _invalid(
            task, actor, spec, f"The task cannot be completed from the state '{task.state}'."
        )
    return _transition(task, chosen.action, actor, data, outcome=outcome, input_path="data")


@transaction.atomic
def task_claim(*, task_id: Any, actor: User) -> Task:
    """Take an unassigned task of one's queue. Of concurrent claims exactly one wins (the
    row lock orders them); the others get 409 CONFLICT. Fires the lifecycle's
    ``on_claim`` transition when one leaves the current state.

    A member of the task's queue who claims it after someone else did gets 409 too (not
    the 404 of a task out of sight): they saw it in their queue a moment ago.
    """
    task = _task_for_update(task_id, actor, scope=tasks_claim_scope(actor))
    if task.assignee is not None:
        if task.assignee_id == actor.pk:
            raise AlreadyClaimed("You have already claimed this task.")
        if not tasks_visible_to(actor).filter(pk=task.pk).exists():
            raise AlreadyClaimed()  # who holds it now is out of the caller's sight
        who = task.assignee.get_username()
        raise AlreadyClaimed(f"The task was already claimed by {who}.", data={"assignee": who})
    spec = lifecycle_spec(task.lifecycle)
    if not task.is_open:
        raise _invalid(task, actor, spec, f"A {task.state} task cannot be claimed.")
    roles = task_roles(task, actor)
    if not roles & {"queue_member", "manager", "staff"}:
        raise PermissionDenied("Only members of the task's queue can claim it.")
    now = timezone.now()
    task.assignee = actor
    task.assigned_at = now
    task.updated_at = now
    task.save(update_fields=["assignee", "assigned_at", "updated_at"])
    fired = spec.claim_transition(task.state)
    if fired is not None:
        _transition(task, fired.action, actor, {}, history_action=CLAIM_OPERATION)
    else:
        TaskHistory.objects.create(
            task=task,
            action=CLAIM_OPERATION,
            from_state=task.state,
            to_state=task.state,
            actor=actor,
            created_at=now,
        )
    _emit(task, "task.assigned", actor, {"assignment": {"kind": "claim"}})
    return task


def _assignment(task: Task, assignee: User | None, queue: Group | None) -> None:
    if assignee is not None and not assignee.is_active:
        raise ValidationFailed.from_issues(
            [("assignee", f"user '{assignee.get_username()}' is not active")]
        )
    if queue is not None:
        task.queue = queue
    if assignee is None and queue is not None:
        assignee = queue_route(queue=queue)
    if assignee is not None or queue is not None:
        task.assignee = assignee
        task.assigned_at = timezone.now() if assignee is not None else None


@transaction.atomic
def task_reassign(
    *,
    task_id: Any,
    actor: Actor,
    assignee: User | None = None,
    queue: Group | None = None,
    reason: str = "",
) -> Task:
    """Give the task to someone else, or into a queue (routed like a new task).

    Allowed to the queue's managers, staff and the current assignee (handing it over).
    """
    task = _open_task_for_handling(task_id, actor, "reassign", "reassigned")
    if assignee is None and queue is None:
        raise ValidationFailed.from_issues([("assignee", "give an assignee or a queue")])
    previous = task.assignee.get_username() if task.assignee is not None else None
    _assignment(task, assignee, queue)
    task.updated_at = timezone.now()
    task.save(update_fields=["assignee", "assigned_at", "queue", "updated_at"])
    TaskHistory.objects.create(
        task=task,
        action="reassign",
        from_state=task.state,
        to_state=task.state,
        actor=_person(actor),
        created_at=task.updated_at,
        input={
            "from": previous,
            "to": task.assignee.get_username() if task.assignee is not None else None,
            "queue": task.queue.name if task.queue is not None else None,
            "reason": reason,
        },
    )
    _emit(
        task,
        "task.assigned",
        actor,
        {"assignment": {"kind": "reassign", "from": previous, "reason": reason}},
    )
    if task.assignee is not None and task.assignee_id != getattr(actor, "pk", None):
        _notify(task.assignee, f"Task reassigned to you: {task.title}", task)
    return task


@transaction.atomic
def task_escalate(
    *,
    task_id: Any,
    actor: Actor,
    reason: str = "",
    priority: int | str | None = None,
    assignee: User | None = None,
    queue: Group | None = None,
) -> Task:
    """Raise the task's priority (one level unless given), optionally reassign it, tell the
    assignee and the queue's managers, and emit ``task.escalated``."""
    task = _open_task_for_handling(task_id, actor, "escalate", "escalated")
    before = task.priority
    if priority is not None:
        task.priority = priority_value(priority)
    else:
        higher = [value for value in Priority.values if value > task.priority]
        task.priority = min(higher) if higher else task.priority
    _assignment(task, assignee, queue)
    task.updated_at = timezone.now()
    task.save(update_fields=["priority", "assignee", "assigned_at", "queue", "updated_at"])
    details = {
        "reason": reason,
        "from_priority": priority_name(before),
        "priority": priority_name(task.priority),
        "assignee": task.assignee.get_username() if task.assignee is not None else None,
        "queue": task.queue.name if task.queue is not None else None,
    }
    TaskHistory.objects.create(
        task=task,
        action="escalate",
        from_state=task.state,
        to_state=task.state,
        actor=_person(actor),
        created_at=task.updated_at,
        input=details,
    )
    _emit(task, "task.escalated", actor, {"escalation": details})
    recipients: set[User] = set()
    if task.assignee is not None:
        recipients.add(task.assignee)
    if task.queue_id:
        recipients.update(get_user_model().objects.filter(managed_queues__group=task.queue_id))
    for user in sorted(recipients, key=lambda u: u.pk):
        _notify(user, f"Task escalated ({priority_name(task.priority)}): {task.title}", task)
    return task


# --- notes and notifications ------------------------------------------------------------


@transaction.atomic
def task_note_add(*, task_id: Any, actor: User, text: str) -> Note:
    """A note on the task (``automation.Note``), by someone who can see it."""
    task = _task_for_update(task_id, actor)
    text = (text or "").strip()
    if not text:
        raise ValidationFailed.from_issues([("note", "write something")])
    if len(text) > 20000:
        raise ValidationFailed.from_issues([("note", "at most 20000 characters")])
    task_changed(task, "task.note_added")  # live pages, after the commit
    return Note.objects.create(
        content_type=ContentType.objects.get_for_model(Task),
        object_id=str(task.pk),
        note=text,
        visibility=NoteVisibility.INTERNAL,
        author=_person(actor),
    )


def notification_mark_read(*, user: User, notification_id: int | None = None) -> int:
    """Mark one of the user's notifications (or all of them) read; returns how many."""
    queryset = Notification.objects.filter(recipient=user, read_at__isnull=True)
    if notification_id is not None:
        queryset = queryset.filter(pk=notification_id)
    return queryset.update(read_at=timezone.now())


def _notify(user: User, message: str, task: Task) -> None:
    notification = Notification.objects.create(
        recipient=user, message=message[:1000], link=task.get_absolute_url()
    )
    notification_created(notification)


def _emit(task: Task, event_type: str, actor: Actor, extra: dict[str, Any] | None = None) -> None:
    context = task_context(task)
    if extra:
        context.update(json_value(extra))
    event_emit(
        event_type,
        context=context,
        actor=_person(actor),
        source=EventSource.TASK,
        entity_type="task",
        entity_id=task.pk,
    )
    task_changed(task, event_type)  # live pages, after the commit
