"""Operations by hand are audited: each records its actor and the status it moved the run
from and to, in the operation's transaction, and shows in the run's history and admin."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import transaction
from rest_framework.test import APIClient

from automation import services
from automation.events import emit
from automation.models import Event, Run, RunOperation
from crm.models import Deal
from tests.test_engine import note_workflow

pytestmark = pytest.mark.postgres


def dispatched_run(deal: Deal) -> int:
    with transaction.atomic():
        emit("deal.won", {"deal": {"id": deal.pk}})
    event = Event.objects.filter(type="deal.won").latest("pk")
    return services.event_dispatch(event_id=event.pk, advance=False)[0]


def test_each_operation_records_its_actor_and_statuses(
    api: APIClient, admin_user: Any, drain: Any
) -> None:
    note_workflow("audited", "deal.won", "ran")
    deal = Deal.objects.create(name="Audited")
    run_id = dispatched_run(deal)

    assert api.post(f"/api/v1/runs/{run_id}/suspend/").status_code == 200
    assert api.post(f"/api/v1/runs/{run_id}/resume/").status_code == 200
    assert api.post(f"/api/v1/runs/{run_id}/cancel/").status_code == 200
    rerun = api.post(f"/api/v1/runs/{run_id}/rerun/")
    assert rerun.status_code == 200
    new_run = rerun.json()["id"]

    rows = list(RunOperation.objects.filter(run_id=run_id).values_list(
        "kind", "actor__username", "from_status", "to_status", "new_run"
    ))  # fmt: skip
    assert rows == [
        ("suspend", admin_user.username, "pending", "suspended", None),
        ("resume", admin_user.username, "suspended", "running", None),
        ("cancel", admin_user.username, "running", "cancelled", None),
        ("rerun", admin_user.username, "cancelled", "cancelled", new_run),
    ]
    history = api.get(f"/api/v1/runs/{run_id}/history/").json()["history"]
    operations = [entry for entry in history if entry.get("actor")]
    assert [entry["what"] for entry in operations] == [
        "run.suspend",
        "run.resume",
        "run.cancel",
        "run.rerun",
    ]
    assert operations[-1]["new_run"] == new_run


def test_a_refused_operation_records_nothing(api: APIClient, drain: Any) -> None:
    note_workflow("refused", "deal.won", "ran")
    run_id = dispatched_run(Deal.objects.create(name="Refused"))
    drain()
    assert Run.objects.get(pk=run_id).status == "completed"
    response = api.post(f"/api/v1/runs/{run_id}/cancel/")
    assert response.status_code == 409
    assert not RunOperation.objects.filter(run_id=run_id).exists()


def test_retry_by_the_admin_action_names_the_admin(
    client: Any, admin_user: Any, drain: Any
) -> None:
    note_workflow("by-admin", "deal.won", "ran")
    run_id = dispatched_run(Deal.objects.create(name="Admin"))
    client.force_login(admin_user)
    response = client.post(
        "/admin/automation/run/",
        {"action": "suspend", "_selected_action": [run_id]},
    )
    assert response.status_code == 302
    operation = RunOperation.objects.get(run_id=run_id)
    assert (operation.kind, operation.actor, operation.to_status) == (
        "suspend",
        admin_user,
        "suspended",
    )
    page = client.get(f"/admin/automation/run/{run_id}/change/")
    assert b"operations (by hand)" in page.content.lower()
