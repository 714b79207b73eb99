"""The inbox pages: lists with filters, sorting and pagination; the task page with its form,
transitions, history, notes, related object and due times; htmx fragments for claim,
transitions, completion and notes; notifications with an unread badge."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.models import Group
from django.test import Client
from django.utils import timezone

from tasks_inbox import services
from tasks_inbox.models import Notification, Queue, Task

pytestmark = pytest.mark.django_db

HTMX = {"HTTP_HX_REQUEST": "true"}
FORM = {
    "fields": [
        {"name": "summary", "type": "textarea", "label": "Summary", "required": True},
        {"name": "score", "type": "number", "min": 1, "max": 5, "required": True},
        {
            "name": "channel",
            "type": "select",
            "choices": [{"value": "phone", "label": "Phone"}, "email"],
        },
        {"name": "tags", "type": "multiselect", "choices": ["vip", "new"]},
        {"name": "ok", "type": "boolean", "label": "Checked"},
        {"name": "on", "type": "date"},
    ]
}


@pytest.fixture
def agent(make_user: Any) -> Any:
    return make_user("agent", groups=("Desk",))


def browser(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client


def row_ids(html: str) -> list[int]:
    return [int(pk) for pk in re.findall(r'id="task-row-(\d+)"', html)]


def test_my_tasks_filters_sorting_and_pagination(agent: Any) -> None:
    now = timezone.now()
    created = [
        services.task_create(
            title=f"Task {n:02d}",
            assignee=agent,
            priority=["low", "medium", "high", "urgent"][n % 4],
            due_at=now + timedelta(hours=n - 5, minutes=30),
            task_type=f"t{n % 2}",
        )
        for n in range(30)
    ]
    client = browser(agent)
    first = client.get("/inbox/")
    assert first.status_code == 200
    html = first.content.decode()
    assert "30 tasks" in html and 'rel="prev"' not in html
    ids = row_ids(html)
    assert len(ids) == 25
    by_id = {t.pk: t for t in created}
    priorities = [by_id[pk].priority for pk in ids]
    assert priorities == sorted(priorities, reverse=True)
    next_link = re.search(r'rel="next" href="\?([^"]+)"', html)
    assert next_link is not None
    second = client.get("/inbox/?" + next_link.group(1).replace("&amp;", "&")).content.decode()
    assert len(row_ids(second)) == 5 and not set(row_ids(second)) & set(ids)
    assert 'rel="next"' not in second and 'rel="prev"' in second

    overdue = row_ids(client.get("/inbox/?overdue=true&sort=due").content.decode())
    assert [by_id[pk].title for pk in overdue] == [f"Task {n:02d}" for n in range(5)]
    urgent = row_ids(client.get("/inbox/?priority=urgent&task_type=t1").content.decode())
    assert {by_id[pk].title for pk in urgent} == {
        f"Task {n:02d}" for n in (3, 7, 11, 15, 19, 23, 27)
    }
    partial = client.get("/inbox/?priority=low", HTTP_HX_TARGET="task-list", **HTMX)
    assert partial.status_code == 200
    assert "<html" not in partial.content.decode()
    assert len(row_ids(partial.content.decode())) == 8


def test_claim_from_my_queues_with_htmx(agent: Any) -> None:
    desk = Group.objects.get(name="Desk")
    task = services.task_create(title="Waiting in the queue", queue=desk, routing="claim")
    client = browser(agent)
    page = client.get("/inbox/queues/").content.decode()
    assert row_ids(page) == [task.pk] and "Claim</button>" in page
    fragment = client.post(f"/inbox/tasks/{task.pk}/claim/", {"from": "list"}, **HTMX)
    assert fragment.status_code == 200
    html = fragment.content.decode()
    assert html.lstrip().startswith(f'<tr id="task-row-{task.pk}"')
    assert "You claimed the task." in html and "in_progress" in html
    assert row_ids(client.get("/inbox/queues/").content.decode()) == []
    assert row_ids(client.get("/inbox/").content.decode()) == [task.pk]
    again = client.post(f"/inbox/tasks/{task.pk}/claim/", {"from": "list"}, **HTMX)
    assert "You have already claimed this task." in again.content.decode()


def test_task_page_shows_form_transitions_history_related_and_due(agent: Any) -> None:
    from crm.models import Lead

    lead = Lead.objects.create(company_name="Umbrella Corp")
    task = services.task_create(
        title="Check the claim",
        assignee=agent,
        form=FORM,
        related=lead,
        due_at=timezone.now() + timedelta(hours=3),
        description="Look at the photos.",
    )
    Task.objects.filter(pk=task.pk).update(sla_due_at=timezone.now() + timedelta(hours=2))
    html = browser(agent).get(f"/inbox/tasks/{task.pk}/").content.decode()
    assert 'id="related-object">Umbrella Corp' in html
    assert 'data-action="start"' in html and 'data-action="cancel"' in html
    assert 'name="input_reason"' in html  # block needs a reason
    assert 'id="task-sla"' in html and "SLA due" in html
    assert "Look at the photos." in html
    for name in ("summary", "score", "channel", "tags", "ok", "on"):
        assert f'name="{name}"' in html
    assert '<option value="phone" >Phone</option>' in html
    assert "<fieldset disabled>" in html  # not in progress yet: nothing to submit
    assert "<strong>create</strong>" in html


def test_transition_and_complete_with_htmx(agent: Any) -> None:
    task = services.task_create(title="Do it", assignee=agent, form=FORM)
    client = browser(agent)
    started = client.post(f"/inbox/tasks/{task.pk}/transition/", {"action": "start"}, **HTMX)
    html = started.content.decode()
    assert html.lstrip().startswith('<div id="task-panel"')
    assert 'data-state="in_progress"' in html and 'id="complete-button"' in html

    invalid = client.post(
        f"/inbox/tasks/{task.pk}/complete/",
        {"summary": "", "score": "9", "channel": "phone"},
        **HTMX,
    )
    html = invalid.content.decode()
    assert 'data-field="summary">this field is required' in html
    assert 'data-field="score">must be at most 5' in html
    assert 'value="9"' in html  # what was typed is kept
    assert Task.objects.get(pk=task.pk).state == "in_progress"

    done = client.post(
        f"/inbox/tasks/{task.pk}/complete/",
        {
            "summary": "Done.",
            "score": "4",
            "channel": "email",
            "tags": ["vip", "new"],
            "ok": "on",
            "on": "2031-01-02",
        },
        **HTMX,
    )
    html = done.content.decode()
    assert "Task completed." in html and 'data-state="completed"' in html
    task.refresh_from_db()
    assert task.result == {
        "summary": "Done.",
        "score": 4,
        "channel": "email",
        "tags": ["vip", "new"],
        "ok": True,
        "on": "2031-01-02",
    }

    refused = client.post(f"/inbox/tasks/{task.pk}/transition/", {"action": "start"}, **HTMX)
    assert "is not allowed from the state" in refused.content.decode()


def test_plain_posts_redirect_with_a_message(agent: Any) -> None:
    task = services.task_create(title="No JS", assignee=agent)
    client = browser(agent)
    response = client.post(
        f"/inbox/tasks/{task.pk}/transition/",
        {"action": "block", "input_reason": "waiting for parts"},
    )
    assert response.status_code == 302 and response["Location"] == f"/inbox/tasks/{task.pk}/"
    page = client.get(response["Location"]).content.decode()
    assert "Done: block." in page and "waiting for parts" in page
    assert Task.objects.get(pk=task.pk).state == "blocked"


def test_notes_on_a_task(agent: Any) -> None:
    task = services.task_create(title="Noted", assignee=agent)
    client = browser(agent)
    fragment = client.post(f"/inbox/tasks/{task.pk}/notes/", {"note": "Called twice."}, **HTMX)
    html = fragment.content.decode()
    assert html.lstrip().startswith('<div id="task-notes"') and "Called twice." in html
    empty = client.post(f"/inbox/tasks/{task.pk}/notes/", {"note": "  "}, **HTMX)
    assert "write something" in empty.content.decode()
    assert "Called twice." in client.get(f"/inbox/tasks/{task.pk}/").content.decode()


def test_team_view_for_managers(agent: Any, make_user: Any) -> None:
    manager = make_user("lead")
    desk = Group.objects.get(name="Desk")
    Queue.objects.create(group=desk).managers.add(manager)
    for n in range(3):
        services.task_create(
            title=f"Desk {n}", queue=desk, due_at=timezone.now() - timedelta(hours=1)
        )
    html = browser(manager).get("/inbox/team/").content.decode()
    assert len(row_ids(html)) == 3
    assert "<td>agent</td><td>3</td>" in html
    assert "You manage no queues." in browser(agent).get("/inbox/team/").content.decode()


def test_notifications_badge_and_mark_read(agent: Any) -> None:
    for n in range(3):
        services.task_create(title=f"For you {n}", assignee=agent)
    client = browser(agent)
    html = client.get("/inbox/").content.decode()
    assert '<span class="badge" id="unread-badge">3</span>' in html
    page = client.get("/inbox/notifications/").content.decode()
    assert page.count('class="notification unread"') == 3
    first = Notification.objects.filter(recipient=agent).order_by("pk").first()
    fragment = client.post(f"/inbox/notifications/{first.pk}/read/", **HTMX).content.decode()
    assert f'id="notification-{first.pk}" class="notification "' in fragment
    assert 'hx-swap-oob="true"' in fragment and 'id="unread-badge">2<' in fragment
    everything = client.post("/inbox/notifications/read/", **HTMX).content.decode()
    assert "unread-badge" not in everything and 'id="notification-list"' in everything
    assert not Notification.objects.filter(recipient=agent, read_at__isnull=True).exists()
    assert client.post("/inbox/notifications/read/")["Location"] == "/inbox/notifications/"
