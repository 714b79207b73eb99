"""Human work: tasks, their history, queues, notifications.

A ``Task`` follows a ``workflows.Lifecycle`` (states and transitions kept as data); its
``state`` is the key of a state of that lifecycle and ``is_open`` says whether that state is
not final, so inbox and routing queries never need the lifecycle rows. Every change of state
goes through ``tasks_inbox.services`` and leaves a ``TaskHistory`` row.
"""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth.models import Group
from django.contrib.contenttypes.fields import GenericForeignKey
from django.contrib.contenttypes.models import ContentType
from django.db import models
from django.db.models import F, Q, Value
from django.db.models.functions import Coalesce
from django.urls import reverse
from django.utils import timezone

from tasks_inbox.keyset import key_expressions


class Priority(models.IntegerChoices):
    """Stored as numbers so that sorting by priority uses an index; named in the API."""

    LOW = 10, "low"
    MEDIUM = 20, "medium"
    HIGH = 30, "high"
    URGENT = 40, "urgent"


PRIORITY_BY_NAME: dict[str, int] = {label: value for value, label in Priority.choices}


PRIORITY_NAMES: dict[int, str] = dict(Priority.choices)


def priority_name(value: int) -> str:
    return PRIORITY_NAMES.get(value, str(value))


def priority_parse(value: object) -> int | None:
    """The one reading of a priority: ``"high"`` (any case) or ``30`` -> 30; None for
    anything else (say it with ``priority_unknown``)."""
    if isinstance(value, str) and value.lower() in PRIORITY_BY_NAME:
        return PRIORITY_BY_NAME[value.lower()]
    if isinstance(value, int) and not isinstance(value, bool) and value in Priority.values:
        return value
    return None


def priority_unknown(value: object) -> str:
    return f"unknown priority {value!r} (known: {', '.join(PRIORITY_BY_NAME)})"


class RoutingMode(models.TextChoices):
    LEAST_BUSY = "least_busy", "Least busy active member gets it"
    CLAIM = "claim", "Members claim it"


class Queue(models.Model):
    """Settings of a queue: a Django group whose members work its tasks.

    Managers see every task of the queue (assigned or not) and may reassign them. A queue's
    row is also the lock that serialises routing into it.
    """

    group = models.OneToOneField(Group, on_delete=models.CASCADE, related_name="queue_settings")
    managers = models.ManyToManyField(
        settings.AUTH_USER_MODEL,
        blank=True,
        related_name="managed_queues",
    )
    routing = models.CharField(
        max_length=16,
        choices=RoutingMode.choices,
        default=RoutingMode.LEAST_BUSY,
        help_text="How a task sent to the queue without an assignee finds one.",
    )
    description = models.TextField(blank=True)

    class Meta:
        ordering = ["group__name"]

    def __str__(self) -> str:
        return self.group.name


class Task(models.Model):
    title = models.CharField(max_length=300)
    description = models.TextField(blank=True)
    task_type = models.CharField(max_length=64, blank=True)
    queue = models.ForeignKey(
        Group,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="tasks",
        db_index=False,  # task_queue_open leads with it
    )
    assignee = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="assigned_tasks",
        db_index=False,  # task_assignee_open leads with it
    )
    assigned_at = models.DateTimeField(null=True, blank=True)
    priority = models.PositiveSmallIntegerField(choices=Priority.choices, default=Priority.MEDIUM)
    due_at = models.DateTimeField(null=True, blank=True)
    lifecycle = models.ForeignKey(
        "workflows.Lifecycle",
        on_delete=models.PROTECT,
        related_name="tasks",
    )
    state = models.CharField(max_length=64)
    is_open = models.BooleanField(default=True, help_text="The state is not a final one.")
    outcome = models.CharField(max_length=64, blank=True)
    form = models.JSONField(default=dict, blank=True, help_text='{"fields": [...]}')
    result = models.JSONField(null=True, blank=True, help_text="The submitted form data.")
    parent = models.ForeignKey(
        "self",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="children",
        help_text="The plan this task belongs to.",
    )
    origin_run = models.ForeignKey(
        "automation.Run",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="tasks",
    )
    origin_action_run = models.OneToOneField(
        "automation.ActionRun",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="task",
        help_text="The create_task step that made it (at most one task).",
    )
    wait = models.BooleanField(
        default=False,
        help_text="The origin run waits for this task to end.",
    )
    content_type = models.ForeignKey(
        ContentType,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        db_index=False,  # task_related leads with it
    )
    object_id = models.CharField(max_length=64, blank=True)
    related = GenericForeignKey("content_type", "object_id")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    completed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)
    closed_at = models.DateTimeField(null=True, blank=True)
    sla_due_at = models.DateTimeField(null=True, blank=True)
    # The SLA clock (tasks_inbox.sla): set by the services, never edited by hand.
    sla_config = models.ForeignKey(
        "tasks_inbox.SLAConfig",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="tasks",
        editable=False,
        help_text="The SLA chosen when the task was created (the most specific match).",
    )
    sla_started_at = models.DateTimeField(null=True, blank=True, editable=False)
    sla_resumed_at = models.DateTimeField(
        null=True,
        blank=True,
        editable=False,
        help_text="Start of the clock's current running stretch; empty while it is paused, "
        "stopped or not started.",
    )
    sla_paused_at = models.DateTimeField(null=True, blank=True, editable=False)
    sla_elapsed_seconds = models.PositiveIntegerField(
        default=0,
        editable=False,
        help_text="Clock seconds counted before the current stretch (the total once stopped).",
    )
    sla_warning_at = models.DateTimeField(null=True, blank=True, editable=False)
    sla_next_check_at = models.DateTimeField(
        null=True,
        blank=True,
        editable=False,
        help_text="When the SLA sweep looks at the task next: the earliest threshold not yet "
        "fired; empty while nothing is pending.",
    )
    sla_warned_at = models.DateTimeField(null=True, blank=True, editable=False)
    sla_breached_at = models.DateTimeField(null=True, blank=True, editable=False)
    sla_escalation_level = models.PositiveSmallIntegerField(default=0, editable=False)
    sla_stopped_at = models.DateTimeField(null=True, blank=True, editable=False)
    sla_met = models.BooleanField(
        null=True,
        blank=True,
        editable=False,
        help_text="Completed within the target (empty: open, cancelled or no SLA).",
    )

    class Meta:
        ordering = ["-priority", "due_at", "id"]
        # Every index is paid for on each write that moves an indexed column (the SLA
        # sweep moves ``sla_next_check_at`` on every task it checks): a foreign key that
        # leads a composite index has no index of its own, and the text columns have plain
        # B-trees (nothing searches them by prefix).
        indexes = [
            models.Index(fields=["state"], name="task_state"),
            models.Index(fields=["task_type"], name="task_type"),
            models.Index(fields=["assignee", "is_open"], name="task_assignee_open"),
            models.Index(fields=["queue", "is_open"], name="task_queue_open"),
            models.Index(fields=["-priority", "due_at", "id"], name="task_inbox_order"),
            # The keyset pages of the lists: one index per sort holding its key (the
            # expressions the page's row comparison reads), and the open lists of an
            # assignee and of a queue's claimable tasks with the owner in front.
            models.Index(*key_expressions("priority"), name="task_key_priority"),
            models.Index(*key_expressions("-priority"), name="task_key_priority_asc"),
            models.Index(*key_expressions("due"), name="task_key_due"),
            models.Index(*key_expressions("-due"), name="task_key_due_desc"),
            models.Index(*key_expressions("created"), name="task_key_created"),
            models.Index(
                F("assignee"),
                *key_expressions("priority"),
                name="task_key_assignee_open",
                condition=Q(is_open=True),
            ),
            models.Index(
                F("queue"),
                *key_expressions("priority"),
                name="task_key_queue_claimable",
                condition=Q(is_open=True, assignee__isnull=True),
            ),
            models.Index(fields=["due_at"], name="task_open_due", condition=Q(is_open=True)),
            models.Index(fields=["content_type", "object_id"], name="task_related"),
            # The SLA sweep's due set is indexed apart, in SLACheck: not here, where every
            # move of ``sla_next_check_at`` would be a new entry in all of these indexes.
            models.Index(
                fields=["sla_config", "sla_stopped_at"],
                name="task_sla_judged",
                condition=Q(sla_met__isnull=False),
            ),
        ]

    def __str__(self) -> str:
        return self.title

    def get_absolute_url(self) -> str:
        return reverse("inbox:task", args=[self.pk])

    @property
    def priority_name(self) -> str:
        return priority_name(self.priority)

    @property
    def is_overdue(self) -> bool:
        return bool(self.is_open and self.due_at and self.due_at < timezone.now())

    @property
    def form_fields(self) -> list[dict]:
        fields = (self.form or {}).get("fields") if isinstance(self.form, dict) else None
        return list(fields or [])


class TaskHistory(models.Model):
    """One thing that happened to a task: a transition, a claim, a reassignment..."""

    task = models.ForeignKey(Task, on_delete=models.CASCADE, related_name="history")
    action = models.CharField(max_length=64)
    from_state = models.CharField(max_length=64, blank=True)
    to_state = models.CharField(max_length=64, blank=True)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    input = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["created_at", "id"]
        indexes = [models.Index(fields=["task", "created_at"], name="task_history_task")]
        verbose_name_plural = "task history"

    def __str__(self) -> str:
        return f"{self.action}: {self.from_state} -> {self.to_state}"


class Notification(models.Model):
    """An in-app notification shown in the inbox (with an unread badge)."""

    recipient = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        related_name="notifications",
        db_index=False,  # notification_recipient_order leads with it
    )
    message = models.CharField(max_length=1000)
    link = models.CharField(max_length=500, blank=True)
    read_at = models.DateTimeField(null=True, blank=True)
    action_run = models.ForeignKey(
        "automation.ActionRun",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(
                fields=["recipient", "created_at"],
                name="notification_unread",
                condition=Q(read_at__isnull=True),
            ),
            models.Index(
                fields=["recipient", "-created_at", "-id"], name="notification_recipient_order"
            ),
        ]

    def __str__(self) -> str:
        return self.message[:60]

    @property
    def is_read(self) -> bool:
        return self.read_at is not None


# --- SLAs -------------------------------------------------------------------------------

SLA_SPECIFICITY_RULE = (
    "When several active SLAs match a task, the most specific wins: "
    "queue + task type + priority, then queue + task type, then task type + priority, "
    "then task type, then queue + priority, then queue. An SLA must name a queue or a task "
    "type; two active SLAs may not have the same target. The SLA is chosen when the task is "
    "created and kept for its life (an escalation that raises the priority or moves the task "
    "does not switch SLAs)."
)


class SLAConfig(models.Model):
    """How long tasks of a queue (a service area) and/or a task type may take.

    Durations are counted by the task's SLA clock (``tasks_inbox.sla``): from creation or
    from entering ``start_state``, without the time spent blocked when ``pause_while_blocked``,
    and only within ``working_hours`` when those are set. Thresholds, in clock time:
    ``warning_after`` < ``target`` (the breach) <= each level of ``escalation_ladder``.
    """

    name = models.CharField(max_length=100, unique=True)
    description = models.TextField(blank=True)
    is_active = models.BooleanField(
        default=True,
        help_text="Inactive: new tasks do not get this SLA, and its open tasks' clocks keep "
        "counting but fire nothing until it is active again.",
    )
    queue = models.ForeignKey(
        Group,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="sla_configs",
        help_text="The service area (a queue) this SLA covers. " + SLA_SPECIFICITY_RULE,
    )
    task_type = models.CharField(
        max_length=64, blank=True, help_text="The task type this SLA covers (empty: any)."
    )
    priority = models.PositiveSmallIntegerField(
        choices=Priority.choices,
        null=True,
        blank=True,
        help_text="Only tasks of this priority (empty: any).",
    )
    target = models.DurationField(help_text="Clock time to finish the task (the breach).")
    warning_after = models.DurationField(
        null=True,
        blank=True,
        help_text="Clock time of the warning; less than the target.",
    )
    escalation_ladder = models.JSONField(
        default=list,
        blank=True,
        help_text='Ordered levels, each at or after the target: [{"after": "1:30:00" or '
        '"after_percent": 150, "actions": [{"type": "remind"}, {"type": '
        '"raise_priority", "to": "urgent"}, {"type": "reassign", "queue": "Intake"} '
        'or {"type": "reassign", "user": "maria"}, {"type": "notify_manager"}]}].',
    )
    start_state = models.CharField(
        max_length=64,
        blank=True,
        help_text="The clock starts when the task first enters this state (empty: when the "
        "task is created).",
    )
    pause_while_blocked = models.BooleanField(
        default=True,
        help_text="The clock stops counting while the task is blocked.",
    )
    working_hours = models.JSONField(
        null=True,
        blank=True,
        help_text='Count business time only: {"days": [0, 1, 2, 3, 4] (0 = Monday), '
        '"start": "09:00", "end": "17:00", "time_zone": "Europe/Paris"}. '
        "Empty: around the clock.",
    )
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["name"]
        verbose_name = "SLA"
        constraints = [
            models.UniqueConstraint(
                Coalesce("queue", Value(0)),
                "task_type",
                Coalesce("priority", Value(0)),
                condition=Q(is_active=True),
                name="sla_config_target_once",
                violation_error_message="Another active SLA has the same queue, task type "
                "and priority.",
            ),
        ]

    def __str__(self) -> str:
        return self.name


class SLAEventKind(models.TextChoices):
    WARNING = "warning", "Warning"
    BREACH = "breach", "Breach"
    ESCALATION = "escalation", "Escalation"


class SLACheck(models.Model):
    """The SLA sweep's due set, apart from the task rows: one row per open task whose
    ``sla_next_check_at`` is set, with that time, in the order the sweep claims them
    (``sla_check_due``: the most overdue first).

    On PostgreSQL, triggers on the task table keep it (migration ``0007``): every writer of
    a task, the ORM's or raw SQL, moves its row, none can forget it. It is a table of its
    own because the sweep moves ``sla_next_check_at`` on every task it checks: indexed on
    the task table, each move was an update that changed an indexed column, a new entry in
    each of the task's indexes; now the sweep's update of a task changes none of them and
    stays on the task's page (HOT; the task table keeps 15% of each page free for it,
    ``fillfactor`` 85). The embedded SQLite database leaves the table empty and the sweep
    reads the task table there (a small database, and SQLite drops a table's triggers when
    a migration rebuilds it)."""

    task = models.OneToOneField(
        Task,
        on_delete=models.DO_NOTHING,  # the trigger deletes the row with its task
        primary_key=True,
        db_constraint=False,
        related_name="sla_check",
    )
    next_check_at = models.DateTimeField()

    class Meta:
        verbose_name = "SLA check"
        indexes = [models.Index(fields=["next_check_at", "task"], name="sla_check_due")]

    def __str__(self) -> str:
        return f"task #{self.task_id} at {self.next_check_at:%Y-%m-%d %H:%M}"


class SLAEventRecord(models.Model):
    """A threshold of a task's SLA that fired: at most one per (task, kind, level), so the
    notification and event of a threshold go out once however many sweeps look at it."""

    task = models.ForeignKey(
        Task,
        on_delete=models.CASCADE,
        related_name="sla_events",
        db_index=False,  # sla_event_once leads with it
    )
    kind = models.CharField(max_length=16, choices=SLAEventKind.choices)
    level = models.PositiveSmallIntegerField(
        default=0,
        help_text="The escalation level (0 for the warning and the breach).",
    )
    config = models.ForeignKey(
        SLAConfig, null=True, blank=True, on_delete=models.SET_NULL, related_name="events"
    )
    due_at = models.DateTimeField(help_text="When the threshold was reached.")
    fired_at = models.DateTimeField(default=timezone.now)
    details = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["task", "fired_at", "id"]
        verbose_name = "SLA event"
        constraints = [
            models.UniqueConstraint(fields=["task", "kind", "level"], name="sla_event_once"),
        ]
        indexes = [models.Index(fields=["kind", "fired_at"], name="sla_event_kind_fired")]

    def __str__(self) -> str:
        suffix = f" {self.level}" if self.kind == SLAEventKind.ESCALATION else ""
        return f"{self.kind}{suffix} of task #{self.task_id}"
