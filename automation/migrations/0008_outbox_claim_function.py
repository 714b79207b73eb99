"""The outbox claim as a function that walks the ``event_outbox`` index in order.

Claimed events leave the partial index only when the table is vacuumed: until then their
entries stay in it, pointing at dead row versions. A bitmap scan (which the planner picks
for the claim, expecting a handful of undispatched events) reads every one of those
entries and visits their heap pages on each claim, so a claim's cost grew with the events
dispatched since the last vacuum. An ordered index scan marks the dead entries it passes
(later scans skip them without visiting the heap, and the index reclaims their space) and
stops at the batch's size. The function switches bitmap scans off for its own statement
only; the rest of the transaction plans as usual.
"""

from django.db import migrations

CREATE = """
CREATE FUNCTION automation_outbox_claim(due timestamptz, size integer)
RETURNS SETOF automation_event
LANGUAGE sql VOLATILE
SET enable_bitmapscan = off
AS $$
    UPDATE automation_event
    SET dispatched_at = due,
        dispatch_attempts = dispatch_attempts + 1,
        dispatch_after = NULL,
        dispatch_error = ''
    WHERE id IN (
        SELECT id FROM automation_event
        WHERE dispatched_at IS NULL AND (dispatch_after IS NULL OR dispatch_after <= due)
        ORDER BY occurred_at, id
        LIMIT size
        FOR UPDATE SKIP LOCKED
    )
    RETURNING *
$$
"""

DROP = "DROP FUNCTION IF EXISTS automation_outbox_claim(timestamptz, integer)"


def create(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(CREATE)


def drop(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(DROP)


class Migration(migrations.Migration):
    dependencies = [("automation", "0007_event_indexes_trimmed")]

    operations = [migrations.RunPython(create, drop)]
