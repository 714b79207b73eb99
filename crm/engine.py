"""How the sample domain plugs into the engine: one registration call per model.

Exports show a non-staff user the leads and deals they own (staff see all, see
``automation.registry.visible_rows``); without a user (an event with no actor) nothing.
"""

from __future__ import annotations

from django.db.models import Q


def owned_by(user: object) -> Q:
    """Rows the user owns; no rows for no user."""
    return Q(owner=user) if user is not None else Q(pk__in=[])


# The domain events the sample domain emits (``automation.events.emit``), with their
# payloads. Callers may add keys of their own, so the payloads stay open.
DEAL_OUTCOME_SCHEMA = {
    "type": "object",
    "properties": {
        "deal_id": {"type": "integer", "title": "Deal id"},
        "amount": {"type": ["number", "null"], "title": "Amount"},
        "reason": {"type": ["string", "null"], "title": "Reason"},
    },
    "additionalProperties": True,
}


def register() -> None:
    from automation.catalogue import declare_event
    from automation.registry import register_model
    from crm.models import Deal, Lead

    declare_event(
        "deal.won",
        schema=DEAL_OUTCOME_SCHEMA,
        description="A deal was closed as won (emitted by the sales code, or posted to the API).",
    )
    declare_event(
        "deal.lost",
        schema=DEAL_OUTCOME_SCHEMA,
        description="A deal was closed as lost.",
    )

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
