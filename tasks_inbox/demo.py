"""Demo data of the human side: queues and their managers, an approval lifecycle, the
guided portfolio process, the case-management chain, and a few tasks to work.

Idempotent: everything is looked up by its natural key before it is created.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group

# The domain events the demo workflows start from, declared from the app's ready() so
# that the workflows validate wherever the demo is seeded.
DEMO_EVENTS: dict[str, dict[str, Any]] = {
    "portfolio.requested": {
        "description": "A client asked for a portfolio (the guided portfolio demo).",
        "schema": {
            "type": "object",
            "properties": {
                "client": {"type": "string", "title": "Client"},
                "advisor": {"type": "string", "title": "Advisor (username or email)"},
            },
        },
    },
    "case.opened": {
        "description": "A case was opened (the case-management demo).",
        "schema": {
            "type": "object",
            "properties": {"subject": {"type": "string", "title": "Subject"}},
        },
    },
}


def declare_demo_events() -> None:
    from automation.catalogue import declare_event

    for event_type, spec in DEMO_EVENTS.items():
        declare_event(event_type, schema=spec["schema"], description=spec["description"])


WEIGHT_FIELDS = [
    {
        "name": name,
        "type": "number",
        "label": f"{label} weight (%)",
        "min": 0,
        "max": 100,
        "required": True,
    }
    for name, label in (
        ("equity", "Equity"),
        ("bonds", "Bonds"),
        ("cash", "Cash"),
        ("alternatives", "Alternatives"),
    )
]
MANUAL_OR_HYBRID = {
    "field": "steps.method.result.method",
    "operator": "in",
    "value": ["manual", "hybrid"],
}

PORTFOLIO = {
    "slug": "guided-portfolio",
    "name": "Guided portfolio creation",
    "description": "Profile form, then a method (framework, manual or hybrid), then the "
    "framework step or product selection, and a check that weights sum to 100%.",
    "is_active": True,
    "triggers": [{"event_type": "portfolio.requested", "priority": 0}],
    "steps": [
        {
            "key": "profile",
            "type": "create_task",
            "config": {
                "title": "Investor profile: {{client}}",
                "assignee": "{{advisor}}",
                "queue": "Sales",
                "task_type": "portfolio_profile",
                "priority": "medium",
                "due_date": "{{today+2}}",
                "wait": True,
                "form": {
                    "fields": [
                        {
                            "name": "risk",
                            "type": "select",
                            "label": "Risk appetite",
                            "choices": ["low", "medium", "high"],
                            "required": True,
                        },
                        {
                            "name": "horizon_years",
                            "type": "number",
                            "label": "Horizon (years)",
                            "min": 1,
                            "max": 50,
                            "required": True,
                        },
                        {"name": "goals", "type": "textarea", "label": "Goals"},
                    ]
                },
            },
        },
        {
            "key": "method",
            "type": "create_task",
            "config": {
                "title": "Choose how to build {{client}}'s portfolio",
                "description": "Risk appetite {{steps.profile.result.risk}}, horizon "
                "{{steps.profile.result.horizon_years}} years.",
                "assignee": "{{advisor}}",
                "queue": "Sales",
                "task_type": "portfolio_method",
                "wait": True,
                "form": {
                    "fields": [
                        {
                            "name": "method",
                            "type": "select",
                            "label": "Method",
                            "required": True,
                            "choices": [
                                {"value": "framework", "label": "House framework"},
                                {"value": "manual", "label": "Manual selection"},
                                {"value": "hybrid", "label": "Hybrid"},
                            ],
                        },
                    ]
                },
            },
        },
        {
            "key": "framework",
            "type": "create_task",
            "conditions": {
                "field": "steps.method.result.method",
                "operator": "eq",
                "value": "framework",
            },
            "config": {
                "title": "Apply the house framework for {{client}}",
                "description": "Risk appetite {{steps.profile.result.risk}}.",
                "assignee": "{{advisor}}",
                "queue": "Sales",
                "task_type": "portfolio_framework",
                "wait": True,
                "form": {
                    "fields": [
                        {
                            "name": "model",
                            "type": "select",
                            "label": "Model portfolio",
                            "choices": ["conservative", "balanced", "growth"],
                            "required": True,
                        },
                        {
                            "name": "checked",
                            "type": "boolean",
                            "required": True,
                            "label": "The model fits the investor profile",
                        },
                    ]
                },
            },
        },
        {
            "key": "products",
            "type": "create_task",
            "after": ["method"],
            "conditions": MANUAL_OR_HYBRID,
            "config": {
                "title": "Select products and weights for {{client}}",
                "description": "Method: {{steps.method.result.method}}. "
                "The weights must sum to 100%.",
                "assignee": "{{advisor}}",
                "queue": "Sales",
                "task_type": "portfolio_products",
                "wait": True,
                "form": {"fields": WEIGHT_FIELDS},
            },
        },
        {
            "key": "check_weights",
            "type": "validate",
            "after": ["products"],
            "conditions": MANUAL_OR_HYBRID,
            "config": {
                "condition": {"field": "total", "operator": "eq", "value": 100},
                "values": {"total": "{{steps.products.result|sum}}"},
                "message": "weights must sum to 100%",
            },
        },
        {
            "key": "review",
            "type": "create_task",
            "after": ["framework", "check_weights"],
            "config": {
                "title": "Review the portfolio of {{client}} ({{steps.method.result.method}})",
                "queue": "Review",
                "priority": "high",
                "task_type": "portfolio_review",
                "due_date": "{{today+1}}",
            },
        },
    ],
}

CASE_OPENED: dict[str, Any] = {
    "slug": "case-intake",
    "name": "Case management: a new case gets an intake task",
    "description": "case.opened creates an intake task in the Intake queue (members claim).",
    "is_active": True,
    "triggers": [{"event_type": "case.opened", "priority": 0}],
    "steps": [
        {
            "key": "intake",
            "type": "create_task",
            "config": {
                "title": "Intake: {{subject}}",
                "queue": "Intake",
                "routing": "claim",
                "task_type": "intake",
                "priority": "medium",
                "form": {
                    "fields": [
                        {
                            "name": "summary",
                            "type": "textarea",
                            "label": "Summary",
                            "required": True,
                        },
                        {
                            "name": "urgency",
                            "type": "select",
                            "label": "Urgency",
                            "choices": ["low", "medium", "high"],
                            "required": True,
                        },
                    ]
                },
            },
        },
    ],
}

CASE_ASSESSMENT = {
    "slug": "case-intake-to-assessment",
    "name": "Case management: intake completed starts an assessment",
    "description": "When an intake task is completed, a high-priority assessment task goes to "
    "the least busy member of the Assessment queue.",
    "is_active": True,
    "triggers": [
        {
            "event_type": "task.completed",
            "priority": 0,
            "conditions": {"field": "task.task_type", "operator": "eq", "value": "intake"},
        }
    ],
    "steps": [
        {
            "key": "assessment",
            "type": "create_task",
            "config": {
                "title": "Assess: {{task.title}}",
                "queue": "Assessment",
                "priority": "high",
                "task_type": "assessment",
                "due_date": "{{today+1}}",
                "description": "Intake by {{actor.username}}: {{task.result.summary}} "
                "(urgency {{task.result.urgency}}).",
                "form": {
                    "fields": [
                        {"name": "assessment", "type": "textarea", "required": True},
                        {
                            "name": "severity",
                            "type": "select",
                            "required": True,
                            "choices": ["low", "medium", "high"],
                        },
                    ]
                },
            },
        },
    ],
}

WORKFLOWS = [PORTFOLIO, CASE_OPENED, CASE_ASSESSMENT]

APPROVAL = {
    "slug": "approval",
    "name": "Approval",
    "description": "draft -> submitted -> approved, or rejected -> draft.",
    "states": [
        {"key": "draft", "label": "Draft", "is_initial": True},
        {"key": "submitted", "label": "Submitted"},
        {"key": "approved", "label": "Approved", "is_final": True},
        {"key": "rejected", "label": "Rejected"},
    ],
    "transitions": [
        {
            "action": "submit",
            "label": "Submit",
            "from_states": ["draft"],
            "to_state": "submitted",
            "allowed": ["assignee", "creator", "staff"],
        },
        {
            "action": "approve",
            "label": "Approve",
            "from_states": ["submitted"],
            "to_state": "approved",
            "allowed": ["manager", "staff"],
        },
        {
            "action": "reject",
            "label": "Reject",
            "from_states": ["submitted"],
            "to_state": "rejected",
            "allowed": ["manager", "staff"],
            "required_input": ["reason"],
        },
        {
            "action": "revise",
            "label": "Back to draft",
            "from_states": ["rejected"],
            "to_state": "draft",
            "allowed": ["assignee", "creator", "staff"],
        },
    ],
}

# queue -> (routing, managers)
QUEUES: dict[str, tuple[str, list[str]]] = {
    "Intake": ("claim", ["maria"]),
    "Assessment": ("least_busy", ["maria"]),
    "Review": ("least_busy", ["maria"]),
    "Sales": ("least_busy", ["demo"]),
}


def seed_queues() -> list[str]:
    from tasks_inbox.models import Queue

    users = get_user_model().objects
    for name, (routing, managers) in QUEUES.items():
        group, _ = Group.objects.get_or_create(name=name)
        queue, _ = Queue.objects.get_or_create(group=group, defaults={"routing": routing})
        queue.managers.add(*users.filter(username__in=managers))
    return [f"queues: {', '.join(f'{n} ({r})' for n, (r, _) in QUEUES.items())}"]


def seed_lifecycles() -> list[str]:
    from tasks_inbox.lifecycles import lifecycle_get, lifecycle_save
    from workflows.models import Lifecycle

    lifecycle_get("task")
    lifecycle_get("plan")
    if not Lifecycle.objects.filter(slug=APPROVAL["slug"]).exists():
        lifecycle_save(document=APPROVAL)
    return ["lifecycles: task, plan, approval"]


def seed_workflows() -> list[str]:
    from workflows.services import workflow_save

    user = get_user_model().objects.filter(username="demo").first()
    for document in WORKFLOWS:
        workflow_save(document=document, user=user)
    return [f"workflows: {', '.join(str(d['slug']) for d in WORKFLOWS)}"]


def _task(title: str, **kwargs: Any) -> Any:
    from tasks_inbox.models import Task
    from tasks_inbox.services import task_create

    found = Task.objects.filter(title=title).first()
    return found or task_create(title=title, **kwargs)


def seed_tasks() -> list[str]:
    users = {
        u.username: u
        for u in get_user_model().objects.filter(username__in=["demo", "alice", "bob", "maria"])
    }
    intake = Group.objects.get(name="Intake")
    demo = users.get("demo")
    intake_form = CASE_OPENED["steps"][0]["config"]["form"]
    for subject in ("Water damage claim #1042", "Address change for policy 88-113"):
        _task(
            f"Intake: {subject}",
            queue=intake,
            routing="claim",
            task_type="intake",
            form=intake_form,
            created_by=demo,
        )
    _task(
        "Approve the Q3 marketing budget",
        assignee=users.get("alice"),
        lifecycle="approval",
        priority="high",
        created_by=demo,
        queue=Group.objects.get(name="Sales"),
    )
    plan = _task("Onboard Northwind Tech", lifecycle="plan", assignee=demo, created_by=demo)
    for title in ("Send the welcome pack to Northwind", "Book the Northwind kickoff call"):
        _task(
            title, assignee=users.get("alice"), parent=plan, created_by=demo, task_type="onboarding"
        )
    return ["tasks: 2 intake tasks to claim, an approval, an onboarding plan"]


# --- SLAs -------------------------------------------------------------------------------

SLA_BREACH_ALERT = {
    "slug": "sla-breach-alert",
    "name": "SLA breached: tell the queue's manager",
    "description": "task.sla_breached notifies the first manager of the task's queue in the inbox.",
    "is_active": True,
    "triggers": [
        {
            "event_type": "task.sla_breached",
            "priority": 0,
            "conditions": {"field": "sla.manager.username", "operator": "exists"},
        }
    ],
    "steps": [
        {
            "key": "tell_manager",
            "type": "send_notification",
            "config": {
                "recipient": "{{sla.manager.username}}",
                "message": "SLA '{{sla.config}}' breached: {{task.title}} "
                "(assignee {{task.assignee.username}})",
                "link": "/inbox/tasks/{{task.id}}/",
                "notification_type": "in_app",
            },
        },
    ],
}

REVIEW_QUEUE_SLA = {
    "name": "Review queue",
    "queue": "Review",
    "target": "2h",
    "warning_after": "90m",
    "description": "Any task in the Review queue (the portfolio reviews) within two hours; "
    "the Review task type has its own SLA, which wins (more specific).",
    "escalation_ladder": [
        {"after_percent": 150, "actions": [{"type": "remind"}, {"type": "notify_manager"}]},
        {
            "after_percent": 300,
            "actions": [
                {"type": "raise_priority", "to": "urgent"},
                {"type": "reassign", "user": "maria"},
            ],
        },
    ],
}


def seed_sla() -> list[str]:
    """The default SLAs (intake 1 h, assessment 4 h, review 2 h, also seeded by a migration;
    recreated here if they were removed), an SLA for the Review queue, and the workflow that
    tells a queue's manager about a breach."""
    from importlib import import_module

    from tasks_inbox.models import SLAConfig
    from tasks_inbox.sla.configs import sla_config_save
    from workflows.services import workflow_save

    defaults = import_module("tasks_inbox.migrations.0004_seed_sla").DEFAULTS
    for values in defaults:
        if not SLAConfig.objects.filter(name=values["name"]).exists() and not (
            SLAConfig.objects.filter(
                is_active=True,
                queue__isnull=True,
                priority__isnull=True,
                task_type=values["task_type"],
            ).exists()
        ):
            sla_config_save(document=dict(values))
    has_maria = get_user_model().objects.filter(username="maria", is_active=True).exists()
    if not SLAConfig.objects.filter(name=REVIEW_QUEUE_SLA["name"]).exists() and has_maria:
        sla_config_save(document=dict(REVIEW_QUEUE_SLA))
    user = get_user_model().objects.filter(username="demo").first()
    workflow_save(document=SLA_BREACH_ALERT, user=user)
    return [
        "SLAs: Intake 1h, Assessment 4h, Review 2h (by task type), Review queue 2h; "
        f"workflow {SLA_BREACH_ALERT['slug']}"
    ]


def seed() -> list[str]:
    lines: list[str] = []
    for step in (seed_lifecycles, seed_queues, seed_sla, seed_workflows, seed_tasks):
        lines.extend(step())
    return lines
