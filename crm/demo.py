"""The CRM scenarios of the spec, as workflow documents, and a few sample records."""

from __future__ import annotations

from decimal import Decimal

from django.contrib.auth import get_user_model

OWNER_KNOWN = {"field": "lead.owner.email", "operator": "exists"}

QUALIFY_HIGH_VALUE_LEADS = {
    "slug": "qualify-high-value-leads",
    "name": "Auto-qualify high-value leads",
    "description": "Leads with revenue >= 1M and budget >= 50k are qualified, noted, their "
    "owner notified, and a follow-up task is due in two days.",
    "is_active": True,
    "triggers": [
        {
            "event_type": "lead.created",
            "priority": 10,
            "conditions": {
                "and": [
                    {"field": "annual_revenue", "operator": "gte", "value": 1000000},
                    {"field": "budget", "operator": "gte", "value": 50000},
                ]
            },
        },
    ],
    "steps": [
        {
            "key": "qualify",
            "type": "update_field",
            "config": {
                "entity_type": "lead",
                "entity_id": "{{lead.id}}",
                "field": "status",
                "value": "qualified",
            },
        },
        {
            "key": "note",
            "type": "add_note",
            "config": {
                "entity_type": "lead",
                "entity_id": "{{lead.id}}",
                "note": "Auto-qualified: revenue {{lead.annual_revenue}}, budget {{lead.budget}}.",
            },
        },
        {
            "key": "notify",
            "type": "send_notification",
            "conditions": OWNER_KNOWN,
            "config": {
                "recipient": "{{lead.owner.email}}",
                "message": "New qualified lead: {{lead.company_name}}",
                "notification_type": "in_app",
                "link": "/admin/crm/lead/{{lead.id}}/",
            },
        },
        {
            "key": "follow_up",
            "type": "create_task",
            "allow_failure": True,
            "conditions": OWNER_KNOWN,
            "config": {
                "title": "Follow up with {{lead.company_name}}",
                "assignee": "{{lead.owner.email}}",
                "due_date": "{{today+2}}",
                "priority": "high",
                "task_type": "follow_up",
                "entity_type": "lead",
                "entity_id": "{{lead.id}}",
            },
        },
    ],
}

DEAL_NEGOTIATION = {
    "slug": "deal-negotiation-note",
    "name": "Note deals entering negotiation",
    "description": "When a deal moves to negotiation, note it on the deal.",
    "is_active": True,
    "triggers": [
        {
            "event_type": "deal.stage_changed",
            "priority": 0,
            "conditions": {"field": "new_stage", "operator": "eq", "value": "negotiation"},
        },
    ],
    "steps": [
        {
            "key": "note",
            "type": "add_note",
            "config": {
                "entity_type": "deal",
                "entity_id": "{{deal.id}}",
                "note": "Deal {{deal.name}} entered negotiation ({{deal.amount}}).",
            },
        },
    ],
}

WORKFLOWS = [QUALIFY_HIGH_VALUE_LEADS, DEAL_NEGOTIATION]


def seed_records() -> list[str]:
    from crm.models import Deal, Lead

    user_model = get_user_model()
    alice = user_model.objects.get(username="alice")
    leads = [
        ("Northwind Tech", Decimal("2500000"), Decimal("80000")),
        ("Small Shop", Decimal("120000"), Decimal("5000")),
    ]
    for company, revenue, budget in leads:
        Lead.objects.get_or_create(
            company_name=company,
            defaults={
                "annual_revenue": revenue,
                "budget": budget,
                "owner": alice,
                "email": f"contact@{company.split()[0].lower()}.example",
            },
        )
    Deal.objects.get_or_create(
        name="Northwind renewal",
        defaults={"amount": Decimal("90000"), "owner": alice},
    )
    return ["crm: sample leads and a deal"]
