"""Task list filters, shared by the API (``?state=...``) and the inbox pages (same names)."""

from __future__ import annotations

from typing import Any

import django_filters
from django import forms
from django.contrib.auth.models import AnonymousUser
from django.db.models import Q, QuerySet
from django.utils import timezone

from automation.models import Run
from config.filters import ReferenceFilter, id_or_slug
from tasks_inbox.models import PRIORITY_BY_NAME, Task
from tasks_inbox.selectors import (
    REFERENCE_RULE,
    SORTS,
    queue_lookup,
    task_order,
    tasks_visible_to,
    user_lookup,
)
from workflows.models import LifecycleState

# ``ordering`` (DRF's usual name, by field) -> ``sort`` (by meaning)
ORDERING_ALIASES = {
    "-priority": "priority",
    "priority": "-priority",
    "due_at": "due",
    "-due_at": "-due",
    "created_at": "created",
    "-created_at": "-created",
}


def _state(value: str) -> str:
    if not LifecycleState.objects.filter(key=value).exists():
        raise forms.ValidationError(f"no lifecycle has a state {value!r}", code="UNKNOWN_STATE")
    return value


def _assignee(value: str) -> Any:
    """``me`` and ``none`` as they are; anything else names one user."""
    return value if value in ("me", "none") else user_lookup(value, field="assignee")


class TaskFilter(django_filters.FilterSet):
    state = ReferenceFilter(
        field_name="state", resolve=_state, help_text="A state key of a lifecycle."
    )
    priority = django_filters.ChoiceFilter(
        method="filter_priority",
        choices=[(name, name) for name in PRIORITY_BY_NAME],
    )
    task_type = django_filters.CharFilter(field_name="task_type")
    queue = ReferenceFilter(
        field_name="queue",
        resolve=lambda value: queue_lookup(value, field="queue"),
        help_text="A queue id or name. " + REFERENCE_RULE,
    )
    assignee = ReferenceFilter(
        method="filter_assignee",
        resolve=_assignee,
        help_text="'me', 'none', or a user id, username or email. " + REFERENCE_RULE,
    )
    overdue = django_filters.BooleanFilter(method="filter_overdue")
    open = django_filters.BooleanFilter(field_name="is_open")
    parent = ReferenceFilter(
        field_name="parent",
        resolve=lambda value: value,
        help_text="A task id, among the tasks the caller may see.",
    )
    run = ReferenceFilter(
        field_name="origin_run",
        resolve=lambda value: value,
        help_text="A run id, among the runs of the tasks the caller may see.",
    )
    q = django_filters.CharFilter(field_name="title", lookup_expr="icontains")
    sort = django_filters.ChoiceFilter(
        method="filter_sort",
        choices=[(s, s) for s in SORTS],
        help_text="priority (default: most urgent, then soonest due), due, -due, created...",
    )

    ordering = django_filters.ChoiceFilter(
        method="filter_ordering",
        choices=[(o, o) for o in ORDERING_ALIASES],
        help_text="The same as sort, by field name: priority, due_at, created_at (- for "
        "descending).",
    )

    class Meta:
        model = Task
        fields: list[str] = []

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # ?parent= and ?run= name things within what the caller sees: a task or run out of
        # sight answers exactly as a missing one (no existence oracle).
        user = getattr(self.request, "user", None) or AnonymousUser()
        visible = tasks_visible_to(user)
        runs = (
            Run.objects.all()
            if user.has_perm("automation.view_run")
            else Run.objects.filter(pk__in=visible.exclude(origin_run=None).values("origin_run"))
        )
        self.filters["parent"].extra["resolve"] = id_or_slug(visible, slug_field=None, noun="task")
        self.filters["run"].extra["resolve"] = id_or_slug(runs, slug_field=None, noun="run")

    def filter_queryset(self, queryset: QuerySet[Task]) -> QuerySet[Task]:
        queryset = super().filter_queryset(queryset)
        if not (self.form.cleaned_data.get("sort") or self.form.cleaned_data.get("ordering")):
            queryset = task_order(queryset, None)
        return queryset

    def filter_ordering(self, queryset: QuerySet[Task], name: str, value: str) -> QuerySet[Task]:
        return task_order(queryset, ORDERING_ALIASES[value])

    def filter_priority(self, queryset: QuerySet[Task], name: str, value: str) -> QuerySet[Task]:
        return queryset.filter(priority=PRIORITY_BY_NAME[value]) if value else queryset

    def filter_assignee(self, queryset: QuerySet[Task], name: str, value: Any) -> QuerySet[Task]:
        if value is None:
            return queryset
        if value == "me":
            return queryset.filter(assignee=self.request.user if self.request else None)
        if value == "none":
            return queryset.filter(assignee__isnull=True)
        return queryset.filter(assignee=value)

    def filter_overdue(self, queryset: QuerySet[Task], name: str, value: Any) -> QuerySet[Task]:
        if value is None:
            return queryset
        overdue = Q(is_open=True, due_at__lt=timezone.now())
        return queryset.filter(overdue) if value else queryset.exclude(overdue)

    def filter_sort(self, queryset: QuerySet[Task], name: str, value: str) -> QuerySet[Task]:
        return task_order(queryset, value)
