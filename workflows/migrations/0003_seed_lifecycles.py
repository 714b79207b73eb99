"""Seed the default task lifecycle (SPEC section 6) and the plan lifecycle.

The data is written out here (not imported) so the migration stays what it was when it ran.
"""

from django.db import migrations

STAFF_ROLES = ["assignee", "manager", "staff"]

TASK = {
    "slug": "task",
    "name": "Task",
    "description": "The default lifecycle of a task: new, in progress, blocked, completed, "
    "cancelled.",
    "states": [
        {"key": "new", "label": "New", "is_initial": True},
        {"key": "in_progress", "label": "In progress"},
        {"key": "blocked", "label": "Blocked"},
        {"key": "completed", "label": "Completed", "is_final": True},
        {"key": "cancelled", "label": "Cancelled", "is_final": True, "is_cancellation": True},
    ],
    "transitions": [
        {"action": "start", "label": "Start", "from_states": ["new"], "to_state": "in_progress"},
        {
            "action": "complete",
            "label": "Complete",
            "from_states": ["in_progress"],
            "to_state": "completed",
        },
        {
            "action": "block",
            "label": "Block",
            "from_states": ["new", "in_progress"],
            "to_state": "blocked",
            "required_input": ["reason"],
        },
        {
            "action": "resume",
            "label": "Resume",
            "from_states": ["blocked"],
            "to_state": "in_progress",
        },
        {
            "action": "release",
            "label": "Release",
            "from_states": ["in_progress"],
            "to_state": "new",
            "unassign": True,
        },
        {
            "action": "cancel",
            "label": "Cancel",
            "from_states": ["new", "in_progress", "blocked"],
            "to_state": "cancelled",
        },
    ],
}

PLAN = {
    "slug": "plan",
    "name": "Plan",
    "description": "A plan groups tasks (their parent): draft, active, archived.",
    "states": [
        {"key": "draft", "label": "Draft", "is_initial": True},
        {"key": "active", "label": "Active"},
        {"key": "archived", "label": "Archived", "is_final": True},
    ],
    "transitions": [
        {"action": "activate", "label": "Activate", "from_states": ["draft"], "to_state": "active"},
        {
            "action": "archive",
            "label": "Archive",
            "from_states": ["draft", "active"],
            "to_state": "archived",
        },
    ],
}


def seed(apps, schema_editor):
    Lifecycle = apps.get_model("workflows", "Lifecycle")
    State = apps.get_model("workflows", "LifecycleState")
    Transition = apps.get_model("workflows", "LifecycleTransition")
    for document in (TASK, PLAN):
        lifecycle, created = Lifecycle.objects.get_or_create(
            slug=document["slug"],
            defaults={"name": document["name"], "description": document["description"]},
        )
        if not created:
            continue
        for position, state in enumerate(document["states"]):
            State.objects.create(lifecycle=lifecycle, position=position, **state)
        for position, transition in enumerate(document["transitions"]):
            data = {"allowed": STAFF_ROLES, **transition}
            Transition.objects.create(lifecycle=lifecycle, position=position, **data)


def unseed(apps, schema_editor):
    Lifecycle = apps.get_model("workflows", "Lifecycle")
    Lifecycle.objects.filter(slug__in=[TASK["slug"], PLAN["slug"]]).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("workflows", "0002_lifecycles"),
    ]

    operations = [
        migrations.RunPython(seed, unseed),
    ]
