"""Reads for the inbox (visibility scoping lives here)."""

from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser

from tasks_inbox.models import Notification


def notification_unread_count(*, user: AbstractBaseUser) -> int:
    return Notification.objects.filter(recipient=user, read_at__isnull=True).count()
