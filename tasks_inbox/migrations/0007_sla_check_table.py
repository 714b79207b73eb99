"""The SLA sweep's due set moves to a table of its own (``SLACheck``), kept by triggers on
the task table (PostgreSQL), and the task table keeps 15% of each page free so that the
sweep's update of a task stays on its page (``fillfactor`` 85: pages written from now on;
a table rewrite, ``VACUUM FULL``, applies it to the existing ones)."""

import django.db.models.deletion
from django.db import migrations, models

TRIGGERS = """
CREATE FUNCTION tasks_inbox_sla_check_sync() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        DELETE FROM tasks_inbox_slacheck WHERE task_id = OLD.id;
    ELSIF NEW.is_open AND NEW.sla_next_check_at IS NOT NULL THEN
        INSERT INTO tasks_inbox_slacheck (task_id, next_check_at)
        VALUES (NEW.id, NEW.sla_next_check_at)
        ON CONFLICT (task_id) DO UPDATE SET next_check_at = EXCLUDED.next_check_at;
    ELSIF TG_OP = 'UPDATE' THEN
        DELETE FROM tasks_inbox_slacheck WHERE task_id = NEW.id;
    END IF;
    RETURN NULL;
END
$$;
CREATE TRIGGER tasks_inbox_sla_check_insert AFTER INSERT ON tasks_inbox_task
    FOR EACH ROW WHEN (NEW.is_open AND NEW.sla_next_check_at IS NOT NULL)
    EXECUTE FUNCTION tasks_inbox_sla_check_sync();
CREATE TRIGGER tasks_inbox_sla_check_update AFTER UPDATE OF sla_next_check_at, is_open
    ON tasks_inbox_task FOR EACH ROW
    WHEN (OLD.sla_next_check_at IS DISTINCT FROM NEW.sla_next_check_at
          OR OLD.is_open IS DISTINCT FROM NEW.is_open)
    EXECUTE FUNCTION tasks_inbox_sla_check_sync();
CREATE TRIGGER tasks_inbox_sla_check_delete AFTER DELETE ON tasks_inbox_task
    FOR EACH ROW WHEN (OLD.is_open AND OLD.sla_next_check_at IS NOT NULL)
    EXECUTE FUNCTION tasks_inbox_sla_check_sync();
INSERT INTO tasks_inbox_slacheck (task_id, next_check_at)
    SELECT id, sla_next_check_at FROM tasks_inbox_task
    WHERE is_open AND sla_next_check_at IS NOT NULL;
ALTER TABLE tasks_inbox_task SET (fillfactor = 85);
"""

DROP_TRIGGERS = """
ALTER TABLE tasks_inbox_task RESET (fillfactor);
DROP TRIGGER tasks_inbox_sla_check_delete ON tasks_inbox_task;
DROP TRIGGER tasks_inbox_sla_check_update ON tasks_inbox_task;
DROP TRIGGER tasks_inbox_sla_check_insert ON tasks_inbox_task;
DROP FUNCTION tasks_inbox_sla_check_sync();
DELETE FROM tasks_inbox_slacheck;
"""


def triggers_create(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(TRIGGERS)


def triggers_drop(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(DROP_TRIGGERS)


class Migration(migrations.Migration):
    dependencies = [
        ("tasks_inbox", "0006_task_indexes_trimmed"),
    ]

    operations = [
        migrations.CreateModel(
            name="SLACheck",
            fields=[
                (
                    "task",
                    models.OneToOneField(
                        db_constraint=False,
                        on_delete=django.db.models.deletion.DO_NOTHING,
                        primary_key=True,
                        related_name="sla_check",
                        serialize=False,
                        to="tasks_inbox.task",
                    ),
                ),
                ("next_check_at", models.DateTimeField()),
            ],
            options={
                "verbose_name": "SLA check",
            },
        ),
        migrations.RunPython(triggers_create, triggers_drop),
        migrations.AddIndex(
            model_name="slacheck",
            index=models.Index(fields=["next_check_at", "task"], name="sla_check_due"),
        ),
        migrations.RemoveIndex(
            model_name="task",
            name="task_sla_next_check",
        ),
    ]
