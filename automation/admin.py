"""Runs, step runs and events in the admin: read-only, with the operations as actions."""

from __future__ import annotations

from typing import Any

from django import forms
from django.apps import apps
from django.contrib import admin, messages
from django.contrib.contenttypes.models import ContentType
from django.db import models
from django.http import HttpRequest
from django.template.loader import render_to_string
from django.utils import timezone
from django.utils.safestring import mark_safe

from automation import graphs, operations, services
from automation.models import (
    ActionRun,
    EmailTemplate,
    Event,
    Export,
    Note,
    Run,
    RunOperation,
    Secret,
)
from automation.registry import registration_for_model
from config.admin_inlines import ReadOnlyInline
from config.errors import DomainError
from config.templatetags.flowdesk import duration_text, when

HISTORY_LIMIT = 20


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class RunOperationInline(ReadOnlyInline):
    model = RunOperation
    fk_name = "run"
    verbose_name_plural = "operations (by hand)"
    fields = ("at", "kind", "actor", "from_status", "to_status", "new_run")
    ordering = ["at", "id"]


class ActionRunInline(ReadOnlyInline):
    model = ActionRun
    fields = (
        "step_key",
        "type",
        "status",
        "attempts",
        "took",
        "error_code",
        "error",
        "input",
        "output",
        "started_at",
        "finished_at",
    )
    ordering = ["position"]

    @admin.display(description="took")
    def took(self, obj: ActionRun) -> str:
        return _took(obj.started_at, obj.finished_at)


def _took(started: Any, finished: Any) -> str:
    return duration_text(finished - started) if started and finished else "-"


def automation_history(obj: models.Model, *, limit: int = HISTORY_LIMIT) -> dict[str, Any]:
    """What automation did to one object: the runs its events started, the notes and the
    tasks attached to it, newest first (``limit`` of each, with the totals)."""
    content_type = ContentType.objects.get_for_model(obj)
    registration = registration_for_model(type(obj))
    entity = registration.name if registration is not None else ""
    runs = (
        Run.objects.filter(event__entity_type=entity, event__entity_id=str(obj.pk))
        .select_related("workflow", "event")
        .order_by("-created_at", "-id")
    )
    notes = (
        Note.objects.filter(content_type=content_type, object_id=str(obj.pk))
        .select_related("author", "action_run")
        .order_by("-created_at", "-id")
    )
    task_model = apps.get_model("tasks_inbox", "Task")
    tasks = (
        task_model.objects.filter(content_type=content_type, object_id=str(obj.pk))
        .select_related("assignee", "queue")
        .order_by("-created_at", "-id")
    )
    return {
        "runs": [
            {"run": run, "took": _took(run.started_at, run.finished_at)} for run in runs[:limit]
        ],
        "run_count": runs.count(),
        "notes": list(notes[:limit]),
        "note_count": notes.count(),
        "tasks": list(tasks[:limit]),
        "task_count": tasks.count(),
        "limit": limit,
    }


class AutomationHistoryMixin:
    """Add to a host app's ModelAdmin (``class LeadAdmin(AutomationHistoryMixin,
    admin.ModelAdmin)``) to show, on the object's change page, the runs its events started
    and the notes and tasks automation attached to it (read-only, last 20 of each)."""

    history_field = "automation_history"

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        fields = tuple(super().get_readonly_fields(request, obj))  # type: ignore[misc]
        return (*fields, self.history_field) if obj is not None else fields

    def get_fieldsets(self, request: HttpRequest, obj: Any = None) -> Any:
        fieldsets = [
            (name, {**options, "fields": [f for f in options["fields"] if f != self.history_field]})
            for name, options in super().get_fieldsets(request, obj)  # type: ignore[misc]
        ]
        if obj is not None:
            fieldsets.append(
                ("What automation did", {"fields": [self.history_field], "classes": ["wide"]})
            )
        return fieldsets

    @admin.display(description="runs, notes and tasks")
    def automation_history(self, obj: models.Model) -> str:
        return render_to_string("admin/automation/history.html", automation_history(obj))


@admin.register(Run)
class RunAdmin(ReadOnlyAdmin):
    list_display = ("id", "workflow", "version", "status", "error_code", "created", "took")
    list_filter = ("status", "workflow", "error_code")
    search_fields = ("=id", "workflow__slug", "error")
    readonly_fields = (
        "graph",
        "timeline",
        "workflow",
        "version",
        "event",
        "trigger_index",
        "rerun_of",
        "status",
        "causation_depth",
        "error",
        "error_code",
        "context",
        "created_at",
        "started_at",
        "finished_at",
        "updated_at",
    )
    list_select_related = ("workflow", "version")
    inlines = [ActionRunInline, RunOperationInline]
    actions = ["suspend", "resume", "cancel", "retry"]

    @admin.display(description="took")
    def took(self, obj: Run) -> str:
        return _took(obj.started_at, obj.finished_at)

    @admin.display(description="created", ordering="created_at")
    def created(self, obj: Run) -> str:
        return when(obj.created_at)

    @admin.display(description="step graph")
    def graph(self, obj: Run) -> str:
        svg = graphs.to_svg(
            obj.version.definition.get("steps") or [], graphs.run_statuses(obj), str(obj)
        )
        return mark_safe(f'<div class="graph">{svg}</div>')  # noqa: S308  (escaped in to_svg)

    @admin.display(description="timeline")
    def timeline(self, obj: Run) -> str:
        """Progress, the on-track / delayed / blocked indicator, and each step's actual
        time against its expected one (``automation.operations``)."""
        health = operations.run_health(obj.pk)
        if health is None:
            return "-"
        context = {"run_id": obj.pk, **operations.timeline(health)}
        return render_to_string("automation/partials/run_timeline.html", context)

    def _operate(self, request: HttpRequest, queryset: Any, operation: Any, verb: str) -> None:
        done = 0
        for run in queryset:
            try:
                operation(run_id=run.pk, actor=request.user)
                done += 1
            except DomainError as exc:
                self.message_user(request, f"{run}: {exc.message}", messages.WARNING)
        self.message_user(request, f"{verb} {done} run(s).")

    @admin.action(description="Suspend the selected runs")
    def suspend(self, request: HttpRequest, queryset: Any) -> None:
        self._operate(request, queryset, services.run_suspend, "Suspended")

    @admin.action(description="Resume the selected runs")
    def resume(self, request: HttpRequest, queryset: Any) -> None:
        self._operate(request, queryset, services.run_resume, "Resumed")

    @admin.action(description="Cancel the selected runs")
    def cancel(self, request: HttpRequest, queryset: Any) -> None:
        self._operate(request, queryset, services.run_cancel, "Cancelled")

    @admin.action(description="Retry the selected failed runs from their failed step")
    def retry(self, request: HttpRequest, queryset: Any) -> None:
        self._operate(request, queryset, services.run_retry, "Retried")


class DispatchFilter(admin.SimpleListFilter):
    title = "dispatch"
    parameter_name = "dispatch"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [
            ("pending", "Not yet dispatched"),
            ("failing", "Failing (put off)"),
            ("done", "Dispatched"),
        ]

    def queryset(self, request: HttpRequest, queryset: Any) -> Any:
        if self.value() == "pending":
            return queryset.filter(dispatched_at__isnull=True)
        if self.value() == "failing":
            return queryset.filter(dispatched_at__isnull=True).exclude(dispatch_error="")
        if self.value() == "done":
            return queryset.filter(dispatched_at__isnull=False)
        return queryset


@admin.register(Event)
class EventAdmin(ReadOnlyAdmin):
    list_display = (
        "id",
        "type",
        "source",
        "entity_type",
        "entity_id",
        "causation_depth",
        "occurred_at",
        "dispatched_at",
        "dispatch_attempts",
    )
    list_filter = (DispatchFilter, "source", "type")
    search_fields = ("=id", "type", "entity_id", "idempotency_key")
    readonly_fields = (
        "type",
        "source",
        "payload",
        "actor",
        "entity_type",
        "entity_id",
        "idempotency_key",
        "causation_depth",
        "caused_by_run",
        "occurred_at",
        "dispatched_at",
        "dispatch_attempts",
        "dispatch_after",
        "dispatch_error",
    )


@admin.register(Note)
class NoteAdmin(admin.ModelAdmin):
    list_display = ("note", "content_type", "object_id", "visibility", "created_at")
    list_filter = ("visibility", "content_type")
    raw_id_fields = ("author", "action_run")


class SecretForm(forms.ModelForm):
    """The value is write-only: typed in, encrypted, never rendered back."""

    value = forms.CharField(
        widget=forms.PasswordInput(render_value=False),
        required=False,
        strip=False,
        help_text="Write-only. Leave empty to keep the current value.",
    )

    class Meta:
        model = Secret
        fields = ("name", "description")

    def clean(self) -> dict[str, Any]:
        super().clean()
        data = self.cleaned_data
        if not self.instance.pk and not data.get("value"):
            self.add_error(
                "value", forms.ValidationError("A new secret needs a value.", code="required")
            )
        return data

    def save(self, commit: bool = True) -> Secret:
        secret = super().save(commit=False)
        if self.cleaned_data.get("value"):
            secret.set_value(self.cleaned_data["value"])
        secret.updated_at = timezone.now()
        if commit:
            secret.save()
        return secret


@admin.register(Secret)
class SecretAdmin(admin.ModelAdmin):
    form = SecretForm
    list_display = ("name", "description", "updated_at")
    search_fields = ("name", "description")
    readonly_fields = ("created_at", "updated_at")
    fields = ("name", "value", "description", "created_at", "updated_at")

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> tuple[str, ...]:
        # Renaming would silently break every template that references the old name.
        return (*self.readonly_fields, "name") if obj is not None else self.readonly_fields


@admin.register(EmailTemplate)
class EmailTemplateAdmin(admin.ModelAdmin):
    list_display = ("name", "subject", "updated_at")
    search_fields = ("name", "subject", "description")
    fields = ("name", "subject", "text_body", "html_body", "description")

    def save_model(self, request: HttpRequest, obj: EmailTemplate, form: Any, change: bool) -> None:
        obj.updated_at = timezone.now()
        super().save_model(request, obj, form, change)


@admin.register(Export)
class ExportAdmin(ReadOnlyAdmin):
    list_display = (
        "id",
        "entity_type",
        "requested_by",
        "row_count",
        "file",
        "created_at",
        "finished_at",
    )
    list_filter = ("entity_type",)
    readonly_fields = (
        "action_run",
        "entity_type",
        "export_type",
        "filters",
        "fields",
        "requested_by",
        "file",
        "row_count",
        "created_at",
        "finished_at",
    )
