"""What users see, over HTTP: numbers and times as people read them, the home dashboard,
the notifications filter, Flowdesk branding, the automation history on a Lead's admin page,
run names, and pages that load nothing from another origin (Swagger UI from the sidecar,
our own favicon, no CDN script in the charts)."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.models import Group
from django.db import transaction
from django.test import Client
from django.utils import timezone

from automation.models import Run
from config.templatetags.flowdesk import (
    duration_text,
    exact_text,
    percent_text,
    relative_text,
    when,
)
from crm.demo import QUALIFY_HIGH_VALUE_LEADS
from crm.models import Lead
from tasks_inbox.models import Notification, Task
from tasks_inbox.services import task_create
from workflows.services import workflow_save

pytestmark = pytest.mark.django_db

OTHER_ORIGIN = re.compile(r"""(?:src|href)=["'](?:https?:)?//""", re.IGNORECASE)


# --- the helpers ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (None, "-"),
        ("", "-"),
        (0, "0 s"),
        (0.25, "0.25 s"),
        (45, "45 s"),
        (61, "1 min 1 s"),
        (459.0, "7 min 39 s"),
        (5400, "1 h 30 min"),
        (14400, "4 h"),
        (86400 * 2 + 3 * 3600 + 5, "2 d 3 h"),
        (timedelta(minutes=90), "1 h 30 min"),
        (-120, "-2 min"),
    ],
)
def test_durations_read_as_units(value: Any, text: str) -> None:
    assert duration_text(value) == text


def test_shares_and_moments() -> None:
    assert percent_text(None) == "-" and percent_text(75.0) == "75%"
    assert percent_text(97.456) == "97.5%" and percent_text(1 / 3, ratio=True) == "33.3%"
    now = timezone.now()
    assert relative_text(now + timedelta(minutes=52), now) == "in 52 minutes"
    assert relative_text(now - timedelta(hours=3), now) == "3 hours ago"
    assert relative_text(now - timedelta(seconds=10), now) == "just now"
    assert relative_text(now - timedelta(days=1), now) == "1 day ago"
    moment = now - timedelta(hours=3)
    html = str(when(moment))
    assert html.startswith(f'<time datetime="{moment.isoformat()}" title="{exact_text(moment)}"')
    assert html.endswith(">3 hours ago</time>") and when(None) == "-"


# --- pages ------------------------------------------------------------------------------


@pytest.fixture
def lead_with_history(drain: Any, make_user: Any) -> dict[str, Any]:
    owner = make_user("olga", groups=("Sales",))
    workflow_save(document=QUALIFY_HIGH_VALUE_LEADS)
    with transaction.atomic():
        lead = Lead.objects.create(
            company_name="Initech", annual_revenue=2_000_000, budget=90_000, owner=owner
        )
    drain()
    return {
        "lead": lead,
        "owner": owner,
        "run": Run.objects.get(workflow__slug=(QUALIFY_HIGH_VALUE_LEADS["slug"])),
    }


def test_run_names_read_as_such(lead_with_history: dict[str, Any]) -> None:
    run = lead_with_history["run"]
    assert str(run) == f"Run {run.pk} of workflow 'Auto-qualify high-value leads'"


def test_lead_admin_shows_what_automation_did(
    lead_with_history: dict[str, Any], admin_user: Any
) -> None:
    lead, run = lead_with_history["lead"], lead_with_history["run"]
    client = Client()
    client.force_login(admin_user)
    html = client.get(f"/admin/crm/lead/{lead.pk}/change/").content.decode()
    assert "What automation did" in html
    section = html[html.index('<div class="automation-history">') :]
    assert f"/admin/automation/run/{run.pk}/change/" in section
    assert f"Run {run.pk} of workflow &#x27;Auto-qualify high-value leads&#x27;" in section
    assert "Auto-qualified: revenue" in section  # the note the workflow wrote
    task = Task.objects.get(title="Follow up with Initech")
    assert f"/admin/tasks_inbox/task/{task.pk}/change/" in section
    assert 'Runs <span class="quiet">(1)' in section
    # a lead nothing happened to says so
    quiet = Lead.objects.create(company_name="Nobody")
    empty = client.get(f"/admin/crm/lead/{quiet.pk}/change/").content.decode()
    assert "No workflow has run on it." in empty and "No tasks." in empty
    # the add page has no history section (nothing to show yet)
    assert "What automation did" not in client.get("/admin/crm/lead/add/").content.decode()


def test_admin_and_login_say_flowdesk(admin_user: Any) -> None:
    login = Client().get("/admin/login/").content.decode()
    assert "Django administration" not in login and "Django site admin" not in login
    assert '<div id="site-name"><a href="/admin/">' in login and "Flowdesk" in login
    client = Client()
    client.force_login(admin_user)
    index = client.get("/admin/").content.decode()
    assert "<title>Workflows, runs and tasks | Flowdesk admin</title>" in index
    page = Client().get("/accounts/login/").content.decode()
    assert "<title>Log in · Flowdesk</title>" in page


def test_favicon_is_ours_and_served() -> None:
    client = Client()
    response = client.get("/favicon.ico")
    assert response.status_code == 301 and response["Location"].endswith("favicon.svg")
    icon = client.get(response["Location"])
    assert icon.status_code == 200 and b"<svg" in b"".join(icon.streaming_content)
    assert 'rel="icon" href="/static/favicon.svg"' in client.get("/").content.decode()


def test_api_docs_load_swagger_ui_from_the_sidecar(admin_user: Any) -> None:
    client = Client()
    client.force_login(admin_user)
    html = client.get("/api/docs/").content.decode()
    assert "/static/drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js" in html
    assert not OTHER_ORIGIN.search(html), OTHER_ORIGIN.search(html)
    bundle = client.get("/static/drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js")
    assert bundle.status_code == 200


def test_charts_load_no_cdn_script(lead_with_history: dict[str, Any], admin_user: Any) -> None:
    client = Client()
    client.force_login(admin_user)
    for path in ("/monitoring/", "/inbox/sla/"):
        html = client.get(path).content.decode()
        assert html.count('class="pygal-chart"') == 3
        assert "kozea.github.io" not in html and not OTHER_ORIGIN.search(html)
        assert '<script src="/static/js/charts.js" defer></script>' in html
    assert client.get("/static/js/charts.js").status_code == 200


def test_home_is_a_dashboard(
    lead_with_history: dict[str, Any], make_user: Any, admin_user: Any
) -> None:
    owner = lead_with_history["owner"]
    task_create(
        title="Call back the printer vendor",
        assignee=owner,
        due_at=timezone.now() - timedelta(hours=2),
    )
    task_create(title="Sort the claims", queue=Group.objects.get(name="Sales"), routing="claim")
    Notification.objects.create(recipient=owner, message="Look at the Initech lead")
    agent = Client()
    agent.force_login(owner)
    html = agent.get("/").content.decode()
    assert "<strong>2</strong> open" in html and "<strong>1</strong> overdue" in html
    assert "<strong>1</strong> to claim" in html
    assert "Call back the printer vendor" in html and "hours ago" in html
    assert "Look at the Initech lead" in html
    assert 'id="dash-runs"' not in html and 'id="dash-failures"' not in html

    staff = Client()
    staff.force_login(admin_user)
    html = staff.get("/").content.decode()
    assert 'id="dash-runs"' in html and 'id="dash-failures"' in html
    assert "/admin/workflows/workflow/add/" in html and "1 workflow" in html

    anonymous = Client().get("/").content.decode()
    assert 'id="home-login"' in anonymous and 'id="dash-tasks"' not in anonymous


def test_first_workflow_is_offered_to_staff(admin_user: Any) -> None:
    client = Client()
    client.force_login(admin_user)
    html = client.get("/").content.decode()
    assert (
        'href="/admin/workflows/workflow/add/" id="build-first-workflow">'
        "Build your first workflow</a>"
    ) in html


def test_notifications_filter_and_mark_all_read(make_user: Any) -> None:
    user = make_user("nina")
    for n in range(3):
        Notification.objects.create(recipient=user, message=f"note {n}")
    client = Client()
    client.force_login(user)
    unread = client.get("/inbox/notifications/?unread=1").content.decode()
    assert 'id="filter-unread" class="active" aria-current="page"' in unread
    assert 'id="filter-all" class=""' in unread
    assert '<input type="hidden" name="unread" value="1">' in unread
    everything = client.get("/inbox/notifications/").content.decode()
    assert 'id="filter-all" class="active" aria-current="page"' in everything

    fragment = client.post(
        "/inbox/notifications/read/", {"unread": "1"}, HTTP_HX_REQUEST="true"
    ).content.decode()
    assert "No unread notifications." in fragment and "note 1" not in fragment
    assert Notification.objects.filter(recipient=user, read_at__isnull=True).count() == 0
    plain = client.post("/inbox/notifications/read/", {"unread": "1"})
    assert plain["Location"] == "/inbox/notifications/?unread=1"
    assert "No unread notifications." in client.get(plain["Location"]).content.decode()


def test_no_none_percent_and_durations_with_units(admin_user: Any, make_user: Any) -> None:
    from tasks_inbox.sla.configs import sla_config_save

    Group.objects.create(name="Quiet")
    sla_config_save(document={"name": "Quiet queue", "queue": "Quiet", "target": "4h"})
    client = Client()
    client.force_login(admin_user)
    for path in ("/inbox/sla/", "/monitoring/"):
        html = client.get(path).content.decode()
        assert "None%" not in html and "None" not in html
    sla = client.get("/inbox/sla/").content.decode()
    assert "<td>4 h</td>" in sla and "14400" not in sla
    assert '<td class="within"><span class="muted">no tasks</span></td>' in sla
    configs = client.get("/admin/tasks_inbox/slaconfig/").content.decode()
    assert '<td class="field-target_text">4 h</td>' in configs


def test_admin_lists_show_moments_and_durations(
    lead_with_history: dict[str, Any], admin_user: Any
) -> None:
    client = Client()
    client.force_login(admin_user)
    runs = client.get("/admin/automation/run/").content.decode()
    assert re.search(
        r'<td class="field-created"><time datetime="[^"]+" title="[^"]+">'
        r"just now</time></td>",
        runs,
    )
    assert re.search(r'<td class="field-took">(\d+(\.\d+)? s|0 s)</td>', runs), runs
    tasks = client.get("/admin/tasks_inbox/task/").content.decode()
    # due at the end of the day after tomorrow: 2 days and some hours, rounded either way
    assert re.search(r"in [23] days</time>", tasks), tasks
