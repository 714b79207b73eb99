from django.contrib import admin

from tasks_inbox.models import Notification


@admin.register(Notification)
class NotificationAdmin(admin.ModelAdmin):
    list_display = ("recipient", "message", "created_at", "read_at")
    list_filter = ("read_at",)
    raw_id_fields = ("recipient", "action_run")
