"""Reads for the inbox. The one visibility rule lives here (``tasks_visible_to``).

A user sees the tasks assigned to them, the unassigned tasks of their queues (groups) and,
for the queues they manage, every task of the queue; staff see all. The API, the pages and
exports all start from ``tasks_visible_to``; whatever is outside it answers 404.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any, TypeGuard

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AnonymousUser, Group
from django.contrib.auth.models import User as AuthUser
from django.db.models import (
    Avg,
    Count,
    IntegerField,
    OuterRef,
    Q,
    QuerySet,
    Subquery,
    Value,
)
from django.db.models.functions import Coalesce
from django.utils import timezone

from config.aggregates import grouped_percentiles
from config.errors import NotFound
from config.references import reference_text, users_named, whole_number
from tasks_inbox.errors import AmbiguousQueue, AmbiguousUser, UnknownQueue, UnknownUser
from tasks_inbox.lifecycles import LifecycleSpec, TransitionSpec, lifecycle_spec
from tasks_inbox.models import Notification, Queue, Task, TaskHistory, priority_name

User = AuthUser | AnonymousUser | None

LIST_RELATED = ("queue", "assignee", "lifecycle")


def _authenticated(user: User) -> TypeGuard[AuthUser]:
    return bool(user is not None and user.is_authenticated and user.is_active)


def member_queue_ids(user: AuthUser) -> QuerySet[Group, int]:
    """The groups (queues) ``user`` belongs to, as a subquery of ids."""
    return Group.objects.filter(user=user).values_list("pk", flat=True)


def managed_queue_ids(user: AuthUser) -> QuerySet[Queue, int]:
    """The groups whose queue ``user`` manages, as a subquery of ids."""
    return Queue.objects.filter(managers=user).values_list("group_id", flat=True)


def visibility_filter(user: AuthUser) -> Q:
    return (
        Q(assignee=user)
        | Q(assignee__isnull=True, queue__in=member_queue_ids(user))
        | Q(queue__in=managed_queue_ids(user))
    )


def tasks_visible_to(user: User) -> QuerySet[Task]:
    """Every task ``user`` may see (the visibility rule). ``None`` is the system: all."""
    if user is None:
        return Task.objects.all()
    if not _authenticated(user):
        return Task.objects.none()
    if user.is_staff:
        return Task.objects.all()
    return Task.objects.filter(visibility_filter(user))


def tasks_claim_scope(user: User) -> QuerySet[Task]:
    """Where a claim may look: the visible tasks plus every task of the user's queues, so a
    member who lost the race for a task is told it was claimed (409), not that it is gone."""
    if user is None or not _authenticated(user) or user.is_staff:
        return tasks_visible_to(user)
    return Task.objects.filter(visibility_filter(user) | Q(queue__in=member_queue_ids(user)))


def task_get(*, user: User, task_id: Any, related: bool = True) -> Task:
    """One visible task, or ``NotFound`` (out of scope looks the same as missing)."""
    queryset = tasks_visible_to(user)
    if related:
        queryset = queryset.select_related(
            *LIST_RELATED,
            "created_by",
            "completed_by",
            "content_type",
            "parent",
            "origin_action_run",
        )
    try:
        return queryset.get(pk=int(task_id))
    except (Task.DoesNotExist, ValueError, TypeError):
        raise NotFound(f"Task {task_id} not found.") from None


# --- references to users and queues ------------------------------------------------------

REFERENCE_RULE = (
    "Users are referred to by id, username or email, queues by id or name. A reference is "
    "compared with every key at once (a whole number with the id and the name, any text "
    "with the name and, for users, the email, ignoring case); it must name exactly one. "
    "Otherwise: 400 VALIDATION_ERROR naming the parameter, with its reason in `codes` "
    "(UNKNOWN_USER, AMBIGUOUS_USER, UNKNOWN_QUEUE, AMBIGUOUS_QUEUE); the id always names one."
)


def user_lookup(value: Any, *, field: str = "assignee") -> AuthUser:
    """The one user ``value`` names (see ``REFERENCE_RULE``); ``field`` is the parameter
    named in the error."""
    text = reference_text(value)
    if text is None:
        raise UnknownUser("give a user id, username or email", field=field)
    found = users_named(text)
    if not found:
        raise UnknownUser(f"no user {text!r}", field=field, value=text)
    if len(found) > 1:
        raise AmbiguousUser(
            f"{text!r} names several users; give the id or the username", field=field, value=text
        )
    return found[0]


def queue_lookup(value: Any, *, field: str = "queue") -> Group:
    """The one queue (group) ``value`` names (see ``REFERENCE_RULE``)."""
    text = reference_text(value)
    if text is None:
        raise UnknownQueue("give a queue id or name", field=field)
    match = Q(name=text)
    number = whole_number(text)
    if number is not None:
        match |= Q(pk=number)
    found = list(Group.objects.filter(match).order_by("pk")[:2])
    if not found:
        raise UnknownQueue(f"no queue {text!r}", field=field, value=text)
    if len(found) > 1:
        raise AmbiguousQueue(
            f"{text!r} is the name of one queue and the id of another; give the name",
            field=field,
            value=text,
        )
    return found[0]


def queues_of(user: User) -> QuerySet[Group]:
    """The queues ``user`` works in or manages (staff: every queue), with counts of their
    open, claimable (open and unassigned) and overdue tasks, and their members."""
    if not _authenticated(user):
        return Group.objects.none()
    queryset = Group.objects.all()
    if not user.is_staff:
        queryset = queryset.filter(
            Q(pk__in=member_queue_ids(user)) | Q(pk__in=managed_queue_ids(user))
        )

    def count(rows: QuerySet[Any]) -> Coalesce:
        counted = rows.order_by().values("queue_id").annotate(n=Count("pk")).values("n")
        return Coalesce(Subquery(counted, output_field=IntegerField()), Value(0))

    open_tasks = Task.objects.filter(queue_id=OuterRef("pk"), is_open=True)
    members = (
        get_user_model()
        .objects.filter(groups=OuterRef("pk"))
        .order_by()
        .values("groups")
        .annotate(n=Count("pk"))
        .values("n")
    )
    return (
        queryset.annotate(
            open_count=count(open_tasks),
            claimable_count=count(open_tasks.filter(assignee__isnull=True)),
            overdue_count=count(open_tasks.filter(due_at__lt=timezone.now())),
            member_count=Coalesce(Subquery(members, output_field=IntegerField()), Value(0)),
        )
        .select_related("queue_settings")
        .order_by("name")
    )


# --- roles and allowed actions ----------------------------------------------------------


def task_roles(task: Task, user: User) -> set[str]:
    """What ``user`` is to ``task``: assignee, queue_member, manager, creator, staff."""
    if user is None:
        return {"system"}
    if not _authenticated(user):
        return set()
    roles = {"anyone"}
    if task.assignee_id == user.pk:
        roles.add("assignee")
    if task.created_by_id == user.pk:
        roles.add("creator")
    if user.is_staff:
        roles.add("staff")
    if task.queue_id:
        if Group.objects.filter(pk=task.queue_id, user=user).exists():
            roles.add("queue_member")
        if Queue.objects.filter(group_id=task.queue_id, managers=user).exists():
            roles.add("manager")
    return roles


def may_fire(transition: TransitionSpec, roles: set[str]) -> bool:
    return "system" in roles or bool(roles & set(transition.allowed))


def task_context(task: Task) -> dict[str, Any]:
    """The task as the JSON snapshot events, guards and templates read."""
    from automation.events import actor_context
    from automation.registry import json_value

    related = None
    if task.content_type_id:
        related = {"entity_type": related_entity_type(task), "entity_id": task.object_id}
    data = {
        "id": task.pk,
        "title": task.title,
        "description": task.description,
        "task_type": task.task_type,
        "priority": priority_name(task.priority),
        "state": task.state,
        "is_open": task.is_open,
        "outcome": task.outcome,
        "lifecycle": task.lifecycle.slug,
        "assignee_id": task.assignee_id,
        "assignee": actor_context(task.assignee) if task.assignee_id else None,
        "queue_id": task.queue_id,
        "queue": {"id": task.queue_id, "name": task.queue.name} if task.queue else None,
        "created_by": actor_context(task.created_by) if task.created_by_id else None,
        "completed_by": actor_context(task.completed_by) if task.completed_by_id else None,
        "due_at": json_value(task.due_at),
        "sla_due_at": json_value(task.sla_due_at),
        "created_at": json_value(task.created_at),
        "closed_at": json_value(task.closed_at),
        "result": task.result,
        "related": related,
        "parent_id": task.parent_id,
        "origin_run_id": task.origin_run_id,
    }
    return {**data, "task": data, "entity_type": "task"}


def guard_context(task: Task, user: User) -> dict[str, Any]:
    from automation.events import actor_context

    return {"task": task_context(task)["task"], "actor": actor_context(user)}


def task_available_transitions(
    task: Task, user: User, spec: LifecycleSpec | None = None, roles: set[str] | None = None
) -> list[TransitionSpec]:
    """The transitions ``user`` may fire now: from the current state, into an enabled state,
    allowed for the user's roles, with a guard that holds."""
    spec = spec or lifecycle_spec(task.lifecycle)
    roles = task_roles(task, user) if roles is None else roles
    available = []
    context = None
    for transition in spec.leaving(task.state):
        if not may_fire(transition, roles):
            continue
        if transition.guard is not None:
            context = context or guard_context(task, user)
            if not transition.guard(context):
                continue
        available.append(transition)
    return available


def transition_as_dict(spec: LifecycleSpec, transition: TransitionSpec) -> dict[str, Any]:
    return {
        "action": transition.action,
        "label": transition.label,
        "description": transition.description,
        "to_state": transition.to_state,
        "required_input": list(transition.required_input),
        "completes": spec.is_completing(transition),
        "cancels": spec.states[transition.to_state].is_cancellation,
    }


def related_entity_type(task: Task) -> str:
    """The registered name of the related object's model (or its model label)."""
    from automation.registry import registration_for_model

    if task.content_type is None:
        return ""
    model = task.content_type.model_class()
    registration = registration_for_model(model) if model is not None else None
    if registration is not None:
        return registration.name
    return task.content_type.model


def task_history(task: Task) -> QuerySet[TaskHistory]:
    return task.history.select_related("actor").order_by("created_at", "id")


# --- lists ------------------------------------------------------------------------------


def task_order(queryset: QuerySet[Task], sort: str | None) -> QuerySet[Task]:
    """Sort by priority (default: most urgent first, then soonest due), by due time or by
    creation; ``id`` breaks ties, so the order is total (the keyset pages rely on it)."""
    from tasks_inbox.keyset import sort_ordering

    return queryset.order_by(*sort_ordering(sort))


SORTS = ("priority", "-priority", "due", "-due", "created", "-created")


def task_inbox(*, user: User, scope: str = "visible") -> QuerySet[Task]:
    """The lists of the inbox pages (filters and sorting are applied by the caller).

    - ``mine``: open tasks assigned to the user;
    - ``queues``: open, unassigned tasks of the user's queues (claimable);
    - ``team``: tasks of the queues the user manages (all queues for staff);
    - ``visible``: everything the user may see.
    """
    queryset = tasks_visible_to(user).select_related(*LIST_RELATED)
    if not _authenticated(user):
        return queryset.none()
    if scope == "mine":
        return queryset.filter(assignee=user)
    if scope == "queues":
        return queryset.filter(assignee__isnull=True, queue__in=member_queue_ids(user))
    if scope == "team":
        if user.is_staff:
            return queryset.filter(queue__isnull=False)
        return queryset.filter(queue__in=managed_queue_ids(user))
    return queryset


def queues_managed_by(user: User) -> QuerySet[Group]:
    if not _authenticated(user):
        return Group.objects.none()
    if user.is_staff:
        return Group.objects.filter(tasks__isnull=False).distinct().order_by("name")
    return Group.objects.filter(queue_settings__managers=user).order_by("name")


def user_queues(user: User) -> QuerySet[Group]:
    if not _authenticated(user):
        return Group.objects.none()
    return Group.objects.filter(user=user).order_by("name")


def team_workload(*, user: User) -> list[dict[str, Any]]:
    """Open tasks per assignee across the queues ``user`` manages."""
    tasks = task_inbox(user=user, scope="team").filter(is_open=True)
    rows = (
        tasks.order_by()
        .values("assignee_id", "assignee__username")
        .annotate(open=Count("id"), overdue=Count("id", filter=Q(due_at__lt=timezone.now())))
        .order_by("-open", "assignee__username")
    )
    return list(rows[:200])


def task_stats(*, user: User) -> dict[str, Any]:
    """Counts over the tasks ``user`` sees: open, overdue, mine, claimable, per state and
    per priority (open ones)."""
    visible = tasks_visible_to(user).order_by()
    now = timezone.now()
    totals: dict[str, Any] = {"total": 0, "open": 0, "overdue": 0, "mine": 0, "claimable": 0}
    if _authenticated(user):
        totals = visible.aggregate(
            total=Count("id"),
            open=Count("id", filter=Q(is_open=True)),
            overdue=Count("id", filter=Q(is_open=True, due_at__lt=now)),
            mine=Count("id", filter=Q(is_open=True, assignee=user)),
            claimable=Count(
                "id",
                filter=Q(is_open=True, assignee__isnull=True, queue__in=member_queue_ids(user)),
            ),
        )
    by_state = dict(visible.values_list("state").annotate(n=Count("id")).order_by("state"))
    by_priority = {
        priority_name(value): n
        for value, n in visible.filter(is_open=True)
        .values_list("priority")
        .annotate(n=Count("id"))
        .order_by("-priority")
    }
    return {**totals, "by_state": by_state, "by_priority": by_priority}


# --- notifications ----------------------------------------------------------------------


def notification_unread_count(*, user: AuthUser) -> int:
    return Notification.objects.filter(recipient=user, read_at__isnull=True).count()


def notifications_for(*, user: AuthUser, unread_only: bool = False) -> QuerySet[Notification]:
    queryset = Notification.objects.filter(recipient=user)
    if unread_only:
        queryset = queryset.filter(read_at__isnull=True)
    return queryset.order_by("-created_at", "-id")


# --- SLA compliance and operations figures ----------------------------------------------


SLA_PERCENTILE_SAMPLE = 20000


def _sla_p95(judged: QuerySet[Task]) -> dict[int, float | None]:
    """p95 of the clock time of judged tasks, per config."""
    rows = grouped_percentiles(
        judged,
        group="sla_config_id",
        field="sla_elapsed_seconds",
        fractions=(0.95,),
        sample=SLA_PERCENTILE_SAMPLE,
        recent_first="-sla_stopped_at",
    )
    return {config_id: p95 for config_id, (p95,) in rows.items()}


def _sla_scope(user: User) -> QuerySet[Task]:
    return Task.objects.all() if user is None else tasks_visible_to(user)


def sla_compliance_report(
    *, since: datetime, until: datetime, user: User = None, config_id: int | None = None
) -> list[dict[str, Any]]:
    """Per SLA config, over the tasks whose clock stopped in ``[since, until)`` (among the
    tasks ``user`` may see; ``None``: all):

    - ``total``: completed tasks judged against the target (cancelled ones are not);
    - ``met`` and ``within_target_pct``: how many finished within the target;
    - ``breaches``: breaches that fired in the period (open tasks included);
    - ``mean_seconds``, ``p95_seconds``: clock time to complete (without paused time, in
      business time for configs with working hours).

    Every active config is listed (with zeros when nothing happened), and inactive ones that
    have figures in the period.
    """
    from tasks_inbox.models import SLAConfig, SLAEventKind, SLAEventRecord

    scope = _sla_scope(user)
    judged = scope.filter(
        sla_met__isnull=False,
        sla_config__isnull=False,
        sla_stopped_at__gte=since,
        sla_stopped_at__lt=until,
    )
    breaches = SLAEventRecord.objects.filter(
        kind=SLAEventKind.BREACH, fired_at__gte=since, fired_at__lt=until, config__isnull=False
    )
    if user is not None:
        breaches = breaches.filter(task__in=scope)
    configs = SLAConfig.objects.all()
    if config_id is not None:
        judged = judged.filter(sla_config_id=config_id)
        breaches = breaches.filter(config_id=config_id)
        configs = configs.filter(pk=config_id)
    figures = {
        row["sla_config_id"]: row
        for row in judged.values("sla_config_id")
        .annotate(
            total=Count("id"),
            met=Count("id", filter=Q(sla_met=True)),
            mean=Avg("sla_elapsed_seconds"),
        )
        .order_by()
    }
    breach_counts = dict(breaches.values_list("config_id").annotate(n=Count("id")).order_by())
    p95 = _sla_p95(judged) if figures else {}
    rows = []
    for config in configs.select_related("queue").order_by("name"):
        row = figures.get(config.pk, {})
        total, met = row.get("total", 0), row.get("met", 0)
        if not config.is_active and not total and not breach_counts.get(config.pk):
            continue
        rows.append(
            {
                "config_id": config.pk,
                "name": config.name,
                "queue": config.queue.name if config.queue is not None else None,
                "task_type": config.task_type,
                "target_seconds": int(config.target.total_seconds()),
                "total": total,
                "met": met,
                "within_target_pct": round(100 * met / total, 1) if total else None,
                "breaches": breach_counts.get(config.pk, 0),
                "mean_seconds": round(row["mean"], 1) if row.get("mean") is not None else None,
                "p95_seconds": None
                if (p95_value := p95.get(config.pk)) is None
                else round(p95_value, 1),
            }
        )
    return rows


def sla_compliance_daily(
    *, since: datetime, until: datetime, user: User = None, config_id: int | None = None
) -> list[dict[str, Any]]:
    """Per day (project time zone), over all configs or one: judged tasks, how many met
    the target, and the share."""
    from django.db.models.functions import TruncDate

    judged = _sla_scope(user).filter(
        sla_met__isnull=False,
        sla_config__isnull=False,
        sla_stopped_at__gte=since,
        sla_stopped_at__lt=until,
    )
    if config_id is not None:
        judged = judged.filter(sla_config_id=config_id)
    rows = (
        judged.annotate(day=TruncDate("sla_stopped_at"))
        .values("day")
        .annotate(total=Count("id"), met=Count("id", filter=Q(sla_met=True)))
        .order_by("day")
    )
    return [
        {
            "day": row["day"],
            "total": row["total"],
            "met": row["met"],
            "within_target_pct": round(100 * row["met"] / row["total"], 1),
        }
        for row in rows
    ]


def sla_compliance(hours: int = 24) -> list[dict[str, Any]]:
    """The monitoring page's SLA table: per config over the last ``hours``."""
    now = timezone.now()
    return [
        {
            key: row[key]
            for key in (
                "name",
                "total",
                "within_target_pct",
                "breaches",
                "mean_seconds",
                "p95_seconds",
            )
        }
        for row in sla_compliance_report(since=now - timedelta(hours=hours), until=now)
    ]


def queues_by_overdue(limit: int = 10) -> list[dict[str, Any]]:
    """Queues with the most open tasks past their SLA due time or their due date."""
    now = timezone.now()
    rows = (
        Task.objects.filter(is_open=True, queue__isnull=False)
        .filter(Q(sla_due_at__lt=now) | Q(due_at__lt=now))
        .values("queue__name")
        .annotate(overdue=Count("id"))
        .order_by("-overdue", "queue__name")[:limit]
    )
    return [{"queue": row["queue__name"], "overdue": row["overdue"]} for row in rows]


def task_metrics() -> Iterator[Any]:
    """Prometheus families: open and closed tasks by state and queue, SLA breaches by queue."""
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

    from tasks_inbox.models import SLAEventKind, SLAEventRecord

    tasks = GaugeMetricFamily(
        "flowdesk_tasks", "Tasks by state and queue.", labels=["state", "queue"]
    )
    for row in (
        Task.objects.values("state", "queue__name")
        .annotate(n=Count("id"))
        .order_by("state", "queue__name")
    ):
        tasks.add_metric([row["state"], row["queue__name"] or ""], row["n"])
    yield tasks
    breaches = CounterMetricFamily(
        "flowdesk_sla_breaches", "SLA breaches, by the queue the task is in.", labels=["queue"]
    )
    for row in (
        SLAEventRecord.objects.filter(kind=SLAEventKind.BREACH)
        .values("task__queue__name")
        .annotate(n=Count("id"))
        .order_by("task__queue__name")
    ):
        breaches.add_metric([row["task__queue__name"] or ""], row["n"])
    yield breaches
