"""Admin building blocks shared by the apps."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest


class ReadOnlyInline(admin.TabularInline):
    """Rows shown under their parent, never added, edited or deleted here (they are written
    by the services: step runs, task history, a lifecycle's states)."""

    extra = 0
    can_delete = False

    def get_readonly_fields(self, request: HttpRequest, obj: object = None) -> Any:
        return self.fields or ()

    def has_add_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False
