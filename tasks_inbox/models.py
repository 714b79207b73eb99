"""Human work: tasks, their lifecycles' history, SLA configuration, notifications."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone


class Notification(models.Model):
    """An in-app notification shown in the inbox (with an unread badge)."""

    recipient = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="notifications",
    )
    message = models.CharField(max_length=1000)
    link = models.CharField(max_length=500, blank=True)
    read_at = models.DateTimeField(null=True, blank=True)
    action_run = models.ForeignKey(
        "automation.ActionRun", null=True, blank=True, on_delete=models.SET_NULL,
        related_name="+",
    )
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["recipient", "created_at"], name="notification_unread",
                         condition=Q(read_at__isnull=True)),
        ]

    def __str__(self) -> str:
        return self.message[:60]

    @property
    def is_read(self) -> bool:
        return self.read_at is not None
