"""Atomic claims: of many concurrent claims of one task, exactly one wins.

Fifty separate HTTP requests (each its own connection to the server and, there, its own
database connection) claim one task at the same moment against a real server on
PostgreSQL: one answers 200, the forty-nine others 409 CONFLICT.
"""

from __future__ import annotations

import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import requests
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from rest_framework.authtoken.models import Token

from automation.models import Event
from tasks_inbox import services
from tasks_inbox.models import Task, TaskHistory

CLAIMS = 50


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_50_concurrent_claims_exactly_one_wins(live_server: Any) -> None:
    # Given a claimable task in a queue of fifty agents (token auth, no passwords to hash)
    hotline = Group.objects.create(name="Hotline")
    agents = get_user_model().objects.bulk_create(
        get_user_model()(username=f"agent{i}", email=f"agent{i}@example.com") for i in range(CLAIMS)
    )
    hotline.user_set.add(*agents)
    tokens = {Token.objects.create(user=agent).key: agent.username for agent in agents}
    task = services.task_create(title="Hot potato", queue=hotline, routing="claim")
    url = f"{live_server.url}/api/v1/tasks/{task.pk}/claim/"
    barrier = threading.Barrier(CLAIMS)

    def claim(token: str) -> tuple[int, dict[str, Any], str]:
        with requests.Session() as session:
            barrier.wait(timeout=30)
            response = session.post(url, headers={"Authorization": f"Token {token}"}, timeout=120)
            return response.status_code, response.json(), tokens[token]

    # When they all claim it at once
    with ThreadPoolExecutor(max_workers=CLAIMS) as pool:
        results = list(pool.map(claim, tokens))

    # Then exactly one wins and the others are told it is taken
    statuses = Counter(status for status, _, _ in results)
    assert statuses == {200: 1, 409: CLAIMS - 1}, statuses
    winner = next(who for status, _, who in results if status == 200)
    for status, body, _ in results:
        if status == 409:
            assert body["error"] == {
                "code": "CONFLICT",
                "message": "The task has already been claimed.",
            }
        else:
            assert body["assignee"]["username"] == winner and body["state"] == "in_progress"
    task = Task.objects.get(pk=task.pk)
    assert task.assignee.username == winner
    assert TaskHistory.objects.filter(task=task, action="claim").count() == 1
    assert Event.objects.filter(type="task.assigned", entity_id=str(task.pk)).count() == 1


@pytest.mark.django_db
def test_claim_rules(make_user: Any, api: Any) -> None:
    from rest_framework.test import APIClient

    member = make_user("member", groups=("Desk",))
    other = make_user("other", groups=("Elsewhere",))
    task = services.task_create(
        title="Claim me", queue=Group.objects.get(name="Desk"), routing="claim"
    )
    client = APIClient()
    client.force_authenticate(other)
    assert client.post(f"/api/v1/tasks/{task.pk}/claim/").status_code == 404
    client.force_authenticate(member)
    first = client.post(f"/api/v1/tasks/{task.pk}/claim/")
    assert first.status_code == 200 and first.json()["state"] == "in_progress"
    again = client.post(f"/api/v1/tasks/{task.pk}/claim/")
    assert again.status_code == 409
    error = again.json()["error"]
    assert error["code"] == "CONFLICT"
    assert "assignee" not in error  # the caller holds it (another holder would be named)
    # staff may claim a queue task (not assigned) even outside the queue
    free = services.task_create(title="Free", queue=Group.objects.get(name="Desk"), routing="claim")
    assert api.post(f"/api/v1/tasks/{free.pk}/claim/").json()["assignee"]["username"] == ("admin")
