"""How the sample domain plugs into the engine: one registration call per model.

Exports show a non-staff user the leads and deals they own (staff see all, see
``automation.registry.visible_rows``); without a user (an event with no actor) nothing.
"""

from __future__ import annotations

from typing import Any

from django.db.models import Q


def owned_by(user: Any) -> Q:
    """Rows the user owns; no rows for no user."""
    return Q(owner=user) if user is not None else Q(pk__in=[])


def register() -> None:
    from automation.registry import register_model
    from crm.models import Deal, Lead

    register_model(
        Lead,
        name="lead",
        track=["status", "owner"],
        writable=["status", "owner", "budget", "contact_name", "email"],
        exportable=[
            "id",
            "company_name",
            "contact_name",
            "email",
            "annual_revenue",
            "budget",
            "status",
            "owner",
            "created_at",
        ],
        visibility=owned_by,
        # The demo workflows notify and assign "{{lead.owner.email}}".
        user_fields_with_email=["owner"],
    )
    register_model(
        Deal,
        name="deal",
        track=["stage", "amount", "owner"],
        writable=["stage", "amount", "owner", "close_date"],
        exportable=["id", "name", "lead", "amount", "stage", "close_date", "owner", "created_at"],
        visibility=owned_by,
        user_fields_with_email=["owner"],
    )
