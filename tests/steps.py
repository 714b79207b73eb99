"""Step types used only by the tests, registered the way host code registers its own."""

from __future__ import annotations

import time

from automation.actions import StepContext, StepFailed, StepResult, object_schema, step_type
from automation.models import ActionRun

SLEEP_SCHEMA = object_schema(
    {"seconds": {"type": "number"}, "marker": {"type": "string"}, "deal_id": {}}
)


@step_type("test_sleep", schema=SLEEP_SCHEMA)
def test_sleep(ctx: StepContext) -> StepResult:
    """Hold the worker (inside the step's transaction) for a while; with ``deal_id`` also
    leave a note on that deal, so a test can count how often the step's effect happened."""
    time.sleep(float(ctx.config.get("seconds", 1)))
    if ctx.config.get("deal_id"):
        from django.contrib.contenttypes.models import ContentType

        from automation.models import Note
        from crm.models import Deal

        Note.objects.create(
            content_type=ContentType.objects.get_for_model(Deal),
            object_id=str(ctx.config["deal_id"]),
            note=f"slept in {ctx.step['key']}",
            action_run=ctx.action_run,
        )
    return StepResult(output={"slept": ctx.config.get("seconds", 1)})


@step_type("test_flaky", schema=object_schema({"fail_times": {"type": "integer"}}))
def test_flaky(ctx: StepContext) -> StepResult:
    """Fail (retryably) for the first ``fail_times`` attempts, then succeed."""
    assert isinstance(ctx.action_run, ActionRun)
    if ctx.attempt <= int(ctx.config.get("fail_times", 1)):
        raise StepFailed(f"flaky failure #{ctx.attempt}", code="FLAKY", retryable=True)
    return StepResult(output={"attempt": ctx.attempt})


@step_type("test_db_sleep", schema=object_schema({"seconds": {"type": "number"}}))
def test_db_sleep(ctx: StepContext) -> StepResult:
    """Keep the database busy (PostgreSQL's pg_sleep) for a while."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_sleep(%s)", [float(ctx.config.get("seconds", 1))])
    return StepResult(output={"slept": True})


@step_type("test_db_error", schema=object_schema({"fail": {"type": "boolean"}}))
def test_db_error(ctx: StepContext) -> StepResult:
    """With ``fail``, raise a database error that is not a timeout (division by zero in
    PostgreSQL): infrastructure trouble, which aborts the step's transaction."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT 1 / %s", [0 if ctx.config.get("fail") else 1])
    return StepResult(output={"ok": True})


@step_type("test_external", schema=object_schema({"deal_id": {}}), atomic=False)
def test_external(ctx: StepContext) -> StepResult:
    """A non-atomic step (called outside any transaction, like a webhook): leaves a note
    on the deal, so a test can see where and how often it ran."""
    import os

    from django.contrib.contenttypes.models import ContentType

    from automation.models import Note
    from crm.models import Deal

    Note.objects.create(
        content_type=ContentType.objects.get_for_model(Deal),
        object_id=str(ctx.config["deal_id"]),
        note=f"external in {os.getpid()}",
        action_run=ctx.action_run,
    )
    return StepResult(output={"pid": os.getpid()})
