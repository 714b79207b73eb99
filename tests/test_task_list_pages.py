"""Keyset pages of the task lists (API and inbox pages): every task exactly once and in
order, forward and backward, also while tasks change between page loads; filters and
visibility on every page; a bad cursor answers 400 INVALID_CURSOR (the pages fall back to
the first page); the queries per page do not grow with depth."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.models import Group
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from tasks_inbox import services
from tasks_inbox.keyset import SORT_COLUMNS, sort_ordering
from tasks_inbox.models import Notification, Priority, Task
from tasks_inbox.selectors import tasks_visible_to
from tests.conftest import as_user

pytestmark = pytest.mark.django_db

PRIORITIES = [Priority.LOW, Priority.HIGH, Priority.URGENT]


def make_tasks(n: int, **kwargs: Any) -> list[Task]:
    """``n`` tasks with ties on every sort column and some without a due time."""
    now = timezone.now().replace(microsecond=0)
    dues = [None, now + timedelta(hours=1), now + timedelta(hours=2), now - timedelta(hours=1)]
    return [
        services.task_create(
            title=f"Task {i:02d}",
            priority=PRIORITIES[i % 3],
            due_at=dues[i % 4],
            routing="claim" if kwargs.get("queue") else None,
            **kwargs,
        )
        for i in range(n)
    ]


def expected_ids(queryset: Any, sort: str) -> list[int]:
    return list(queryset.order_by(*sort_ordering(sort)).values_list("id", flat=True))


def walk_api(client: Any, url: str) -> tuple[list[int], list[int]]:
    """Follow ``next`` to the end, then ``previous`` back to the start."""
    forward: list[int] = []
    pages = 0
    body: dict[str, Any] = {}
    while url:
        response = client.get(url)
        assert response.status_code == 200, response.content
        body = response.json()
        assert "count" not in body
        forward += [row["id"] for row in body["results"]]
        url, pages = body["next"], pages + 1
        assert pages < 100
    backward = [row["id"] for row in body["results"]]
    url = body["previous"]
    while url:
        body = client.get(url).json()
        backward = [row["id"] for row in body["results"]] + backward
        url = body["previous"]
    return forward, backward


@pytest.mark.parametrize("sort", list(SORT_COLUMNS))
def test_api_walks_every_task_once_in_order_both_ways(make_user: Any, sort: str) -> None:
    staff = make_user("boss", staff=True)
    make_tasks(23, queue=Group.objects.create(name="Desk"))
    forward, backward = walk_api(as_user(staff), f"/api/v1/tasks/?sort={sort}&page_size=4")
    assert forward == expected_ids(Task.objects.all(), sort)
    assert backward == forward


def test_api_ordering_alias_pages_the_same_way(make_user: Any) -> None:
    staff = make_user("boss", staff=True)
    make_tasks(9)
    forward, _ = walk_api(as_user(staff), "/api/v1/tasks/?ordering=-due_at&page_size=2")
    assert forward == expected_ids(Task.objects.all(), "-due")


def test_changes_between_page_loads_neither_repeat_nor_skip(make_user: Any) -> None:
    staff = make_user("boss", staff=True)
    tasks = make_tasks(20)
    client = as_user(staff)
    body = client.get("/api/v1/tasks/?page_size=5").json()
    seen = [row["id"] for row in body["results"]]
    # one task ahead moves behind the cursor, new tasks arrive on both sides of it
    ahead = Task.objects.exclude(pk__in=seen).order_by(*sort_ordering("priority")).last()
    assert ahead is not None
    long_ago = timezone.now() - timedelta(days=30)
    Task.objects.filter(pk=ahead.pk).update(priority=Priority.URGENT, due_at=long_ago)
    behind = services.task_create(title="Urgent new", priority=Priority.URGENT, due_at=long_ago)
    late = services.task_create(title="Low new", priority=Priority.LOW)
    url = body["next"]
    while url:
        body = client.get(url).json()
        seen += [row["id"] for row in body["results"]]
        url = body["next"]
    assert len(seen) == len(set(seen))
    unchanged = {t.pk for t in tasks} - {ahead.pk}
    assert unchanged <= set(seen) and late.pk in seen
    assert behind.pk not in seen  # it sorts before the rows already shown
    final = expected_ids(Task.objects.filter(pk__in=seen), "priority")
    assert [pk for pk in seen if pk != ahead.pk] == [pk for pk in final if pk != ahead.pk]


def test_every_page_keeps_filters_and_visibility(make_user: Any) -> None:
    agent = make_user("agent", groups=("Desk",))
    other = make_user("other", groups=("Other",))
    desk, elsewhere = Group.objects.get(name="Desk"), Group.objects.get(name="Other")
    make_tasks(14, queue=desk)
    make_tasks(10, queue=elsewhere)
    make_tasks(6, assignee=other)
    make_tasks(5, assignee=agent)
    client = as_user(agent)
    forward, backward = walk_api(client, "/api/v1/tasks/?sort=due&page_size=3")
    visible = tasks_visible_to(agent)
    assert forward == backward == expected_ids(visible, "due")
    assert not Task.objects.filter(pk__in=forward).filter(queue=elsewhere).exists()
    assert not Task.objects.filter(pk__in=forward, assignee=other).exists()
    urgent, _ = walk_api(client, "/api/v1/tasks/?priority=urgent&sort=-created&page_size=2")
    assert urgent == expected_ids(visible.filter(priority=Priority.URGENT), "-created")
    assert urgent


def test_bad_cursor_answers_400_invalid_cursor(make_user: Any) -> None:
    staff = make_user("boss", staff=True)
    make_tasks(6)
    client = as_user(staff)
    good = client.get("/api/v1/tasks/?page_size=2").json()["next"]
    cursor = re.search(r"cursor=([^&]+)", good).group(1)  # type: ignore[union-attr]
    for url in (
        "/api/v1/tasks/?cursor=garbage",
        f"/api/v1/tasks/?cursor={cursor[:-3]}xyz",
        f"/api/v1/tasks/?cursor={cursor}&sort=due",  # made for another sort
    ):
        response = client.get(url)
        assert response.status_code == 400, url
        assert response.json()["error"]["code"] == "INVALID_CURSOR"
    assert client.get(good).status_code == 200


def row_ids(html: str) -> list[int]:
    return [int(pk) for pk in re.findall(r'id="task-row-(\d+)"', html)]


def link(html: str, rel: str) -> str | None:
    found = re.search(rf'rel="{rel}" href="\?([^"]+)"', html)
    return "?" + found.group(1).replace("&amp;", "&") if found else None


def test_inbox_queue_page_walks_both_ways_and_keeps_filters(make_user: Any) -> None:
    agent = make_user("agent", groups=("Desk",))
    make_tasks(90, queue=Group.objects.get(name="Desk"))
    make_tasks(6, queue=Group.objects.create(name="Other"))
    client = Client()
    client.force_login(agent)
    url: str | None = "?sort=-due&priority=high"
    pages: list[str] = []
    while url:
        html = client.get("/inbox/queues/" + url).content.decode()
        pages.append(html)
        url = link(html, "next")
        if url:
            assert "sort=-due" in url and "priority=high" in url
    forward = [pk for html in pages for pk in row_ids(html)]
    claimable = Task.objects.filter(
        queue__name="Desk", assignee=None, is_open=True, priority=Priority.HIGH
    )
    assert len(pages) == 2 and len(forward) == 30
    assert forward == expected_ids(claimable, "-due")
    backward = row_ids(pages[-1])
    url = link(pages[-1], "prev")
    while url:
        html = client.get("/inbox/queues/" + url).content.decode()
        backward = row_ids(html) + backward
        url = link(html, "prev")
    assert backward == forward


def test_inbox_bad_cursor_falls_back_to_first_page(make_user: Any) -> None:
    agent = make_user("agent", groups=("Desk",))
    make_tasks(30, queue=Group.objects.get(name="Desk"))
    client = Client()
    client.force_login(agent)
    first = client.get("/inbox/queues/")
    broken = client.get("/inbox/queues/?cursor=not-a-cursor")
    assert broken.status_code == 200
    assert row_ids(broken.content.decode()) == row_ids(first.content.decode())
    assert "30 tasks" in first.content.decode()


def test_queries_per_page_do_not_grow_with_depth(
    make_user: Any, django_assert_num_queries: Any
) -> None:
    agent = make_user("agent", groups=("Desk",))
    make_tasks(80, queue=Group.objects.get(name="Desk"))
    api, page = as_user(agent), Client()
    page.force_login(agent)
    for get, url, nxt in (
        (api.get, "/api/v1/tasks/?page_size=5", lambda r: r.json()["next"]),
        (page.get, "/inbox/queues/", lambda r: "/inbox/queues/" + link(r.content.decode(), "next")),
    ):
        get(url)  # caches warm (content types, lifecycles)
        with CaptureQueriesContext(connection) as first:
            response = get(url)
        queries = len(first.captured_queries)
        assert queries > 0
        for _ in range(2):
            response = get(nxt(response))
        with django_assert_num_queries(queries):
            response = get(nxt(response))
        assert response.status_code == 200


def test_notifications_page_walks_older_and_newer(make_user: Any) -> None:
    agent = make_user("agent")
    stamp = timezone.now()
    made = [
        Notification.objects.create(
            recipient=agent, message=f"Note {n}", created_at=stamp - timedelta(minutes=n // 2)
        )
        for n in range(60)
    ]
    Notification.objects.create(recipient=make_user("other"), message="Not yours")
    client = Client()
    client.force_login(agent)

    def ids(html: str) -> list[int]:
        return [int(pk) for pk in re.findall(r'id="notification-(\d+)"', html)]

    html = client.get("/inbox/notifications/").content.decode()
    forward, pages = ids(html), [html]
    while url := link(html, "next"):
        html = client.get("/inbox/notifications/" + url).content.decode()
        forward += ids(html)
        pages.append(html)
    expected = list(
        Notification.objects.filter(recipient=agent)
        .order_by("-created_at", "-id")
        .values_list("id", flat=True)
    )
    assert len(pages) == 3 and forward == expected and len(made) == 60
    backward = ids(pages[-1])
    html = pages[-1]
    while url := link(html, "prev"):
        html = client.get("/inbox/notifications/" + url).content.decode()
        backward = ids(html) + backward
    assert backward == forward
    broken = client.get("/inbox/notifications/?cursor=broken").content.decode()
    assert ids(broken) == ids(pages[0])
