"""Task list filters, shared by the API (``?state=...``) and the inbox pages (same names)."""

from __future__ import annotations

from typing import Any

import django_filters
from django.db.models import Q, QuerySet
from django.utils import timezone

from tasks_inbox.models import PRIORITY_BY_NAME, Task
from tasks_inbox.selectors import SORTS, task_order

# ``ordering`` (DRF's usual name, by field) -> ``sort`` (by meaning)
ORDERING_ALIASES = {"-priority": "priority", "priority": "-priority", "due_at": "due",
                    "-due_at": "-due", "created_at": "created", "-created_at": "-created"}


class TaskFilter(django_filters.FilterSet):
    state = django_filters.CharFilter(field_name="state")
    priority = django_filters.ChoiceFilter(
        method="filter_priority", choices=[(name, name) for name in PRIORITY_BY_NAME],
    )
    task_type = django_filters.CharFilter(field_name="task_type")
    queue = django_filters.CharFilter(method="filter_queue", help_text="A group id or name.")
    assignee = django_filters.CharFilter(
        method="filter_assignee", help_text="'me', 'none', a user id or a username.",
    )
    overdue = django_filters.BooleanFilter(method="filter_overdue")
    open = django_filters.BooleanFilter(field_name="is_open")
    parent = django_filters.NumberFilter(field_name="parent_id")
    run = django_filters.NumberFilter(field_name="origin_run_id")
    q = django_filters.CharFilter(field_name="title", lookup_expr="icontains")
    sort = django_filters.ChoiceFilter(
        method="filter_sort", choices=[(s, s) for s in SORTS],
        help_text="priority (default: most urgent, then soonest due), due, -due, created...",
    )

    ordering = django_filters.ChoiceFilter(
        method="filter_ordering", choices=[(o, o) for o in ORDERING_ALIASES],
        help_text="The same as sort, by field name: priority, due_at, created_at (- for "
                  "descending).",
    )

    class Meta:
        model = Task
        fields: list[str] = []

    def filter_queryset(self, queryset: QuerySet[Task]) -> QuerySet[Task]:
        queryset = super().filter_queryset(queryset)
        if not (self.form.cleaned_data.get("sort") or self.form.cleaned_data.get("ordering")):
            queryset = task_order(queryset, None)
        return queryset

    def filter_ordering(self, queryset: QuerySet[Task], name: str, value: str
                        ) -> QuerySet[Task]:
        return task_order(queryset, ORDERING_ALIASES[value])

    def filter_priority(self, queryset: QuerySet[Task], name: str, value: str) -> QuerySet[Task]:
        return queryset.filter(priority=PRIORITY_BY_NAME[value]) if value else queryset

    def filter_queue(self, queryset: QuerySet[Task], name: str, value: str) -> QuerySet[Task]:
        if not value:
            return queryset
        if value.isdigit():
            return queryset.filter(queue_id=int(value))
        return queryset.filter(queue__name=value)

    def filter_assignee(self, queryset: QuerySet[Task], name: str, value: str
                        ) -> QuerySet[Task]:
        if not value:
            return queryset
        if value == "me":
            return queryset.filter(assignee=self.request.user if self.request else None)
        if value == "none":
            return queryset.filter(assignee__isnull=True)
        if value.isdigit():
            return queryset.filter(assignee_id=int(value))
        return queryset.filter(assignee__username=value)

    def filter_overdue(self, queryset: QuerySet[Task], name: str, value: Any) -> QuerySet[Task]:
        if value is None:
            return queryset
        overdue = Q(is_open=True, due_at__lt=timezone.now())
        return queryset.filter(overdue) if value else queryset.exclude(overdue)

    def filter_sort(self, queryset: QuerySet[Task], name: str, value: str) -> QuerySet[Task]:
        return task_order(queryset, value)
