"""Authoring in the admin: workflows with inline triggers and steps, validated with the
same messages as the API, a simulate page, the raw JSON document, versions and publishing.

Saving the change form writes the workflow's draft; the Publish button on the change page
makes it the next version, Discard draft drops it, and the diff page shows what publishing
would change."""

from __future__ import annotations

import json
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.forms.models import BaseInlineFormSet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html
from django.utils.safestring import mark_safe

from automation import graphs
from automation.conditions import validate_condition
from automation.graph import validate_graph
from config.errors import DomainError
from config.issues import Issue, warning_issues
from config.requests import request_user
from workflows import services
from workflows.definition import validate_definition, validate_step, validate_trigger
from workflows.models import Action, Trigger, Workflow, WorkflowVersion
from workflows.selectors import DRAFT, definition_at, definition_diff, workflow_definition
from workflows.simulation import MANUAL, event_sample, simulate


def issue_text(issue: Issue) -> str:
    """An issue as the admin shows it: the JSON path, the message and the stable code."""
    return f"{issue.path}: {issue.message} [{issue.code}]"


def _add_issues(form: forms.BaseForm, issues: list[Issue], prefix: str) -> None:
    for issue in issues:
        field = issue.path.removeprefix(prefix).lstrip(".").split(".")[0].split("[")[0]
        target = field if field in form.fields else None
        if issue.is_error:
            form.add_error(target, issue_text(issue))


class DocumentRefused(Exception):
    """The saved workflow document failed validation (its issues are in the messages)."""


def _issue_messages(request: HttpRequest, exc: DomainError) -> None:
    """Every problem of a refused save or publish, with its path and code."""
    issues = getattr(exc, "issues", None)
    if issues:
        for issue in issues:
            messages.error(request, issue_text(issue))
        for warning in getattr(exc, "warnings", ()):
            messages.warning(request, issue_text(warning))
        return
    for where, problems in exc.fields.items():
        messages.error(request, f"{where}: {'; '.join(problems)}")


TRIGGER_FIELDS = ["event_type", "conditions", "priority", "is_active"]
STEP_FIELDS = [
    "key",
    "type",
    "config",
    "conditions",
    "after",
    "allow_failure",
    "retry",
    "timeout_seconds",
]


class TriggerForm(forms.ModelForm):
    class Meta:
        model = Trigger
        fields = TRIGGER_FIELDS

    def clean(self) -> dict[str, Any]:
        super().clean()
        data = self.cleaned_data
        trigger = {k: data.get(k) for k in TRIGGER_FIELDS if k in data}
        _add_issues(self, validate_trigger(trigger, "trigger"), "trigger")
        return data


class ActionForm(forms.ModelForm):
    class Meta:
        model = Action
        fields = [*STEP_FIELDS, "position"]

    def clean(self) -> dict[str, Any]:
        super().clean()
        data = self.cleaned_data
        step = {k: data.get(k) for k in STEP_FIELDS if k in data}
        step["config"] = step.get("config") or {}
        keys = {data.get("key")}
        # The structure here; what needs the domain (event contexts, step types' own checks)
        # is checked on the whole document when it is saved, with the same paths as the API.
        _add_issues(self, validate_step(step, "step", None, keys | {None}, checks=False), "step")
        if data.get("conditions"):
            _add_issues(self, validate_condition(data["conditions"], "step.conditions"), "step")
        return data


class StepFormSet(BaseInlineFormSet):
    def clean(self) -> None:
        super().clean()
        steps = [
            {"key": f.cleaned_data.get("key"), "after": f.cleaned_data.get("after")}
            for f in sorted(self.forms, key=lambda f: f.cleaned_data.get("position") or 0)
            if f.cleaned_data and not f.cleaned_data.get("DELETE")
        ]
        issues = validate_graph(steps)
        if issues:
            raise forms.ValidationError([issue_text(i) for i in issues])


class TriggerInline(admin.TabularInline):
    model = Trigger
    form = TriggerForm
    extra = 0


class ActionInline(admin.StackedInline):
    model = Action
    form = ActionForm
    formset = StepFormSet
    extra = 0
    ordering = ["position"]


class DraftFilter(admin.SimpleListFilter):
    title = "draft"
    parameter_name = "has_draft"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("yes", "Has an unpublished draft"), ("no", "No draft")]

    def queryset(self, request: HttpRequest, queryset: Any) -> Any:
        if self.value() == "yes":
            return queryset.filter(draft__isnull=False)
        if self.value() == "no":
            return queryset.filter(draft__isnull=True)
        return queryset


@admin.register(Workflow)
class WorkflowAdmin(admin.ModelAdmin):
    list_display = (
        "name",
        "slug",
        "is_active",
        "version_number",
        "draft_state",
        "updated_at",
        "tools",
    )
    list_filter = ("is_active", DraftFilter)
    change_form_template = "admin/workflows/workflow/change_form.html"
    search_fields = ("name", "slug", "description")
    prepopulated_fields = {"slug": ("name",)}
    readonly_fields = (
        "graph",
        "published_version",
        "draft_updated_at",
        "draft_updated_by",
        "created_by",
        "created_at",
        "updated_at",
    )
    exclude = ("draft",)
    inlines = [TriggerInline, ActionInline]
    actions = ["publish"]

    @admin.display(description="step graph")
    def graph(self, obj: Workflow) -> str:
        if obj.pk is None:
            return "-"
        svg = graphs.to_svg(workflow_definition(obj)["steps"], None, obj.name)
        return mark_safe(f'<div class="graph">{svg}</div>')  # noqa: S308  (escaped in to_svg)

    @admin.display(description="version")
    def version_number(self, obj: Workflow) -> str:
        return f"v{obj.published_version.number}" if obj.published_version else "-"

    @admin.display(description="draft", boolean=True)
    def draft_state(self, obj: Workflow) -> bool:
        return obj.has_draft

    @admin.display(description="")
    def tools(self, obj: Workflow) -> str:
        return format_html(
            '<a href="{}">builder</a> · <a href="{}">simulate</a> · <a href="{}">raw JSON</a>',
            reverse("workflow-builder", args=[obj.pk]),
            reverse("admin:workflows_workflow_simulate", args=[obj.pk]),
            reverse("admin:workflows_workflow_raw", args=[obj.pk]),
        )

    def get_object(
        self, request: HttpRequest, object_id: str, from_field: Any = None
    ) -> Workflow | None:
        """The workflow as its draft reads, so the change form edits the draft (the rows
        already hold it; the workflow's own fields are the published ones)."""
        obj = super().get_object(request, object_id, from_field)
        if obj is not None and obj.draft is not None:
            for name in ("slug", "name", "description", "is_active"):
                setattr(obj, name, obj.draft[name])
        return obj

    def save_model(self, request: HttpRequest, obj: Workflow, form: Any, change: bool) -> None:
        if not change:
            obj.created_by = request_user(request)
        super().save_model(request, obj, form, change)

    def save_related(self, request: HttpRequest, form: Any, formsets: Any, change: bool) -> None:
        super().save_related(request, form, formsets, change)
        try:
            workflow = services.draft_save(
                document=workflow_definition(form.instance),
                workflow=form.instance,
                user=request_user(request),
            )
        except DomainError as exc:
            messages.error(request, f"Not saved: {exc.message}")
            _issue_messages(request, exc)
            raise DocumentRefused from exc
        for warning in warning_issues(validate_definition(workflow_definition(workflow))):
            messages.warning(request, issue_text(warning))
        if workflow.has_draft:
            messages.info(
                request,
                "Saved as a draft: nothing that runs changes until it is "
                "published (the Publish button on the workflow's page).",
            )
        else:
            messages.info(request, "Saved: the workflow equals its current version.")

    def changeform_view(
        self,
        request: HttpRequest,
        object_id: str | None = None,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        try:
            return super().changeform_view(request, object_id, form_url, extra_context)
        except DocumentRefused:  # the admin's transaction is rolled back: nothing was saved
            return HttpResponseRedirect(request.get_full_path())

    def render_change_form(
        self,
        request: HttpRequest,
        context: dict[str, Any],
        add: bool = False,
        change: bool = False,
        form_url: str = "",
        obj: Any = None,
    ) -> HttpResponse:
        if obj is not None:
            context["published_number"] = (
                obj.published_version.number if obj.published_version else None
            )
        return super().render_change_form(request, context, add, change, form_url, obj)

    @admin.action(description="Publish a new version of the selected workflows")
    def publish(self, request: HttpRequest, queryset: Any) -> None:
        for workflow in queryset:
            try:
                version = services.workflow_publish(workflow=workflow, user=request_user(request))
            except DomainError as exc:
                self.message_user(request, f"{workflow}: {exc.message}", messages.ERROR)
            else:
                self.message_user(request, f"{workflow}: version {version.number} is current.")

    def get_urls(self) -> list:
        extra = [
            path(
                "<int:pk>/simulate/",
                self.admin_site.admin_view(self.simulate_view),
                name="workflows_workflow_simulate",
            ),
            path(
                "<int:pk>/raw/",
                self.admin_site.admin_view(self.raw_view),
                name="workflows_workflow_raw",
            ),
            path(
                "<int:pk>/publish/",
                self.admin_site.admin_view(self.publish_view),
                name="workflows_workflow_publish",
            ),
            path(
                "<int:pk>/discard-draft/",
                self.admin_site.admin_view(self.discard_view),
                name="workflows_workflow_discard_draft",
            ),
            path(
                "<int:pk>/diff/",
                self.admin_site.admin_view(self.diff_view),
                name="workflows_workflow_diff",
            ),
        ]
        return extra + super().get_urls()

    def _changed_workflow(self, request: HttpRequest, pk: int) -> Workflow:
        workflow = get_object_or_404(Workflow, pk=pk)
        if request.method != "POST" or not self.has_change_permission(request, workflow):
            raise PermissionDenied
        return workflow

    def publish_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        workflow = self._changed_workflow(request, pk)
        try:
            version = services.workflow_publish(workflow=workflow, user=request_user(request))
        except DomainError as exc:
            messages.error(request, f"Not published: {exc.message}")
            _issue_messages(request, exc)
        else:
            messages.success(request, f"Published: version {version.number} is current.")
        return HttpResponseRedirect(reverse("admin:workflows_workflow_change", args=[pk]))

    def discard_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        workflow = self._changed_workflow(request, pk)
        try:
            services.draft_discard(workflow=workflow)
        except DomainError as exc:
            messages.error(request, exc.message)
        else:
            messages.success(request, "Draft discarded: the workflow is its current version.")
        return HttpResponseRedirect(reverse("admin:workflows_workflow_change", args=[pk]))

    def diff_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        workflow = get_object_or_404(Workflow, pk=pk)
        if not self.has_view_permission(request, workflow):
            raise PermissionDenied
        which_from = request.GET.get("from") or None
        which_to = request.GET.get("to") or DRAFT
        before = definition_at(workflow, which_from)
        after = definition_at(workflow, which_to)
        missing = [
            label
            for label, which, document in (("from", which_from, before), ("to", which_to, after))
            if which is not None and document is None
        ]
        diff = definition_diff(before, after) if after is not None and not missing else None
        version = workflow.published_version
        context = {
            **self.admin_site.each_context(request),
            "title": f"{workflow}: changes",
            "workflow": workflow,
            "opts": self.model._meta,
            "diff": diff,
            "missing": missing,
            "from_label": f"version {which_from}"
            if which_from and which_from != DRAFT
            else (
                "the draft"
                if which_from == DRAFT
                else (f"version {version.number} (current)" if version else "nothing")
            ),
            "to_label": "the draft" if which_to == DRAFT else f"version {which_to}",
            "versions": list(
                workflow.versions.order_by("-number").values_list("number", flat=True)
            ),
        }
        return TemplateResponse(request, "admin/workflows/diff.html", context)

    def simulate_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        workflow = get_object_or_404(Workflow, pk=pk)
        if not self.has_view_permission(request, workflow):
            raise PermissionDenied
        # Runs start on the current version, so that is what is simulated unless the page
        # asks for the draft (?version=draft) or another version.
        which = request.GET.get("version") or None
        found = definition_at(workflow, which)
        definition = found or workflow_definition(workflow)
        default_type = next((t["event_type"] for t in definition["triggers"]), MANUAL)
        form = SimulateForm(
            request.POST or None, initial={"event_type": default_type, "payload": "{}"}
        )
        result = None
        if request.method == "POST" and form.is_valid():
            data = form.cleaned_data
            try:
                result = simulate(
                    definition,
                    event_type=data["event_type"] or None,
                    payload=data["payload"],
                    entity_id=data.get("entity_id") or None,
                    event_id=data.get("event_id"),
                    sample=bool(data.get("sample")),
                )
            except DomainError as exc:
                for field, errors in (exc.fields or {"__all__": [exc.message]}).items():
                    for error in errors:
                        form.add_error(field if field in form.fields else None, error)
        event_type = (form.data.get("event_type") if form.is_bound else None) or default_type
        if found is None:
            label = "the document being edited"
        elif which:
            label = "the draft" if which == DRAFT else f"version {which}"
        else:
            label = "the current version"
        context = {
            **self.admin_site.each_context(request),
            "title": f"Simulate {workflow}",
            "workflow": workflow,
            "form": form,
            "opts": self.model._meta,
            "result": json.dumps(result, indent=2, default=str) if result else None,
            "summary": result,
            "version_label": label,
            "event_type": event_type,
            "sample": json.dumps(
                (event_sample(event_type) or {}) if event_type != MANUAL else {},
                indent=2,
                default=str,
            ),
        }
        return TemplateResponse(request, "admin/workflows/simulate.html", context)

    def raw_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        workflow = get_object_or_404(Workflow, pk=pk)
        document = json.dumps(workflow_definition(workflow), indent=2)
        context = {
            **self.admin_site.each_context(request),
            "title": f"{workflow}: JSON",
            "workflow": workflow,
            "document": document,
            "opts": self.model._meta,
        }
        return TemplateResponse(request, "admin/workflows/raw.html", context)


class SimulateForm(forms.Form):
    event_type = forms.CharField(
        required=False,
        help_text="Default: the stored event's type, else the first trigger's; "
        "'manual' plans a run by hand (execute/).",
    )
    payload = forms.JSONField(required=False, help_text="The event's data, as JSON.")
    entity_id = forms.CharField(
        required=False,
        help_text="Or take the context from this stored object (the payload's keys "
        "override its fields).",
    )
    event_id = forms.IntegerField(
        required=False, min_value=1, help_text="Or take the context from this stored event."
    )
    sample = forms.BooleanField(
        required=False,
        help_text="Or use a sample of the event type (the default when nothing else is given).",
    )

    def clean_payload(self) -> dict[str, Any]:
        value = self.cleaned_data.get("payload") or {}
        if not isinstance(value, dict):
            raise forms.ValidationError("must be a JSON object")
        return value


@admin.register(WorkflowVersion)
class WorkflowVersionAdmin(admin.ModelAdmin):
    list_display = ("workflow", "number", "created_by", "created_at")
    list_filter = ("workflow",)
    readonly_fields = ("workflow", "number", "definition", "created_by", "created_at")
    actions = ["restore"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.action(description="Restore the selected version (publishes it as a new version)")
    def restore(self, request: HttpRequest, queryset: Any) -> None:
        for version in queryset:
            workflow = services.version_restore(version=version, user=request_user(request))
            self.message_user(request, f"{workflow}: restored v{version.number}.")


admin.site.site_header = "Flowdesk"
admin.site.site_title = "Flowdesk admin"
admin.site.index_title = "Workflows, runs and tasks"
# The app list is on the index page; without the sidebar, the wide lists (runs, tasks) and
# the step graphs get the whole width of the screen.
admin.site.enable_nav_sidebar = False
