"""Operations: monitoring API and page, Prometheus metrics, graph pictures."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.test import Client
from rest_framework.test import APIClient

from automation.events import emit
from automation.models import Run
from crm.models import Deal
from workflows.services import workflow_save

pytestmark = pytest.mark.django_db


@pytest.fixture
def some_runs(drain: Any) -> dict[str, Any]:
    deal = Deal.objects.create(name="M")
    workflow = workflow_save(
        document={
            "slug": "mon",
            "name": "Monitored",
            "triggers": [{"event_type": "deal.won"}],
            "steps": [
                {
                    "key": "note",
                    "type": "add_note",
                    "config": {"entity_type": "deal", "entity_id": "{{deal_id}}", "note": "n"},
                },
                {
                    "key": "check",
                    "type": "validate",
                    "config": {
                        "condition": {"field": "ok", "operator": "eq", "value": True},
                        "message": "not ok",
                    },
                },
                {"key": "wait", "type": "delay", "config": {"for": "1 day"}},
            ],
        }
    )
    for ok in (True, True, False):
        emit("deal.won", {"deal_id": deal.pk, "ok": ok})
    drain()
    return {"workflow": workflow, "deal": deal}


def test_monitoring_api(api: APIClient, some_runs: Any) -> None:
    active = api.get("/api/v1/monitoring/active-runs/").json()["results"]
    assert len(active) == 2 and {r["current_step"] for r in active} == {"wait"}
    metrics = api.get("/api/v1/monitoring/metrics/", {"hours": 1}).json()
    row = metrics["workflows"][0]
    assert row["workflow"] == "mon" and row["runs"] == 3
    assert row["by_status"] == {"waiting": 2, "failed": 1}
    assert row["failure_rate"] == 1.0  # of the finished runs, one failed
    assert metrics["outbox_lag_seconds"] == 0
    bottlenecks = api.get("/api/v1/monitoring/bottlenecks/").json()
    assert bottlenecks["failing_steps"][0]["step"] == "check"
    assert bottlenecks["failing_steps"][0]["failed"] == 1
    assert {s["step"] for s in bottlenecks["slowest_steps"]} >= {"note", "check"}
    bad = api.get("/api/v1/monitoring/metrics/", {"hours": "x"})
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "VALIDATION_ERROR"


def test_monitoring_needs_staff(make_user: Any) -> None:
    client = APIClient()
    client.force_authenticate(make_user("agent"))
    assert client.get("/api/v1/monitoring/metrics/").status_code == 403


def test_monitoring_page_renders_charts(client: Client, admin_user: Any, some_runs: Any) -> None:
    client.force_login(admin_user)
    html = client.get("/monitoring/").content.decode()
    assert html.count("<svg") >= 3
    # the workflow's row: 3 runs, 1 failed, shares and durations humanised
    # (the failure rate is over finished runs: the one that finished failed)
    assert "<td>mon</td><td>3</td>" in html and "<td>100%</td>" in html
    assert re.search(r"<td>\d+(\.\d+)? s</td><td>\d+(\.\d+)? s</td></tr>", html)
    assert "None%" not in html
    assert 'id="active-runs"' in html and "not ok" not in html


def test_prometheus_metrics(client: Client, some_runs: Any, settings: Any) -> None:
    settings.DEBUG = True  # no token needed while DEBUG is on
    body = client.get("/metrics").content.decode()
    assert 'flowdesk_runs{status="failed",workflow="mon"} 1.0' in body
    assert 'flowdesk_events_total{source="emit"} 3.0' in body
    assert "flowdesk_step_duration_seconds_bucket" in body
    assert "flowdesk_outbox_lag_seconds 0.0" in body
    settings.METRICS_TOKEN = "s3cret"
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer s3cret").status_code == 200


def test_graph_pictures(api: APIClient, client: Client, admin_user: Any, some_runs: Any) -> None:
    workflow = some_runs["workflow"]
    body = api.get(f"/api/v1/workflows/{workflow.pk}/graph/").json()
    assert [n["key"] for n in body["nodes"]] == ["note", "check", "wait"]
    assert body["edges"] == [{"from": "note", "to": "check"}, {"from": "check", "to": "wait"}]
    assert body["svg"].startswith("<svg")
    failed = Run.objects.get(status="failed")
    run_graph = api.get(f"/api/v1/runs/{failed.pk}/graph/").json()
    assert {n["key"]: n["status"] for n in run_graph["nodes"]} == {
        "note": "completed",
        "check": "failed",
        "wait": "cancelled",
    }
    assert 'data-status="failed"' in run_graph["svg"]
    client.force_login(admin_user)
    page = client.get(f"/admin/automation/run/{failed.pk}/change/").content.decode()
    assert 'data-key="check" data-status="failed"' in page
    page = client.get(f"/admin/workflows/workflow/{workflow.pk}/change/").content.decode()
    assert 'data-key="wait"' in page
