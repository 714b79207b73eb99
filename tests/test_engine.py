"""The engine end to end, driven in this process (the same services a worker calls).

Given a workflow, when a business event happens, then runs, notes and field updates are
exactly as specified. The real-worker versions of the durability cases are in
test_engine_worker.py.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import pytest
import time_machine
from django.contrib.contenttypes.models import ContentType
from django.db import transaction
from rest_framework.test import APIClient

from automation import services
from automation.events import emit
from automation.models import ActionRun, Event, Note, Run
from crm.demo import DEAL_NEGOTIATION, QUALIFY_HIGH_VALUE_LEADS
from crm.models import Deal, Lead
from workflows.models import Workflow
from workflows.services import workflow_save

pytestmark = pytest.mark.django_db


def notes_on(obj: Any) -> list[str]:
    return list(
        Note.objects.filter(
            content_type=ContentType.objects.get_for_model(obj),
            object_id=str(obj.pk),
        ).values_list("note", flat=True)
    )


def note_workflow(
    slug: str, event_type: str, note: str, conditions: Any = None, **extra: Any
) -> Workflow:
    return workflow_save(
        document={
            "slug": slug,
            "name": slug,
            "triggers": [{"event_type": event_type, "conditions": conditions}],
            "steps": [
                {
                    "key": "note",
                    "type": "add_note",
                    "config": {"entity_type": "deal", "entity_id": "{{deal.id}}", "note": note},
                }
            ],
            **extra,
        }
    )


# --- CRM scenarios ----------------------------------------------------------------------


def test_high_value_lead_is_qualified_and_noted(drain: Any) -> None:
    workflow_save(document=QUALIFY_HIGH_VALUE_LEADS)
    with transaction.atomic():
        big = Lead.objects.create(
            company_name="BigCo", annual_revenue=Decimal("2000000"), budget=Decimal("75000")
        )
        small = Lead.objects.create(
            company_name="SmallCo", annual_revenue=Decimal("999999.99"), budget=Decimal("75000")
        )
    drain()
    big.refresh_from_db()
    small.refresh_from_db()
    assert big.status == "qualified"
    assert notes_on(big) == ["Auto-qualified: revenue 2000000.00, budget 75000.00."]
    assert small.status == "new" and notes_on(small) == []
    runs = Run.objects.filter(workflow__slug="qualify-high-value-leads")
    assert [r.event.entity_id for r in runs] == [str(big.pk)]
    assert runs.get().status == "completed"


def test_owned_lead_notifies_the_owner_and_gets_a_follow_up_task(
    drain: Any, make_user: Any
) -> None:
    from tasks_inbox.models import Notification, Task

    workflow_save(document=QUALIFY_HIGH_VALUE_LEADS)
    owner = make_user("rep")
    start = dt.datetime(2026, 6, 1, 10, 0, tzinfo=dt.UTC)
    with time_machine.travel(start, tick=False):
        lead = Lead.objects.create(
            company_name="Owned Inc",
            annual_revenue=Decimal("4000000"),
            budget=Decimal("90000"),
            owner=owner,
        )
        drain()
    run = Run.objects.get()
    assert run.status == "completed"
    assert dict(run.action_runs.values_list("step_key", "status")) == {
        "qualify": "completed",
        "note": "completed",
        "notify": "completed",
        "follow_up": "completed",
    }
    # One from the workflow's notify step, one from the task assignment.
    notification = Notification.objects.get(recipient=owner, message__startswith="New qualified")
    assert notification.message == "New qualified lead: Owned Inc"
    assert notification.link == f"/admin/crm/lead/{lead.pk}/"
    task = Task.objects.get()
    assert task.title == "Follow up with Owned Inc" and task.assignee == owner
    assert task.due_at.date() == dt.date(2026, 6, 3)
    assert task.get_priority_display().lower() == "high"


def test_budget_below_the_bar_starts_no_run(drain: Any) -> None:
    workflow_save(document=QUALIFY_HIGH_VALUE_LEADS)
    Lead.objects.create(
        company_name="Rich but stingy", annual_revenue=Decimal("5000000"), budget=Decimal("49999")
    )
    drain()
    assert Run.objects.count() == 0
    assert Event.objects.filter(type="lead.created").count() == 1


def test_deal_stage_changed_to_negotiation_adds_rendered_note(drain: Any) -> None:
    workflow_save(document=DEAL_NEGOTIATION)
    deal = Deal.objects.create(name="Acme <renewal>", amount=Decimal("1200.50"))
    drain()
    assert notes_on(deal) == []
    deal.stage = "proposal"
    deal.save()
    drain()
    assert notes_on(deal) == []
    deal.stage = "negotiation"
    deal.save()
    drain()
    assert notes_on(deal) == ["Deal Acme <renewal> entered negotiation (1200.50)."]
    event = Event.objects.get(type="deal.stage_changed", payload__new_stage="negotiation")
    assert event.payload["old_stage"] == "proposal"
    assert event.payload["changes"] == {"stage": {"old": "proposal", "new": "negotiation"}}


@pytest.mark.parametrize(
    ("conditions", "expected"),
    [
        (
            {
                "or": [
                    {"field": "deal.amount", "operator": "gte", "value": 1000},
                    {"field": "deal.name", "operator": "startswith", "value": "VIP"},
                ]
            },
            True,
        ),
        (
            {
                "or": [
                    {"field": "deal.amount", "operator": "gte", "value": 1000000},
                    {"field": "deal.name", "operator": "startswith", "value": "VIP"},
                ]
            },
            False,
        ),
        (
            {"not": {"field": "deal.owner.email", "operator": "endswith", "value": "@example.com"}},
            False,
        ),
        (
            {
                "and": [
                    {"field": "deal.owner.email", "operator": "eq", "value": "ann@example.com"},
                    {"not": {"field": "deal.close_date", "operator": "exists"}},
                ]
            },
            True,
        ),
        (
            {"field": "changes.stage.old", "operator": "in", "value": ["proposal", "prospecting"]},
            True,
        ),
    ],
)
def test_or_not_and_nested_paths_decide(
    drain: Any, make_user: Any, conditions: Any, expected: bool
) -> None:
    note_workflow("w", "deal.stage_changed", "matched", conditions)
    deal = Deal.objects.create(
        name="Plain deal", amount=Decimal("5000"), owner=make_user("ann"), stage="proposal"
    )
    deal.stage = "negotiation"
    deal.save()
    drain()
    assert (notes_on(deal) == ["matched"]) is expected


def test_a_path_missing_from_the_context_is_false(drain: Any) -> None:
    """A path the event does not carry decides false at run time. (On a model event the
    catalogue knows, saving refuses such a path; deal.won's payload is free-form.)"""
    deal = Deal.objects.create(name="Free-form")
    condition = {"field": "deal.owner.profile.missing", "operator": "gt", "value": 3}
    note_workflow("missing", "deal.won", "matched", condition)
    note_workflow("present", "deal.won", "present")
    with transaction.atomic():
        emit("deal.won", {"deal": {"id": deal.pk, "owner": {"profile": {}}}})
    drain()
    assert notes_on(deal) == ["present"]


def test_pattern_triggers_and_priority_order(drain: Any) -> None:
    note_workflow("low", "deal.*", "low", None)
    workflow_save(
        document={
            "slug": "high",
            "name": "high",
            "triggers": [{"event_type": "deal.created", "priority": 50}],
            "steps": [
                {
                    "key": "note",
                    "type": "add_note",
                    "config": {"entity_type": "deal", "entity_id": "{{deal.id}}", "note": "high"},
                }
            ],
        }
    )
    deal = Deal.objects.create(name="D")
    drain()
    assert sorted(notes_on(deal)) == ["high", "low"]
    first = Run.objects.order_by("pk").first()
    assert first.workflow.slug == "high"


# --- idempotency --------------------------------------------------------------------------


def test_same_event_posted_twice_gives_one_run_and_one_note(api: APIClient, drain: Any) -> None:
    deal = Deal.objects.create(name="Once")
    workflow_save(
        document={
            "slug": "won",
            "name": "won",
            "triggers": [{"event_type": "deal.won"}],
            "steps": [
                {
                    "key": "note",
                    "type": "add_note",
                    "config": {
                        "entity_type": "deal",
                        "entity_id": "{{deal_id}}",
                        "note": "won {{deal_id}}",
                    },
                }
            ],
        }
    )
    body = {"type": "deal.won", "payload": {"deal_id": deal.pk}}
    first = api.post("/api/v1/events/", body, format="json", HTTP_IDEMPOTENCY_KEY="evt-1")
    second = api.post("/api/v1/events/", body, format="json", HTTP_IDEMPOTENCY_KEY="evt-1")
    assert first.status_code == second.status_code == 202
    assert first.json() == second.json()
    drain()
    # Replaying the stored event through the outbox changes nothing either.
    event = Event.objects.get(pk=first.json()["id"])
    assert services.event_dispatch(event_id=event.pk) == []
    Event.objects.filter(pk=event.pk).update(dispatched_at=None)
    services.event_dispatch(event_id=event.pk)
    drain()
    assert Event.objects.filter(type="deal.won").count() == 1
    assert Run.objects.count() == 1
    assert notes_on(deal) == [f"won {deal.pk}"]


# --- versions -------------------------------------------------------------------------------


def test_run_finishes_on_its_version_while_new_events_use_the_new_one(drain: Any) -> None:
    document = {
        "slug": "slow",
        "name": "Slow",
        "triggers": [{"event_type": "deal.won"}],
        "steps": [
            {"key": "wait", "type": "delay", "config": {"for": "2 days"}},
            {
                "key": "note",
                "type": "add_note",
                "config": {"entity_type": "deal", "entity_id": "{{deal_id}}", "note": "v1 note"},
            },
        ],
    }
    workflow = workflow_save(document=document)
    deal = Deal.objects.create(name="D")
    start = dt.datetime(2026, 3, 2, 9, 0, tzinfo=dt.UTC)
    with time_machine.travel(start, tick=False) as traveller:
        emit("deal.won", {"deal_id": deal.pk})
        drain()
        first = Run.objects.get()
        assert first.status == "waiting"
        assert first.action_runs.get(step_key="wait").status == "waiting"

        document["steps"][1]["config"]["note"] = "v2 note"
        workflow_save(document=document, workflow=workflow)
        workflow.refresh_from_db()
        assert workflow.published_version.number == 2

        traveller.shift(dt.timedelta(days=2, seconds=1))
        drain()
        first.refresh_from_db()
        assert first.status == "completed" and first.version.number == 1
        emit("deal.won", {"deal_id": deal.pk})
        drain()
        traveller.shift(dt.timedelta(days=2, seconds=1))
        drain()
    second = Run.objects.exclude(pk=first.pk).get()
    assert second.version.number == 2 and second.status == "completed"
    assert sorted(notes_on(deal)) == ["v1 note", "v2 note"]


def test_unchanged_save_does_not_create_a_version() -> None:
    workflow = workflow_save(document=QUALIFY_HIGH_VALUE_LEADS)
    workflow_save(document=QUALIFY_HIGH_VALUE_LEADS, workflow=workflow)
    assert workflow.versions.count() == 1


# --- loops -----------------------------------------------------------------------------------


def test_self_retriggering_update_field_stops_at_the_depth_limit(drain: Any, settings: Any) -> None:
    settings.FLOWDESK = {**settings.FLOWDESK, "MAX_CAUSATION_DEPTH": 5}
    workflow_save(
        document={
            "slug": "flip",
            "name": "Flip status forever",
            "triggers": [{"event_type": "lead.updated"}],
            "steps": [
                {
                    "key": "flip",
                    "type": "update_field",
                    "config": {
                        "entity_type": "lead",
                        "entity_id": "{{lead.id}}",
                        "field": "contact_name",
                        "value": "{{lead.contact_name}}x",
                    },
                }
            ],
        }
    )
    lead = Lead.objects.create(company_name="Loop")
    lead.contact_name = "start"
    lead.save()
    drain(max_rounds=100)
    runs = Run.objects.order_by("pk")
    failed = runs.filter(status="failed")
    assert failed.count() == 1
    assert runs.count() == 7  # depths 0..5 run, depth 6 is refused
    run = failed.get()
    assert run.error_code == "DEPTH_LIMIT"
    assert "depth limit" in run.error.lower() and "limit 5" in run.error
    assert run.action_runs.count() == 0
    lead.refresh_from_db()
    assert lead.contact_name == "start" + "x" * 6


# --- the step graph ----------------------------------------------------------------------------


def test_parallel_branches_skip_allow_failure_and_join(drain: Any) -> None:
    deal = Deal.objects.create(name="G")
    workflow_save(
        document={
            "slug": "graph",
            "name": "Graph",
            "triggers": [{"event_type": "deal.won"}],
            "steps": [
                {
                    "key": "a",
                    "type": "add_note",
                    "after": [],
                    "config": {"entity_type": "deal", "entity_id": "{{deal_id}}", "note": "a"},
                },
                {
                    "key": "b",
                    "type": "add_note",
                    "after": [],
                    "conditions": {"field": "amount", "operator": "gt", "value": 100},
                    "config": {"entity_type": "deal", "entity_id": "{{deal_id}}", "note": "b"},
                },
                {
                    "key": "c",
                    "type": "validate",
                    "after": [],
                    "allow_failure": True,
                    "config": {
                        "condition": {"field": "amount", "operator": "gt", "value": 100},
                        "message": "amount too small",
                    },
                },
                {
                    "key": "join",
                    "type": "add_note",
                    "after": ["a", "b", "c"],
                    "config": {
                        "entity_type": "deal",
                        "entity_id": "{{deal_id}}",
                        "note": (
                            "join a={{steps.a.status}} b={{steps.b.status}} c={{steps.c.status}}"
                        ),
                    },
                },
            ],
        }
    )
    emit("deal.won", {"deal_id": deal.pk, "amount": 5})
    drain()
    run = Run.objects.get()
    statuses = dict(run.action_runs.values_list("step_key", "status"))
    assert statuses == {"a": "completed", "b": "skipped", "c": "failed", "join": "completed"}
    assert run.status == "completed"
    assert sorted(notes_on(deal)) == ["a", "join a=completed b=skipped c=failed"]
    assert run.action_runs.get(step_key="c").error == "amount too small"


def test_failure_cancels_downstream_and_retry_resumes_from_the_failed_step(
    api: APIClient, drain: Any
) -> None:
    deal = Deal.objects.create(name="R")
    workflow_save(
        document={
            "slug": "retry",
            "name": "Retry",
            "triggers": [{"event_type": "deal.won"}],
            "steps": [
                {
                    "key": "first",
                    "type": "add_note",
                    "config": {"entity_type": "deal", "entity_id": "{{deal_id}}", "note": "first"},
                },
                {
                    "key": "check",
                    "type": "update_field",
                    "config": {
                        "entity_type": "deal",
                        "entity_id": "{{deal_id}}",
                        "field": "stage",
                        "value": "{{stage}}",
                    },
                },
                {
                    "key": "last",
                    "type": "add_note",
                    "config": {"entity_type": "deal", "entity_id": "{{deal_id}}", "note": "last"},
                },
            ],
        }
    )
    emit("deal.won", {"deal_id": deal.pk, "stage": "not-a-stage"})
    drain()
    run = Run.objects.get()
    assert run.status == "failed" and run.error_code == "INVALID_VALUE"
    statuses = dict(run.action_runs.values_list("step_key", "status"))
    assert statuses == {"first": "completed", "check": "failed", "last": "cancelled"}
    # An operator fixes the data, then retries from the failed step.
    Run.objects.filter(pk=run.pk).update(context={**run.context, "stage": "won"})
    response = api.post(f"/api/v1/runs/{run.pk}/retry/")
    assert response.status_code == 200, response.content
    drain()
    run.refresh_from_db()
    assert run.status == "completed"
    assert sorted(notes_on(deal)) == ["first", "last"]  # "first" did not run again
    deal.refresh_from_db()
    assert deal.stage == "won"


def test_retry_policy_backs_off_then_succeeds(drain: Any) -> None:
    workflow_save(
        document={
            "slug": "flaky",
            "name": "Flaky",
            "triggers": [{"event_type": "x.flaky"}],
            "steps": [
                {
                    "key": "f",
                    "type": "test_flaky",
                    "config": {"fail_times": 2},
                    "retry": {"max_attempts": 3, "backoff_seconds": 10, "max_backoff_seconds": 60},
                }
            ],
        }
    )
    start = dt.datetime(2026, 5, 1, 12, 0, tzinfo=dt.UTC)
    with time_machine.travel(start, tick=False) as traveller:
        emit("x.flaky", {})
        drain()
        step = ActionRun.objects.get()
        assert step.status == "pending" and step.attempts == 1
        first_wait = (step.wake_at - start).total_seconds()
        assert 5 <= first_wait <= 10  # half to full of 10s (jittered)
        traveller.shift(dt.timedelta(seconds=11))
        drain()
        step.refresh_from_db()
        assert step.attempts == 2 and step.status == "pending"
        assert 10 <= (step.wake_at - start).total_seconds() - 11 <= 20
        traveller.shift(dt.timedelta(seconds=21))
        drain()
    step.refresh_from_db()
    assert step.status == "completed" and step.attempts == 3
    assert step.output == {"attempt": 3}


def test_retries_exhausted_dead_letter(drain: Any) -> None:
    workflow_save(
        document={
            "slug": "dead",
            "name": "Dead",
            "triggers": [{"event_type": "x.dead"}],
            "steps": [
                {
                    "key": "f",
                    "type": "test_flaky",
                    "config": {"fail_times": 9},
                    "retry": {"max_attempts": 2, "backoff_seconds": 0, "max_backoff_seconds": 0},
                }
            ],
        }
    )
    emit("x.dead", {})
    drain()
    step = ActionRun.objects.get()
    assert step.status == "failed" and step.attempts == 2
    assert step.error_code == "DEAD_LETTER"
    assert Run.objects.get().status == "failed"


# --- operations ------------------------------------------------------------------------------


def test_suspend_resume_cancel(api: APIClient, drain: Any) -> None:
    deal = Deal.objects.create(name="Ops")
    workflow_save(
        document={
            "slug": "ops",
            "name": "Ops",
            "triggers": [{"event_type": "deal.won"}],
            "steps": [
                {
                    "key": "note",
                    "type": "add_note",
                    "config": {"entity_type": "deal", "entity_id": "{{deal_id}}", "note": "ran"},
                }
            ],
        }
    )
    with transaction.atomic():
        emit("deal.won", {"deal_id": deal.pk})
    event = Event.objects.get(type="deal.won")
    run_id = services.event_dispatch(event_id=event.pk, advance=False)[0]
    assert api.post(f"/api/v1/runs/{run_id}/suspend/").json()["status"] == "suspended"
    services.run_advance(run_id=run_id)
    assert notes_on(deal) == []
    assert api.post(f"/api/v1/runs/{run_id}/resume/").json()["status"] == "running"
    drain()
    assert notes_on(deal) == ["ran"]
    assert Run.objects.get(pk=run_id).status == "completed"
    response = api.post(f"/api/v1/runs/{run_id}/cancel/")
    assert response.status_code == 409 and response.json()["error"]["code"] == "INVALID_RUN_STATE"

    emit("deal.won", {"deal_id": deal.pk})
    event = Event.objects.filter(type="deal.won").latest("pk")
    second = services.event_dispatch(event_id=event.pk, advance=False)[0]
    body = api.post(f"/api/v1/runs/{second}/cancel/").json()
    assert body["status"] == "cancelled"
    assert [s["status"] for s in body["action_runs"]] == ["cancelled"]
    drain()
    assert notes_on(deal) == ["ran"]
    history = api.get(f"/api/v1/runs/{run_id}/history/").json()["history"]
    assert history[0]["what"] == "run.created"
    assert history[-1]["what"] == "run.completed"


def test_manual_execute_and_run_filters(api: APIClient, drain: Any) -> None:
    deal = Deal.objects.create(name="Manual")
    workflow = note_workflow("manual", "deal.won", "by hand {{who}}")
    workflow_save(document={**QUALIFY_HIGH_VALUE_LEADS})
    response = api.post(
        f"/api/v1/workflows/{workflow.pk}/execute/",
        {"payload": {"deal": {"id": deal.pk}, "who": "ops"}},
        format="json",
    )
    assert response.status_code == 202
    drain()
    assert notes_on(deal) == ["by hand ops"]
    listed = api.get("/api/v1/runs/", {"workflow": "manual", "status": "completed"}).json()
    assert [r["id"] for r in listed["results"]] == [response.json()["id"]]
    assert api.get("/api/v1/runs/", {"workflow": "qualify-high-value-leads"}).json()["count"] == 0
    detail = api.get(f"/api/v1/runs/{response.json()['id']}/").json()
    assert detail["action_runs"][0]["input"]["note"] == "by hand ops"


def test_delay_until_a_date_from_the_context(drain: Any) -> None:
    workflow_save(
        document={
            "slug": "until",
            "name": "Until",
            "triggers": [{"event_type": "deal.won"}],
            "steps": [{"key": "wait", "type": "delay", "config": {"until": "{{close_date}}"}}],
        }
    )
    with time_machine.travel(dt.datetime(2026, 1, 1, tzinfo=dt.UTC), tick=False) as traveller:
        emit("deal.won", {"close_date": "2026-01-03"})
        drain()
        step = ActionRun.objects.get()
        assert step.status == "waiting"
        assert step.wake_at == dt.datetime(2026, 1, 3, tzinfo=dt.UTC)
        traveller.move_to(dt.datetime(2026, 1, 3, 0, 0, 1, tzinfo=dt.UTC))
        drain()
    step.refresh_from_db()
    assert step.status == "completed"


@pytest.mark.postgres  # PostgreSQL's statement_timeout
def test_an_atomic_step_past_its_timeout_fails_with_timeout(drain: Any) -> None:
    workflow_save(
        document={
            "slug": "slowdb",
            "name": "Slow DB",
            "triggers": [{"event_type": "x.slow"}],
            "steps": [
                {
                    "key": "slow",
                    "type": "test_db_sleep",
                    "config": {"seconds": 3},
                    "timeout_seconds": 1,
                },
                {"key": "after", "type": "delay", "config": {"for": 0}},
            ],
        }
    )
    emit("x.slow", {})
    drain()
    step = ActionRun.objects.get(step_key="slow")
    assert step.status == "failed" and step.error_code == "TIMEOUT"
    assert "timeout of 1s" in step.error
    assert Run.objects.get().status == "failed"


def test_rerun_starts_the_event_again_on_the_current_version(api: APIClient, drain: Any) -> None:
    deal = Deal.objects.create(name="Again")
    document = {
        "slug": "again",
        "name": "Again",
        "triggers": [{"event_type": "deal.won"}],
        "steps": [
            {
                "key": "note",
                "type": "add_note",
                "config": {"entity_type": "deal", "entity_id": "{{deal_id}}", "note": "v1"},
            }
        ],
    }
    workflow = workflow_save(document=document)
    emit("deal.won", {"deal_id": deal.pk})
    drain()
    first = Run.objects.get()
    document["steps"][0]["config"]["note"] = "v2"
    workflow_save(document=document, workflow=workflow)
    response = api.post(f"/api/v1/runs/{first.pk}/rerun/")
    assert response.status_code == 200, response.content
    drain()
    second = Run.objects.get(rerun_of=first)
    assert second.version.number == 2 and second.status == "completed"
    assert second.event_id == first.event_id
    assert sorted(notes_on(deal)) == ["v1", "v2"]
