"""Admin: tasks (read-mostly, history inline), queues (managers, routing), lifecycles.

A lifecycle is edited as its JSON document, validated whole by the same service as the API
(every error names its JSON path); its states and transitions are shown read-only, with its
figures (tasks per state, actions fired, median time in each state). The changelist imports
a JSON file of lifecycles (this project's documents or the plain state-machine shape), all
or nothing, as ``manage.py import_lifecycles`` does.
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import path as url_path

from config.admin_inlines import ReadOnlyInline
from config.errors import ValidationFailed
from config.templatetags.flowdesk import duration_text, when
from tasks_inbox.lifecycle_import import lifecycles_import
from tasks_inbox.lifecycle_stats import lifecycle_stats, stats_window
from tasks_inbox.lifecycles import (
    LifecycleInvalid,
    lifecycle_delete,
    lifecycle_document,
    lifecycle_issues,
    lifecycle_save,
)
from tasks_inbox.models import (
    SLA_SPECIFICITY_RULE,
    Notification,
    Queue,
    SLAConfig,
    SLAEventRecord,
    Task,
    TaskHistory,
)
from tasks_inbox.sla.configs import sla_config_delete, sla_config_save
from tasks_inbox.sla.rules import SPECIFICITY_NAMES, sla_config_clean, sla_specificity
from workflows.models import Lifecycle, LifecycleState, LifecycleTransition


@admin.register(Notification)
class NotificationAdmin(admin.ModelAdmin):
    list_display = ("recipient", "message", "created_at", "read_at")
    list_filter = ("read_at",)
    raw_id_fields = ("recipient", "action_run")


@admin.register(Queue)
class QueueAdmin(admin.ModelAdmin):
    list_display = ("group", "routing")
    list_filter = ("routing",)
    filter_horizontal = ("managers",)
    search_fields = ("group__name",)


class TaskHistoryInline(ReadOnlyInline):
    model = TaskHistory
    fields = ("created_at", "action", "from_state", "to_state", "actor", "input")


@admin.register(Task)
class TaskAdmin(admin.ModelAdmin):
    """Tasks change state only through their lifecycle (the inbox, the API, workflows), so
    state, history and origin are read-only here."""

    list_display = ("title", "state", "priority", "queue", "assignee", "due", "created")
    list_filter = ("is_open", "state", "priority", "task_type", "queue")
    search_fields = ("title", "description")
    raw_id_fields = ("assignee", "parent", "created_by", "completed_by")
    readonly_fields = (
        "lifecycle",
        "state",
        "is_open",
        "outcome",
        "result",
        "origin_run",
        "origin_action_run",
        "wait",
        "content_type",
        "object_id",
        "created_at",
        "updated_at",
        "closed_at",
        "completed_by",
        "assigned_at",
    )
    list_select_related = ("queue", "assignee")
    inlines = [TaskHistoryInline]

    @admin.display(description="due", ordering="due_at")
    def due(self, obj: Task) -> str:
        return when(obj.due_at)

    @admin.display(description="created", ordering="created_at")
    def created(self, obj: Task) -> str:
        return when(obj.created_at)


class IndentedJSONEncoder(json.JSONEncoder):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs["indent"] = 2
        super().__init__(*args, **kwargs)


class LifecycleForm(forms.ModelForm):
    document = forms.JSONField(
        encoder=IndentedJSONEncoder,
        help_text='States and transitions: {"states": [...], "transitions": [...]}. '
        "Exactly one initial state; nothing leaves a final state. States and "
        'transitions take an optional "description"; a transition with '
        '"is_enabled": false is not offered and is refused (ACTION_DISABLED). A state '
        'with "pauses_sla": true stops the SLA clock; a claim fires the transition with '
        '"on_claim": true, completing the one with "on_complete": true.',
        widget=forms.Textarea(attrs={"rows": 30, "cols": 100, "class": "vLargeTextField"}),
    )

    class Meta:
        model = Lifecycle
        fields = ["slug", "name", "description"]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.instance.pk:
            document = lifecycle_document(self.instance)
            self.initial["document"] = {
                "states": document["states"],
                "transitions": document["transitions"],
            }
        else:
            self.initial["document"] = {"states": [], "transitions": []}

    def clean(self) -> dict[str, Any]:
        super().clean()
        data = self.cleaned_data
        document = self._full_document(data)
        if document is not None:
            for issue in lifecycle_issues(document):
                self.add_error(None, str(issue))
        return data

    def _full_document(self, data: dict[str, Any]) -> dict[str, Any] | None:
        body = data.get("document")
        if not isinstance(body, dict):
            if "document" in data:
                self.add_error("document", "must be a JSON object")
            return None
        return {
            "slug": data.get("slug"),
            "name": data.get("name"),
            "description": data.get("description") or "",
            "states": body.get("states"),
            "transitions": body.get("transitions"),
        }

    def save_document(self) -> Lifecycle:
        document = self._full_document(self.cleaned_data)
        assert document is not None
        instance = self.instance if self.instance.pk else None
        return lifecycle_save(document=document, lifecycle=instance)


class StateInline(ReadOnlyInline):
    model = LifecycleState
    fields = (
        "key",
        "label",
        "is_initial",
        "is_final",
        "is_enabled",
        "is_cancellation",
        "pauses_sla",
        "description",
    )


class TransitionInline(ReadOnlyInline):
    model = LifecycleTransition
    fields = (
        "action",
        "label",
        "is_enabled",
        "from_states",
        "to_state",
        "guard",
        "allowed",
        "required_input",
        "unassign",
        "on_claim",
        "on_complete",
        "description",
    )


MAX_IMPORT_BYTES = 2 * 1024 * 1024


class LifecycleImportForm(forms.Form):
    """A JSON file (or pasted JSON) of one lifecycle or a list of them."""

    file = forms.FileField(required=False, help_text="A .json file.")
    text = forms.CharField(
        required=False, label="or JSON", widget=forms.Textarea(attrs={"rows": 8, "cols": 80})
    )

    def clean(self) -> dict[str, Any]:
        super().clean()
        data = self.cleaned_data
        upload, text = data.get("file"), (data.get("text") or "").strip()
        if upload is not None and text:
            raise forms.ValidationError("Give a file or JSON text, not both.")
        if upload is None and not text:
            raise forms.ValidationError("Give a JSON file or paste the JSON.")
        if upload is not None:
            if upload.size > MAX_IMPORT_BYTES:
                raise forms.ValidationError(
                    f"The file is larger than {MAX_IMPORT_BYTES // (1024 * 1024)} MB."
                )
            raw = upload.read()
        else:
            raw = text.encode()
        try:
            data["document"] = json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise forms.ValidationError(f"Not JSON: {exc}") from None
        return data


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    return str(timedelta(seconds=round(seconds)))


@admin.register(Lifecycle)
class LifecycleAdmin(admin.ModelAdmin):
    form = LifecycleForm
    list_display = ("name", "slug", "updated_at")
    search_fields = ("name", "slug")
    inlines = [StateInline, TransitionInline]
    stats_days = (7, 30, 90)

    def get_urls(self) -> list:
        extra = [
            url_path(
                "import/",
                self.admin_site.admin_view(self.import_view),
                name="workflows_lifecycle_import",
            )
        ]
        return extra + super().get_urls()

    def import_view(self, request: HttpRequest) -> HttpResponse:
        """Import lifecycles from JSON; a problem anywhere and nothing is saved."""
        if not (self.has_add_permission(request) and self.has_change_permission(request)):
            raise PermissionDenied
        form = LifecycleImportForm(request.POST or None, request.FILES or None)
        problems: list[str] = []
        if request.method == "POST" and form.is_valid():
            try:
                imported = lifecycles_import(data=form.cleaned_data["document"])
            except LifecycleInvalid as exc:
                problems = [
                    f"{where}: {message}" if where else message
                    for where, texts in exc.fields.items()
                    for message in texts
                ]
            else:
                for item in imported:
                    verb = "created" if item.created else "replaced"
                    self.message_user(request, f"Lifecycle '{item.lifecycle.slug}' {verb}.")
                return redirect("admin:workflows_lifecycle_changelist")
        context = {
            **self.admin_site.each_context(request),
            "title": "Import lifecycles",
            "form": form,
            "problems": problems,
            "opts": self.model._meta,
        }
        return TemplateResponse(request, "admin/workflows/lifecycle/import.html", context)

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        lifecycle = self.get_object(request, object_id)
        context = dict(extra_context or {})
        if lifecycle is not None and request.method == "GET":
            context.update(self._stats_context(request, lifecycle))
        return super().change_view(request, object_id, form_url, extra_context=context)

    def _stats_context(self, request: HttpRequest, lifecycle: Lifecycle) -> dict[str, Any]:
        days = request.GET.get("days") or "30"
        try:
            since, until = stats_window({"days": days})
        except ValidationFailed as exc:
            messages.error(request, f"{exc.message}; showing 30 days.")
            days = "30"
            since, until = stats_window({"days": days})
        stats = lifecycle_stats(lifecycle=lifecycle, since=since, until=until)
        for state in stats["states"]:
            state["median"] = _duration(state["median_seconds"])
        return {
            "lifecycle_stats": stats,
            "stats_days": int(days),
            "stats_day_choices": self.stats_days,
        }

    def save_model(
        self, request: HttpRequest, obj: Lifecycle, form: LifecycleForm, change: bool
    ) -> None:
        saved = form.save_document()
        obj.pk = saved.pk
        obj.updated_at = saved.updated_at

    def save_related(self, request: HttpRequest, form: Any, formsets: Any, change: bool) -> None:
        """The document service wrote the states and transitions; the inlines are read-only
        and save nothing (the change message reads what they saved)."""
        for formset in formsets:
            formset.new_objects, formset.changed_objects, formset.deleted_objects = [], [], []

    def has_delete_permission(self, request: HttpRequest, obj: Lifecycle | None = None) -> bool:
        """A lifecycle that tasks use cannot be deleted."""
        if obj is not None and obj.tasks.exists():
            return False
        return super().has_delete_permission(request, obj)

    def delete_model(self, request: HttpRequest, obj: Lifecycle) -> None:
        lifecycle_delete(lifecycle=obj)


# --- SLAs -------------------------------------------------------------------------------


class SLAConfigForm(forms.ModelForm):
    """Validated by the same rules as the API (``tasks_inbox.sla.rules``); a problem inside
    the ladder or the working hours names its JSON path."""

    escalation_ladder = forms.JSONField(
        required=False,
        encoder=IndentedJSONEncoder,
        help_text=SLAConfig._meta.get_field("escalation_ladder").help_text,
        widget=forms.Textarea(attrs={"rows": 12, "cols": 100, "class": "vLargeTextField"}),
    )
    working_hours = forms.JSONField(
        required=False,
        encoder=IndentedJSONEncoder,
        help_text=SLAConfig._meta.get_field("working_hours").help_text,
        widget=forms.Textarea(attrs={"rows": 6, "cols": 100, "class": "vLargeTextField"}),
    )

    class Meta:
        model = SLAConfig
        fields = [
            "name",
            "description",
            "is_active",
            "queue",
            "task_type",
            "priority",
            "target",
            "warning_after",
            "escalation_ladder",
            "start_state",
            "pause_while_blocked",
            "working_hours",
        ]

    def document(self) -> dict[str, Any]:
        data = self.cleaned_data
        return {
            "name": data.get("name"),
            "description": data.get("description") or "",
            "is_active": bool(data.get("is_active")),
            "queue": data.get("queue"),
            "task_type": data.get("task_type") or "",
            "priority": data.get("priority"),
            "target": data.get("target"),
            "warning_after": data.get("warning_after"),
            "escalation_ladder": data.get("escalation_ladder") or [],
            "start_state": data.get("start_state") or "",
            "pause_while_blocked": bool(data.get("pause_while_blocked")),
            "working_hours": data.get("working_hours") or None,
        }

    def clean(self) -> dict[str, Any]:
        super().clean()
        data = self.cleaned_data
        if self.errors:
            return data
        _, issues = sla_config_clean(self.document(), instance=self.instance)
        for issue in issues:
            path, message = issue.path, issue.message
            field = path.split(".")[0].split("[")[0]
            if field in self.fields and field == path:
                self.add_error(field, message)
            elif field in self.fields:
                self.add_error(field, f"{path}: {message}")
            else:
                self.add_error(None, f"{path}: {message}" if path else message)
        return data


@admin.register(SLAConfig)
class SLAConfigAdmin(admin.ModelAdmin):
    form = SLAConfigForm
    list_display = (
        "name",
        "is_active",
        "queue",
        "task_type",
        "priority",
        "target_text",
        "warning_text",
        "specificity",
    )
    list_filter = ("is_active", "queue", "priority")
    search_fields = ("name", "task_type", "description")
    list_select_related = ("queue",)
    readonly_fields = ("created_at", "updated_at")
    fieldsets = (
        (None, {"fields": ("name", "description", "is_active")}),
        (
            "Which tasks",
            {"fields": ("queue", "task_type", "priority"), "description": SLA_SPECIFICITY_RULE},
        ),
        (
            "Clock",
            {
                "fields": (
                    "target",
                    "warning_after",
                    "start_state",
                    "pause_while_blocked",
                    "working_hours",
                ),
                "description": "Durations such as 1:30:00 (or seconds). Thresholds are in "
                "clock time: warning < target <= each escalation level. "
                "Saving recomputes the open tasks of this SLA from their "
                "start with the new durations; what has fired stays fired.",
            },
        ),
        ("Escalation", {"fields": ("escalation_ladder",)}),
        ("History", {"fields": ("created_at", "updated_at")}),
    )

    @admin.display(description="target", ordering="target")
    def target_text(self, obj: SLAConfig) -> str:
        return duration_text(obj.target)

    @admin.display(description="warning after", ordering="warning_after")
    def warning_text(self, obj: SLAConfig) -> str:
        return duration_text(obj.warning_after)

    @admin.display(description="specificity")
    def specificity(self, obj: SLAConfig) -> str:
        return SPECIFICITY_NAMES[sla_specificity(obj)]

    def save_model(
        self, request: HttpRequest, obj: SLAConfig, form: SLAConfigForm, change: bool
    ) -> None:
        saved = sla_config_save(document=form.document(), config=obj if obj.pk else None)
        obj.pk = saved.pk
        obj.created_at, obj.updated_at = saved.created_at, saved.updated_at

    def has_delete_permission(self, request: HttpRequest, obj: SLAConfig | None = None) -> bool:
        """An SLA that tasks use cannot be deleted (deactivate it)."""
        if obj is not None and obj.tasks.exists():
            return False
        return super().has_delete_permission(request, obj)

    def delete_model(self, request: HttpRequest, obj: SLAConfig) -> None:
        sla_config_delete(config=obj)


@admin.register(SLAEventRecord)
class SLAEventRecordAdmin(admin.ModelAdmin):
    """What the SLA sweep fired (read-only)."""

    list_display = ("task", "kind", "level", "config", "due_at", "fired_at")
    list_filter = ("kind", "config")
    raw_id_fields = ("task",)
    list_select_related = ("task", "config")

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        return ["task", "kind", "level", "config", "due_at", "fired_at", "details"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
