"""The runtime: the event outbox, runs, step runs and notes."""

from __future__ import annotations

from django.conf import settings
from django.contrib.contenttypes.fields import GenericForeignKey
from django.contrib.contenttypes.models import ContentType
from django.core.exceptions import ValidationError
from django.core.validators import RegexValidator
from django.db import models
from django.db.models import Q
from django.utils import timezone

from automation.statuses import RUN_ACTIVE_STATUSES as RUN_ACTIVE_STATUSES
from automation.statuses import RUN_IN_FLIGHT_STATUSES as RUN_IN_FLIGHT_STATUSES
from automation.statuses import RUN_OPEN_STATUSES as RUN_OPEN_STATUSES
from automation.statuses import RunStatus, StepStatus  # the models' choices, importable here


class EventSource(models.TextChoices):
    MODEL = "model", "Model change"
    EMIT = "emit", "Host code"
    API = "api", "API"
    TASK = "task", "Task lifecycle"
    SCHEDULE = "schedule", "Schedule"
    MANUAL = "manual", "Manual execution"
    WORKFLOW = "workflow", "Workflow step"


class Event(models.Model):
    """An append-only record of something that happened; also the transactional outbox.

    The row is written in the transaction of the change that caused it and dispatched after
    commit. ``dispatched_at`` stays empty until trigger matching has committed its runs, so
    the outbox sweep can find what a lost message left behind.
    """

    type = models.CharField(max_length=150)
    payload = models.JSONField(help_text="The context snapshot conditions and templates read.")
    source = models.CharField(max_length=16, choices=EventSource.choices)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    entity_type = models.CharField(max_length=64, blank=True)
    entity_id = models.CharField(max_length=64, blank=True)
    idempotency_key = models.CharField(max_length=200, null=True, blank=True)
    request_hash = models.CharField(max_length=64, blank=True)
    causation_depth = models.PositiveSmallIntegerField(default=0)
    caused_by_run = models.ForeignKey(
        "automation.Run",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    occurred_at = models.DateTimeField(default=timezone.now, db_index=True)
    dispatched_at = models.DateTimeField(null=True, blank=True)
    dispatch_attempts = models.PositiveSmallIntegerField(default=0)
    # After a failed dispatch: not before this time, and why it failed.
    dispatch_after = models.DateTimeField(null=True, blank=True)
    dispatch_error = models.TextField(blank=True)

    class Meta:
        ordering = ["-occurred_at", "-id"]
        indexes = [
            # The outbox: what drains claim, oldest first, and sweeps scan.
            models.Index(
                fields=["occurred_at", "id"],
                name="event_outbox",
                condition=Q(dispatched_at__isnull=True),
            ),
            models.Index(fields=["entity_type", "entity_id"], name="event_entity"),
            # One index for the type: its pattern operators serve an exact type and a
            # prefix (``type_prefix``) alike. Each index is paid on every event written.
            models.Index(fields=["type"], name="event_type", opclasses=["varchar_pattern_ops"]),
        ]
        constraints = [
            # A constraint, not ``unique=True``: no second (pattern) index for the keys.
            models.UniqueConstraint(fields=["idempotency_key"], name="event_idempotency_key_once")
        ]

    def __str__(self) -> str:
        return f"{self.type} #{self.pk}"


class Run(models.Model):
    workflow = models.ForeignKey(
        "workflows.Workflow",
        on_delete=models.PROTECT,
        related_name="runs",
    )
    version = models.ForeignKey(
        "workflows.WorkflowVersion",
        on_delete=models.PROTECT,
        related_name="runs",
    )
    event = models.ForeignKey(Event, on_delete=models.PROTECT, related_name="runs")
    trigger_index = models.IntegerField(null=True, blank=True)
    rerun_of = models.ForeignKey(
        "self",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="reruns",
    )
    status = models.CharField(
        max_length=16,
        choices=RunStatus.choices,
        default=RunStatus.PENDING,
        db_index=True,
    )
    context = models.JSONField(default=dict)
    causation_depth = models.PositiveSmallIntegerField(default=0)
    error = models.TextField(blank=True)
    error_code = models.CharField(max_length=64, blank=True)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at", "-id"]
        permissions = [
            ("view_monitoring", "Can view the monitoring page and the monitoring API"),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["workflow", "event"],
                condition=Q(rerun_of__isnull=True),
                name="run_once_per_event",
            ),
        ]
        indexes = [
            models.Index(
                fields=["updated_at"],
                name="run_open_updated",
                condition=Q(status__in=list(RUN_IN_FLIGHT_STATUSES)),
            ),
            models.Index(fields=["workflow", "status"], name="run_workflow_status"),
        ]

    def __str__(self) -> str:
        return f"Run {self.pk} of workflow '{self.workflow.name}'"

    @property
    def duration_ms(self) -> int | None:
        if self.started_at and self.finished_at:
            return int((self.finished_at - self.started_at).total_seconds() * 1000)
        return None

    @property
    def definition(self) -> dict:
        return self.version.definition


class ActionRun(models.Model):
    """One step of one run: its attempts, rendered input (secrets masked), output, error."""

    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="action_runs")
    step_key = models.CharField(max_length=64)
    type = models.CharField(max_length=64)
    position = models.PositiveIntegerField(default=0)
    status = models.CharField(
        max_length=16,
        choices=StepStatus.choices,
        default=StepStatus.PENDING,
    )
    attempts = models.PositiveSmallIntegerField(default=0)
    input = models.JSONField(null=True, blank=True)
    output = models.JSONField(null=True, blank=True)
    progress = models.JSONField(null=True, blank=True)
    error = models.TextField(blank=True)
    error_code = models.CharField(max_length=64, blank=True)
    wake_at = models.DateTimeField(
        null=True,
        blank=True,
        help_text="When a delayed or backed-off step is due.",
    )
    waiting_on = models.CharField(max_length=64, blank=True, help_text="e.g. task:42")
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        # By the column, not the relation: ordering by "run" would join Run for its ordering.
        ordering = ["run_id", "position", "id"]
        constraints = [
            models.UniqueConstraint(fields=["run", "step_key"], name="action_run_unique_step"),
        ]
        indexes = [
            models.Index(
                fields=["wake_at"],
                name="action_run_due",
                condition=Q(wake_at__isnull=False, status__in=["pending", "waiting"]),
            ),
            models.Index(
                fields=["updated_at"],
                name="action_run_running",
                condition=Q(status="running"),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.step_key} of run #{self.run_id} ({self.status})"

    @property
    def duration_ms(self) -> int | None:
        if self.started_at and self.finished_at:
            return int((self.finished_at - self.started_at).total_seconds() * 1000)
        return None


class NoteVisibility(models.TextChoices):
    INTERNAL = "internal"
    PUBLIC = "public"


class Note(models.Model):
    """A note attached to any registered object (written by ``add_note`` or by people)."""

    content_type = models.ForeignKey(ContentType, on_delete=models.CASCADE)
    object_id = models.CharField(max_length=64)
    target = GenericForeignKey("content_type", "object_id")
    note = models.TextField()
    visibility = models.CharField(
        max_length=16,
        choices=NoteVisibility.choices,
        default=NoteVisibility.INTERNAL,
    )
    author = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    action_run = models.ForeignKey(
        ActionRun,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="notes",
    )
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["content_type", "object_id"], name="note_target")]

    def __str__(self) -> str:
        return self.note[:60]


class Secret(models.Model):
    """A named secret for templates (``{{secrets.NAME}}``), encrypted at rest.

    The value is never stored in clear and never shown: set it with ``set_value`` (or
    ``automation.secrets.secret_set``) and read it with ``automation.secrets.resolve_secret``.
    """

    name = models.CharField(
        max_length=100,
        unique=True,
        validators=[
            RegexValidator(
                r"^[A-Za-z_][A-Za-z0-9_]*$",
                "Use letters, digits and '_', not starting with a digit.",
                code="invalid_secret_name",
            )
        ],
        help_text="Referenced in templates as {{secrets.NAME}}.",
    )
    value_encrypted = models.TextField(editable=False)
    description = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def set_value(self, value: str) -> None:
        from automation.secrets import encrypt

        self.value_encrypted = encrypt(value)

    def get_value(self) -> str:
        from automation.secrets import decrypt

        return decrypt(self.value_encrypted)


class EmailTemplate(models.Model):
    """A named email authored in the admin and used by ``send_email`` (``template``).

    Subject and bodies are workflow templates (``{{lead.company_name}}``) rendered over the
    run's context plus the step's ``variables``; values are escaped in the HTML body and
    line breaks are refused in the subject. Secrets cannot be used in email templates.
    """

    name = models.SlugField(max_length=100, unique=True)
    subject = models.CharField(max_length=500)
    text_body = models.TextField(help_text="Plain-text body.")
    html_body = models.TextField(blank=True, help_text="Optional HTML body; values are escaped.")
    description = models.TextField(
        blank=True,
        help_text="The variables the template expects, and what it is for.",
    )
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        from automation.templating import validate_template

        errors = {}
        for field_name in ("subject", "text_body", "html_body"):
            issues = validate_template(getattr(self, field_name))
            if issues:
                errors[field_name] = ValidationError(
                    "; ".join(issue.message for issue in issues), code="invalid_template"
                )
        if "\n" in self.subject or "\r" in self.subject:
            errors["subject"] = ValidationError(
                "The subject must be one line.", code="header_injection"
            )
        if errors:
            raise ValidationError(errors)


class Export(models.Model):
    """A file written by an ``enqueue_export`` step (one per ActionRun)."""

    action_run = models.OneToOneField(
        ActionRun,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="export",
    )
    entity_type = models.CharField(max_length=64)
    export_type = models.CharField(max_length=16, default="csv")
    filters = models.JSONField(default=dict, blank=True)
    fields = models.JSONField(default=list, blank=True)
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        help_text="Whose visibility the rows were chosen with.",
    )
    file = models.FileField(upload_to="exports/", max_length=300, blank=True)
    row_count = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.entity_type} export #{self.pk}"


class RunOperationKind(models.TextChoices):
    SUSPEND = "suspend"
    RESUME = "resume"
    CANCEL = "cancel"
    RETRY = "retry"
    RERUN = "rerun"


class RunOperation(models.Model):
    """Who did what to a run by hand, when, and the status it moved from and to: written in
    the transaction of the operation (``automation.services.operations``)."""

    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="operations")
    kind = models.CharField(max_length=16, choices=RunOperationKind.choices)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        help_text="Empty for the system (a command or a sweep).",
    )
    from_status = models.CharField(max_length=16, choices=RunStatus.choices)
    to_status = models.CharField(max_length=16, choices=RunStatus.choices)
    new_run = models.ForeignKey(
        Run,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        help_text="The run a rerun started.",
    )
    at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["at", "id"]
        indexes = [models.Index(fields=["run", "at"], name="runoperation_run_at")]

    def __str__(self) -> str:
        return f"{self.kind} of run #{self.run_id}"
