"""Template context shared by every page."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest
from django.utils import timezone


def site(request: HttpRequest) -> dict[str, Any]:
    # "brand", not "site_name": auth views set site_name to the request's host name.
    context: dict[str, Any] = {"brand": "Flowdesk", "now": timezone.now()}
    user = getattr(request, "user", None)
    if user is not None and user.is_authenticated:
        from tasks_inbox.selectors import notification_unread_count

        context["unread_notifications"] = notification_unread_count(user=user)
    return context
