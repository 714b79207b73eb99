"""How the sample domain plugs into the engine: one registration call per model."""

from __future__ import annotations


def register() -> None:
    from automation.registry import register_model
    from crm.models import Deal, Lead

    register_model(
        Lead,
        name="lead",
        track=["status", "owner"],
        writable=["status", "owner", "budget", "contact_name", "email"],
        exportable=[
            "id", "company_name", "contact_name", "email", "annual_revenue", "budget",
            "status", "owner", "created_at",
        ],
    )
    register_model(
        Deal,
        name="deal",
        track=["stage", "amount", "owner"],
        writable=["stage", "amount", "owner", "close_date"],
        exportable=["id", "name", "lead", "amount", "stage", "close_date", "owner", "created_at"],
    )
