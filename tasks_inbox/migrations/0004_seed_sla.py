"""Seed the default SLAs of the case-management process: intake 1 hour, assessment 4 hours,
review 2 hours (by task type; editable in the admin and the API)."""

from datetime import timedelta

from django.db import migrations

DEFAULTS = [
    {
        "name": "Intake",
        "task_type": "intake",
        "target": timedelta(hours=1),
        "warning_after": timedelta(minutes=45),
        "description": "Intake tasks are picked up and done within an hour.",
        "escalation_ladder": [
            {"after_percent": 100, "actions": [{"type": "notify_manager"}]},
            {
                "after_percent": 150,
                "actions": [{"type": "raise_priority"}, {"type": "notify_manager"}],
            },
        ],
    },
    {
        "name": "Assessment",
        "task_type": "assessment",
        "target": timedelta(hours=4),
        "warning_after": timedelta(hours=3),
        "description": "Assessments are done within four hours.",
        "escalation_ladder": [
            {"after_percent": 125, "actions": [{"type": "remind"}, {"type": "notify_manager"}]},
            {
                "after_percent": 200,
                "actions": [{"type": "raise_priority", "to": "urgent"}, {"type": "notify_manager"}],
            },
        ],
    },
    {
        "name": "Review",
        "task_type": "review",
        "target": timedelta(hours=2),
        "warning_after": timedelta(minutes=90),
        "description": "Reviews are done within two hours.",
        "escalation_ladder": [
            {"after_percent": 150, "actions": [{"type": "remind"}, {"type": "notify_manager"}]},
        ],
    },
]


def seed(apps, schema_editor):
    SLAConfig = apps.get_model("tasks_inbox", "SLAConfig")
    for values in DEFAULTS:
        if SLAConfig.objects.filter(name=values["name"]).exists():
            continue
        if SLAConfig.objects.filter(
            is_active=True, queue__isnull=True, priority__isnull=True, task_type=values["task_type"]
        ).exists():
            continue
        SLAConfig.objects.create(**values)


def unseed(apps, schema_editor):
    SLAConfig = apps.get_model("tasks_inbox", "SLAConfig")
    Task = apps.get_model("tasks_inbox", "Task")
    names = [values["name"] for values in DEFAULTS]
    used = Task.objects.filter(sla_config__name__in=names).values("sla_config_id")
    SLAConfig.objects.filter(name__in=names).exclude(pk__in=used).delete()


class Migration(migrations.Migration):
    dependencies = [("tasks_inbox", "0003_sla")]

    operations = [migrations.RunPython(seed, unseed)]
