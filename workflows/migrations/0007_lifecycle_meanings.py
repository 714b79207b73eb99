"""What a state or transition means to claims, completion and SLA clocks, kept on the
lifecycle.

Until now the engine read these meanings from fixed keys: the SLA clock paused in a state
named ``blocked``, a claim fired ``start`` and completing preferred ``complete``. The rows
of every stored lifecycle are given the same meanings here, so each behaves as it did.
"""

from django.db import migrations, models
from django.db.models.functions import Now

# The keys the engine used to read the meanings from (kept here as they were).
PAUSE_STATE = "blocked"
CLAIM_ACTION = "start"
COMPLETE_ACTION = "complete"


def declare(apps, schema_editor):
    State = apps.get_model("workflows", "LifecycleState")
    Transition = apps.get_model("workflows", "LifecycleTransition")
    Lifecycle = apps.get_model("workflows", "Lifecycle")
    State.objects.filter(key=PAUSE_STATE).update(pauses_sla=True)
    Transition.objects.filter(action=CLAIM_ACTION).update(on_claim=True)
    Transition.objects.filter(action=COMPLETE_ACTION).update(on_complete=True)
    # the compiled lifecycles are cached per ``updated_at``: mark them changed
    Lifecycle.objects.update(updated_at=Now())


def undeclare(apps, schema_editor):
    pass  # the columns go with the fields


class Migration(migrations.Migration):
    dependencies = [
        ("workflows", "0006_version_live_window"),
    ]

    operations = [
        migrations.AddField(
            model_name="lifecyclestate",
            name="pauses_sla",
            field=models.BooleanField(
                default=False,
                help_text="The SLA clock stops while the task is here (when its SLA config "
                "pauses).",
            ),
        ),
        migrations.AddField(
            model_name="lifecycletransition",
            name="on_claim",
            field=models.BooleanField(
                default=False,
                help_text="Claiming the task fires this transition (when it leaves the "
                "task's state).",
            ),
        ),
        migrations.AddField(
            model_name="lifecycletransition",
            name="on_complete",
            field=models.BooleanField(
                default=False,
                help_text="Completing the task fires this transition (when it leaves the "
                "task's state); else the first one into a final, non-cancelling state.",
            ),
        ),
        migrations.RunPython(declare, undeclare),
    ]
