"""A list of 100,000 tasks: the inbox pages and the API list read a page of them with a
fixed number of queries (no query per row), whoever looks and whatever the filters."""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.models import Group
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from rest_framework.test import APIClient

from tasks_inbox.lifecycles import lifecycle_get
from tasks_inbox.models import Queue, Task

ROWS = 100_000
MAX_QUERIES = 12

# 100,000 rows: a PostgreSQL-sized list (setting it up on SQLite takes minutes).
pytestmark = [pytest.mark.postgres, pytest.mark.django_db]


@pytest.fixture
def crowd(make_user: Any) -> dict[str, Any]:
    agent = make_user("agent", groups=("Desk",))
    manager = make_user("manager")
    staff = make_user("staff", staff=True)
    desk = Group.objects.get(name="Desk")
    Queue.objects.create(group=desk).managers.add(manager)
    lifecycle = lifecycle_get("task")
    now = timezone.now()
    started = time.monotonic()
    # bulk_create bypasses signals and services: fine for reading them back
    Task.objects.bulk_create(
        (
            Task(
                title=f"Task {n}",
                task_type=f"type{n % 7}",
                queue=desk,
                assignee=agent if n % 3 else None,
                assigned_at=now if n % 3 else None,
                priority=(10, 20, 30, 40)[n % 4],
                due_at=now + timedelta(minutes=n - 50_000),
                lifecycle=lifecycle,
                state="new",
                is_open=True,
                created_at=now,
                updated_at=now,
            )
            for n in range(ROWS)
        ),
        batch_size=5000,
    )
    return {
        "agent": agent,
        "manager": manager,
        "staff": staff,
        "seconds": time.monotonic() - started,
    }


def counted(call: Any) -> tuple[Any, int]:
    with CaptureQueriesContext(connection) as queries:
        response = call()
    return response, len(queries)


def test_inbox_pages_and_api_list_use_a_bounded_number_of_queries(
    crowd: dict[str, Any], django_assert_max_num_queries: Any
) -> None:
    assert Task.objects.count() == ROWS
    pages = {}
    for role, url in [
        ("agent", "/inbox/"),
        ("agent", "/inbox/queues/"),
        ("manager", "/inbox/team/"),
        ("staff", "/inbox/team/?sort=due"),
        ("agent", "/inbox/?overdue=true&priority=urgent&sort=-created"),
        ("manager", "/inbox/team/?assignee=none&task_type=type3"),
    ]:
        client = Client()
        client.force_login(crowd[role])
        with django_assert_max_num_queries(MAX_QUERIES):
            response, queries = counted(lambda client=client, url=url: client.get(url))
        assert response.status_code == 200
        assert response.content.decode().count('id="task-row-') == 25
        pages[f"{role} {url}"] = queries

    api_counts = {}
    for role, query in [
        ("agent", ""),
        ("manager", "?page_size=100&sort=created"),
        ("staff", "?sort=due&open=true"),
        ("agent", "?overdue=true"),
    ]:
        api = APIClient()
        api.force_authenticate(crowd[role])
        with django_assert_max_num_queries(MAX_QUERIES):
            response, queries = counted(
                lambda api=api, query=query: api.get(f"/api/v1/tasks/{query}")
            )
        assert response.status_code == 200, response.content
        assert len(response.json()["results"]) in (50, 100)
        api_counts[f"{role} {query or '(default)'}"] = queries

    # the same count for a page of 10 rows and a page of 100: nothing per row
    api = APIClient()
    api.force_authenticate(crowd["staff"])
    _, small = counted(lambda: api.get("/api/v1/tasks/?page_size=10"))
    _, large = counted(lambda: api.get("/api/v1/tasks/?page_size=100"))
    assert small == large
    print(
        f"\n{ROWS} tasks bulk-created in {crowd['seconds']:.1f}s; "
        f"queries per page: {pages}; per API list: {api_counts}"
    )
