"""SLA configs through the API and the admin (validation with JSON paths), compliance (API,
page with charts, monitoring table), Prometheus figures, overdue queues, demo seeds."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
import time_machine
from django.contrib.auth.models import Group
from django.core.management import call_command
from django.test import Client, override_settings
from django.utils import timezone
from rest_framework.test import APIClient

from tasks_inbox import services
from tasks_inbox.models import Queue, SLAConfig, Task
from tasks_inbox.selectors import queues_by_overdue, sla_compliance, task_metrics
from tasks_inbox.sla.configs import sla_config_save
from tasks_inbox.sla.sweep import sla_sweep

pytestmark = [pytest.mark.django_db]

URL = "/api/v1/sla-configs/"
GOOD = {
    "name": "Claims",
    "queue": "Claims",
    "task_type": "claim",
    "target": "1h",
    "warning_after": "45m",
    "escalation_ladder": [
        {"after_percent": 150, "actions": [{"type": "remind"}, {"type": "notify_manager"}]},
        {
            "after": "3h",
            "actions": [
                {"type": "raise_priority", "to": "urgent"},
                {"type": "reassign", "user": "boss"},
            ],
        },
    ],
    "working_hours": {
        "days": [0, 1, 2, 3, 4],
        "start": "08:00",
        "end": "18:00",
        "time_zone": "Europe/Paris",
    },
}


@pytest.fixture
def claims(make_user: Any) -> dict[str, Any]:
    agent = make_user("agent", groups=("Claims",))
    manager = make_user("boss")
    group = Group.objects.get(name="Claims")
    Queue.objects.create(group=group).managers.add(manager)
    other = Group.objects.create(name="Other")
    Queue.objects.create(group=other)
    return {"agent": agent, "manager": manager, "queue": group, "other": other}


def fields_of(response: Any) -> dict[str, list[str]]:
    body = response.json()
    assert response.status_code == 400, body
    assert body["error"]["code"] == "VALIDATION_ERROR"
    return body["error"]["fields"]


def test_crud_round_trip(api: APIClient, claims: dict[str, Any]) -> None:
    created = api.post(URL, GOOD, format="json")
    assert created.status_code == 201, created.json()
    body = created.json()
    assert body["target"] == "01:00:00" and body["warning_after"] == "00:45:00"
    assert body["escalation_ladder"][1]["after"] == "03:00:00"
    assert body["specificity"] == "queue + task type"
    detail = api.get(f"{URL}{body['id']}/").json()
    assert detail == body
    # saving the read shape back changes nothing
    again = api.put(f"{URL}{body['id']}/", detail, format="json")
    assert again.status_code == 200 and again.json()["target"] == "01:00:00"
    names = [row["name"] for row in api.get(URL).json()["results"]]
    assert names == ["Assessment", "Claims", "Intake", "Review"]  # with the seeded defaults


def test_seeded_defaults(api: APIClient) -> None:
    rows = {row["name"]: row for row in api.get(URL).json()["results"]}
    assert {name: (row["task_type"], row["target"]) for name, row in rows.items()} == {
        "Intake": ("intake", "01:00:00"),
        "Assessment": ("assessment", "04:00:00"),
        "Review": ("review", "02:00:00"),
    }
    task = services.task_create(
        title="Intake: flood",
        task_type="intake",
        assignee=None,
        queue=Group.objects.create(name="Intake"),
    )
    assert task.sla_config.name == "Intake"
    assert task.sla_due_at == task.sla_started_at + timedelta(hours=1)


@pytest.mark.parametrize(
    ("change", "paths"),
    [
        ({"warning_after": "1h"}, ["warning_after"]),
        ({"target": "-5m"}, ["target"]),
        ({"target": "0"}, ["target"]),
        ({"target": "soon"}, ["target"]),
        ({"target": None}, ["target"]),
        ({"queue": "Nowhere"}, ["queue"]),
        ({"queue": None, "task_type": ""}, ["queue"]),
        ({"priority": "asap"}, ["priority"]),
        ({"start_state": "limbo"}, ["start_state"]),
        ({"start_state": "completed"}, ["start_state"]),
        (
            {"escalation_ladder": [{"after": "30m", "actions": [{"type": "remind"}]}]},
            ["escalation_ladder[0]"],
        ),
        (
            {
                "escalation_ladder": [
                    {"after": "2h", "actions": [{"type": "remind"}]},
                    {"after_percent": 150, "actions": [{"type": "remind"}]},
                ]
            },
            ["escalation_ladder[1]"],
        ),
        (
            {"escalation_ladder": [{"after": "2h", "after_percent": 200, "actions": []}]},
            ["escalation_ladder[0]", "escalation_ladder[0].actions"],
        ),
        (
            {
                "escalation_ladder": [
                    {"after": "2h", "actions": [{"type": "reassign", "user": "ghost"}]}
                ]
            },
            ["escalation_ladder[0].actions[0].user"],
        ),
        (
            {
                "escalation_ladder": [
                    {"after": "2h", "actions": [{"type": "reassign", "queue": "Nowhere"}]}
                ]
            },
            ["escalation_ladder[0].actions[0].queue"],
        ),
        (
            {"escalation_ladder": [{"after": "2h", "actions": [{"type": "page_the_ceo"}]}]},
            ["escalation_ladder[0].actions[0].type"],
        ),
        (
            {
                "working_hours": {
                    "days": [7],
                    "start": "18:00",
                    "end": "08:00",
                    "time_zone": "Mars/Olympus",
                }
            },
            ["working_hours.days", "working_hours.end", "working_hours.time_zone"],
        ),
        ({"name": "bad\x00name"}, ["name"]),
    ],
)
def test_validation_names_each_path(
    api: APIClient, claims: dict[str, Any], change: dict[str, Any], paths: list[str]
) -> None:
    response = api.post(URL, {**GOOD, **change}, format="json")
    assert sorted(fields_of(response)) == sorted(paths)
    assert not SLAConfig.objects.filter(name="Claims").exists()


def test_two_active_configs_cannot_share_a_target(api: APIClient, claims: dict[str, Any]) -> None:
    assert api.post(URL, GOOD, format="json").status_code == 201
    clash = api.post(URL, {**GOOD, "name": "Claims again"}, format="json")
    assert "same queue, task type and priority" in fields_of(clash)["task_type"][0]
    inactive = api.post(URL, {**GOOD, "name": "Claims draft", "is_active": False}, format="json")
    assert inactive.status_code == 201


def test_patch_recomputes_open_tasks(api: APIClient, claims: dict[str, Any]) -> None:
    config_id = api.post(URL, {**GOOD, "working_hours": None}, format="json").json()["id"]
    task = services.task_create(
        title="Leak", task_type="claim", queue=claims["queue"], assignee=claims["agent"]
    )
    assert task.sla_due_at == task.sla_started_at + timedelta(hours=1)
    clash = api.patch(f"{URL}{config_id}/", {"target": "2h"}, format="json")
    assert fields_of(clash) == {"escalation_ladder[1]": ["must come after the previous level"]}
    patched = api.patch(f"{URL}{config_id}/", {"target": "90m"}, format="json")
    assert patched.status_code == 200, patched.json()
    task.refresh_from_db()
    assert task.sla_due_at == task.sla_started_at + timedelta(minutes=90)


def test_delete_only_when_unused(api: APIClient, claims: dict[str, Any]) -> None:
    used = api.post(URL, GOOD, format="json").json()["id"]
    services.task_create(
        title="Leak", task_type="claim", queue=claims["queue"], assignee=claims["agent"]
    )
    refused = api.delete(f"{URL}{used}/")
    assert refused.status_code == 409
    assert refused.json()["error"]["code"] == "SLA_CONFIG_IN_USE"
    unused = api.post(URL, {**GOOD, "name": "Spare", "task_type": "spare"}, format="json").json()[
        "id"
    ]
    assert api.delete(f"{URL}{unused}/").status_code == 204
    assert api.get(f"{URL}{unused}/").json()["error"]["code"] == "NOT_FOUND"


def test_configs_need_staff(claims: dict[str, Any]) -> None:
    client = APIClient()
    client.force_authenticate(claims["manager"])
    assert client.get(URL).status_code == 403
    assert client.post(URL, GOOD, format="json").status_code == 403


# --- compliance ---------------------------------------------------------------------------


@pytest.fixture
def history(claims: dict[str, Any]) -> dict[str, Any]:
    """Four completed Claims tasks (10, 20, 30 and 90 minutes; the last breached), one
    cancelled, one open and overdue; one completed task of another queue's SLA."""
    agent = claims["agent"]
    sla_config_save(document={"name": "Claims", "queue": "Claims", "target": "1h"})
    sla_config_save(document={"name": "Other", "queue": "Other", "target": "1h"})
    start = timezone.now() - timedelta(hours=5)
    with time_machine.travel(start, tick=False) as clock:
        tasks = [
            services.task_create(title=f"Claim {m}", queue=claims["queue"], assignee=agent)
            for m in (10, 20, 30, 90)
        ]
        cancelled = services.task_create(title="Dropped", queue=claims["queue"], assignee=agent)
        services.task_create(title="Still open", queue=claims["queue"], assignee=agent)
        other = services.task_create(title="Elsewhere", queue=claims["other"], assignee=agent)
        for task in [*tasks, cancelled, other]:
            services.task_transition(task_id=task.pk, action="start", actor=agent)
        for minutes, task in zip((10, 20, 30), tasks[:3], strict=True):
            clock.move_to(start + timedelta(minutes=minutes))
            services.task_complete(task_id=task.pk, actor=agent)
        clock.move_to(start + timedelta(minutes=40))
        services.task_complete(task_id=other.pk, actor=agent)
        services.task_transition(task_id=cancelled.pk, action="cancel", actor=agent)
        clock.move_to(start + timedelta(minutes=61))
        assert sla_sweep().fired == 2  # the 90-minute task and the open one breach
        clock.move_to(start + timedelta(minutes=90))
        services.task_complete(task_id=tasks[3].pk, actor=agent)
    return claims


def test_compliance_api(api: APIClient, history: dict[str, Any]) -> None:
    body = api.get("/api/v1/monitoring/sla-compliance/", {"hours": 24}).json()
    rows = {row["name"]: row for row in body["configs"]}
    claims = rows["Claims"]
    assert (claims["total"], claims["met"], claims["within_target_pct"]) == (4, 3, 75.0)
    assert claims["breaches"] == 2
    assert claims["mean_seconds"] == 2250.0
    assert claims["p95_seconds"] == 4860.0  # percentile_cont over 600, 1200, 1800, 5400
    assert (rows["Other"]["total"], rows["Other"]["within_target_pct"]) == (1, 100.0)
    assert rows["Intake"]["total"] == 0 and rows["Intake"]["within_target_pct"] is None
    assert sum(day["total"] for day in body["daily"]) == 5
    one = api.get(
        "/api/v1/monitoring/sla-compliance/", {"config": claims["config_id"], "hours": 24}
    ).json()
    assert [row["name"] for row in one["configs"]] == ["Claims"]
    assert sum(day["total"] for day in one["daily"]) == 4
    old = api.get("/api/v1/monitoring/sla-compliance/", {"hours": 1}).json()
    assert {row["name"]: row["total"] for row in old["configs"]}["Claims"] == 0
    for bad in (
        {"hours": "x"},
        {"hours": 0},
        {"since": "yesterday"},
        {"config": "a"},
        {"since": "2030-01-01T00:00:00Z"},
    ):
        response = api.get("/api/v1/monitoring/sla-compliance/", bad)
        assert response.status_code == 400, bad
        assert response.json()["error"]["code"] == "VALIDATION_ERROR"


def test_compliance_is_for_staff_and_managers_within_their_sight(history: dict[str, Any]) -> None:
    client = APIClient()
    client.force_authenticate(history["manager"])  # manages Claims only
    body = client.get("/api/v1/monitoring/sla-compliance/").json()
    rows = {row["name"]: row for row in body["configs"]}
    assert rows["Claims"]["total"] == 4 and rows["Other"]["total"] == 0
    client.force_authenticate(history["agent"])
    denied = client.get("/api/v1/monitoring/sla-compliance/")
    assert denied.status_code == 403
    assert denied.json()["error"]["code"] == "PERMISSION_DENIED"
    assert APIClient().get("/api/v1/monitoring/sla-compliance/").status_code in (401, 403)


def test_compliance_page_with_charts(history: dict[str, Any], admin_user: Any) -> None:
    client = Client()
    client.force_login(history["manager"])
    page = client.get("/inbox/sla/")
    assert page.status_code == 200
    html = page.content.decode()
    assert html.count("<svg") == 3
    assert 'id="sla-compliance"' in html and '<td class="within">75%</td>' in html
    client.force_login(admin_user)
    html = client.get("/inbox/sla/", {"hours": 720}).content.decode()
    assert "/admin/tasks_inbox/slaconfig/" in html and "30 days" in html
    client.force_login(history["agent"])
    assert client.get("/inbox/sla/").status_code == 403
    assert Client().get("/inbox/sla/").status_code == 302  # to the login page


def test_monitoring_figures(history: dict[str, Any], admin_user: Any) -> None:
    rows = {row["name"]: row for row in sla_compliance(hours=24)}
    assert set(rows["Claims"]) == {
        "name",
        "total",
        "within_target_pct",
        "breaches",
        "mean_seconds",
        "p95_seconds",
    }
    assert rows["Claims"]["within_target_pct"] == 75.0
    assert queues_by_overdue(limit=5) == [{"queue": "Claims", "overdue": 1}]
    families = {family.name: family for family in task_metrics()}
    assert families["flowdesk_tasks"].type == "gauge"
    samples = {
        (s.labels["state"], s.labels["queue"]): s.value for s in families["flowdesk_tasks"].samples
    }
    assert samples == {
        ("completed", "Claims"): 4,
        ("cancelled", "Claims"): 1,
        ("new", "Claims"): 1,
        ("completed", "Other"): 1,
    }
    breaches = {
        s.labels["queue"]: s.value
        for s in families["flowdesk_sla_breaches"].samples
        if s.name == "flowdesk_sla_breaches_total"
    }
    assert breaches == {"Claims": 2}
    client = Client()
    client.force_login(admin_user)
    with override_settings(METRICS_TOKEN="sla-metrics"):
        metrics = client.get("/metrics", HTTP_AUTHORIZATION="Bearer sla-metrics").content.decode()
    assert 'flowdesk_sla_breaches_total{queue="Claims"} 2.0' in metrics
    assert 'flowdesk_tasks{queue="Claims",state="completed"} 4.0' in metrics
    monitoring = client.get("/monitoring/").content.decode()
    assert "SLA compliance" in monitoring and "<td>75%</td>" in monitoring


# --- admin and seeds ----------------------------------------------------------------------


def admin_form(**overrides: Any) -> dict[str, Any]:
    data = {
        "name": "Claims",
        "description": "",
        "is_active": "on",
        "queue": str(Group.objects.get(name="Claims").pk),
        "task_type": "claim",
        "priority": "",
        "target": "01:00:00",
        "warning_after": "00:45:00",
        "escalation_ladder": json.dumps(GOOD["escalation_ladder"]),
        "start_state": "",
        "pause_while_blocked": "on",
        "working_hours": "",
    }
    data.update(overrides)
    return data


def test_admin_validates_like_the_api(admin_user: Any, claims: dict[str, Any]) -> None:
    client = Client()
    client.force_login(admin_user)
    url = "/admin/tasks_inbox/slaconfig/add/"
    page = client.get(url).content.decode()
    assert "the most specific wins" in page
    bad_ladder = [{"after": "30m", "actions": [{"type": "remind"}]}]
    refused = client.post(
        url, admin_form(warning_after="02:00:00", escalation_ladder=json.dumps(bad_ladder))
    )
    assert refused.status_code == 200
    errors = refused.context["adminform"].form.errors
    assert "must be less than the target" in errors["warning_after"][0]
    assert errors["escalation_ladder"][0].startswith(
        "escalation_ladder[0]: an escalation level cannot come before the target"
    )
    saved = client.post(url, admin_form())
    assert saved.status_code == 302, saved.context["adminform"].form.errors
    config = SLAConfig.objects.get(name="Claims")
    assert config.escalation_ladder[1] == {
        "after": "03:00:00",
        "actions": [
            {"type": "raise_priority", "to": "urgent"},
            {"type": "reassign", "user": "boss"},
        ],
    }
    task = services.task_create(
        title="Leak", task_type="claim", queue=claims["queue"], assignee=claims["agent"]
    )
    change = client.post(
        f"/admin/tasks_inbox/slaconfig/{config.pk}/change/", admin_form(target="01:30:00")
    )
    assert change.status_code == 302
    task.refresh_from_db()
    assert task.sla_due_at == task.sla_started_at + timedelta(minutes=90)
    assert client.get(f"/admin/tasks_inbox/slaconfig/{config.pk}/delete/").status_code == 403


def test_seed_demo_adds_the_sla_seeds_once() -> None:
    call_command("seed_demo", verbosity=0)
    call_command("seed_demo", verbosity=0)
    names = set(SLAConfig.objects.values_list("name", flat=True))
    assert names == {"Intake", "Assessment", "Review", "Review queue"}
    intake = Task.objects.filter(task_type="intake").first()
    assert intake is not None and intake.sla_config.name == "Intake"
    from workflows.models import Workflow

    assert Workflow.objects.filter(slug="sla-breach-alert", is_active=True).exists()
