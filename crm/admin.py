from django.contrib import admin

from automation.admin import AutomationHistoryMixin
from crm.models import Deal, Lead


@admin.register(Lead)
class LeadAdmin(AutomationHistoryMixin, admin.ModelAdmin):
    list_display = ("company_name", "status", "annual_revenue", "budget", "owner", "created_at")
    list_filter = ("status",)
    search_fields = ("company_name", "contact_name", "email")


@admin.register(Deal)
class DealAdmin(AutomationHistoryMixin, admin.ModelAdmin):
    list_display = ("name", "stage", "amount", "close_date", "owner")
    list_filter = ("stage",)
    search_fields = ("name",)
