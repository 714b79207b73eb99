"""Who hears about what on the live-updates socket (``/ws/live/``), at the consumer level.

Sockets are channels' ``WebsocketCommunicator`` on the real ASGI application (session login
through ``AuthMiddlewareStack``, the origin checked against ALLOWED_HOSTS) and the configured
channel layer (Redis under REQUIRE_SERVICES). Messages leave only after the commit.

The tests commit for real (``transactional_db``): the consumer's database calls open and
close connections of their own. "Nobody else heard" is shown without waiting for a
timeout: after the change, each socket is sent a message of its own (a notification), and
what it heard before that marker is all it heard, since a channel delivers in order and
the change's message was published before the marker.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.contrib.auth.models import Group, Permission
from django.db import transaction
from django.test import Client

from automation.live import Audience, publish_after_commit, user_group
from config.asgi import application
from tasks_inbox import services
from tasks_inbox.models import Notification, Task

ORIGIN = (b"origin", b"http://127.0.0.1")


def session_headers(user: Any) -> list[tuple[bytes, bytes]]:
    client = Client()
    client.force_login(user)
    cookie = client.cookies["sessionid"].value
    return [ORIGIN, (b"cookie", f"sessionid={cookie}".encode())]


async def open_socket(headers: list[tuple[bytes, bytes]]) -> tuple[WebsocketCommunicator, dict]:
    socket = WebsocketCommunicator(application, "/ws/live/", headers=headers)
    connected, _ = await socket.connect(timeout=5)
    assert connected
    hello = await socket.receive_json_from(timeout=5)
    assert hello["topic"] == "hello"
    return socket, hello


def committed(call: Callable[[], Any]) -> Callable[[], Awaitable[Any]]:
    """Run ``call`` in a transaction that commits (the tests use ``transactional_db``)."""

    def run() -> Any:
        with transaction.atomic():
            return call()

    return database_sync_to_async(run)


def ping(users: list[Any]) -> Callable[[], Any]:
    """A notification for each user: the marker that ends what they may have heard."""

    def send() -> None:
        for user in users:
            notification = Notification.objects.create(recipient=user, message="marker")
            publish_after_commit("notification", {"id": notification.pk})

    return send


@pytest.fixture
def people(transactional_db: Any, make_user: Any) -> dict[str, Any]:
    alice = make_user("alice", groups=("Claims",))
    bob = make_user("bob", groups=("Claims",))
    carol = make_user("carol", groups=("Billing",))
    mona = make_user("mona")
    staff = make_user("sam", staff=True)
    staff.user_permissions.add(Permission.objects.get(codename="view_run"))
    claims = Group.objects.get(name="Claims")
    services.queue_settings(claims).managers.add(mona)
    return {
        "alice": alice,
        "bob": bob,
        "carol": carol,
        "mona": mona,
        "sam": staff,
        "claims": claims,
    }


def test_a_claim_reaches_exactly_those_who_may_open_the_task(people: dict[str, Any]) -> None:
    names = ["alice", "bob", "carol", "mona", "sam"]
    headers = {name: session_headers(people[name]) for name in names}

    async def scenario() -> dict[str, list[dict[str, Any]]]:
        sockets = {name: (await open_socket(headers[name]))[0] for name in names}
        task = await committed(
            lambda: services.task_create(
                title="Check claim C-1", queue=people["claims"], routing="claim"
            )
        )()
        await committed(ping([people[name] for name in names]))()
        created = {name: await until_marker(sockets[name]) for name in names}
        await committed(lambda: services.task_claim(task_id=task.pk, actor=people["alice"]))()
        await committed(ping([people[name] for name in names]))()
        claimed = {name: await until_marker(sockets[name]) for name in names}
        for socket in sockets.values():
            await socket.disconnect()
        return {"task_id": task.pk, "created": created, "claimed": claimed}

    seen = async_to_sync(scenario)()
    task_id, queue_id = seen["task_id"], people["claims"].pk

    def topics(messages: list[dict[str, Any]]) -> set[tuple[str, int]]:
        return {(m["topic"], m["id"]) for m in messages}

    # While unassigned: every member, the manager and staff hear of the task and the queue
    for name in ("alice", "bob", "mona", "sam"):
        assert topics(seen["created"][name]) == {("task", task_id), ("queue", queue_id)}, name
    # After alice's claim: bob can no longer open the task; he hears that his queue changed
    assert topics(seen["claimed"]["alice"]) == {("task", task_id), ("queue", queue_id)}
    assert topics(seen["claimed"]["bob"]) == {("queue", queue_id)}
    for name in ("mona", "sam"):
        assert topics(seen["claimed"][name]) == {("task", task_id), ("queue", queue_id)}, name
    # carol, in another queue, heard nothing at all about it
    assert seen["created"]["carol"] == [] and seen["claimed"]["carol"] == []
    claimed_task = next(m for m in seen["claimed"]["alice"] if m["topic"] == "task")
    assert claimed_task["state"] == Task.objects.get(pk=task_id).state


async def until_marker(socket: WebsocketCommunicator) -> list[dict[str, Any]]:
    """The messages before this socket's marker notification (the marker excluded)."""
    heard = []
    while True:
        message = await socket.receive_json_from(timeout=5)
        if message["topic"] == "notification":
            marker = await database_sync_to_async(
                lambda m=message: Notification.objects.filter(pk=m["id"], message="marker").exists()
            )()
            if marker:
                return heard
        heard.append(message)


def test_runs_go_to_staff_with_the_permission_only(people: dict[str, Any], make_user: Any) -> None:
    bare_staff = make_user("stan", staff=True)  # staff without automation.view_run
    names = ["alice", "sam", "stan"]
    users = {**people, "stan": bare_staff}
    headers = {name: session_headers(users[name]) for name in names}

    async def scenario() -> dict[str, list[dict[str, Any]]]:
        sockets = {name: (await open_socket(headers[name]))[0] for name in names}
        from automation.live import run_changed

        await committed(lambda: run_changed(41, "running", step="check"))()
        await committed(ping([users[name] for name in names]))()
        heard = {name: await until_marker(sockets[name]) for name in names}
        for socket in sockets.values():
            await socket.disconnect()
        return heard

    heard = async_to_sync(scenario)()
    assert heard["sam"] == [{"topic": "run", "id": 41, "status": "running", "step": "check"}]
    assert heard["alice"] == [] and heard["stan"] == []


def test_a_rolled_back_change_publishes_nothing(people: dict[str, Any]) -> None:
    headers = session_headers(people["alice"])

    async def scenario() -> list[dict[str, Any]]:
        socket, _ = await open_socket(headers)

        def rolled_back() -> None:
            try:
                with transaction.atomic():
                    services.task_create(title="Never", queue=people["claims"], routing="claim")
                    raise RuntimeError("roll back")
            except RuntimeError:
                pass

        await database_sync_to_async(rolled_back)()
        await committed(ping([people["alice"]]))()
        heard = await until_marker(socket)
        await socket.disconnect()
        return heard

    assert async_to_sync(scenario)() == []


def test_a_failed_publish_is_logged_and_does_not_raise(people: dict[str, Any], caplog: Any) -> None:
    def broken_rule() -> Audience:
        raise LookupError("no such audience")

    publish_after_commit("task", {"id": 1}, broken_rule)  # outside a transaction: at once
    publish_after_commit("no-such-topic", {"id": 1})
    assert "live update task could not be published" in caplog.text
    assert "live update no-such-topic has no audience rule" in caplog.text


def test_anonymous_sockets_and_foreign_origins_are_refused(people: dict[str, Any]) -> None:
    cookie = session_headers(people["alice"])[1]

    async def scenario() -> tuple[Any, Any]:
        anonymous = WebsocketCommunicator(application, "/ws/live/", headers=[ORIGIN])
        anonymous_result = await anonymous.connect(timeout=5)
        foreign = WebsocketCommunicator(
            application, "/ws/live/", headers=[(b"origin", b"http://evil.example"), cookie]
        )
        foreign_result = await foreign.connect(timeout=5)
        return anonymous_result, foreign_result

    (anon_ok, anon_code), (foreign_ok, _) = async_to_sync(scenario)()
    assert not anon_ok and anon_code == 4401
    assert not foreign_ok


def test_groups_are_per_user() -> None:
    assert user_group(7) == "user.7"
    assert Audience.users([3, 1]).groups() == ["user.1", "user.3"]
    assert Audience(staff_runs=True).groups() == ["staff.runs"]


def test_a_run_reports_each_step_and_its_end_to_run_watchers(
    people: dict[str, Any], drain: Any
) -> None:
    from automation.events import emit
    from automation.models import Run
    from workflows.services import workflow_save

    workflow_save(
        document={
            "slug": "two-naps",
            "name": "Two naps",
            "triggers": [{"event_type": "nap.due"}],
            "steps": [
                {"key": "first", "type": "test_sleep", "config": {"seconds": 0}},
                {
                    "key": "second",
                    "type": "test_sleep",
                    "config": {"seconds": 0},
                    "after": ["first"],
                },
            ],
        }
    )
    headers = {name: session_headers(people[name]) for name in ("sam", "alice")}

    async def scenario() -> dict[str, list[dict[str, Any]]]:
        sockets = {name: (await open_socket(headers[name]))[0] for name in headers}
        await committed(lambda: emit("nap.due", {}))()
        await database_sync_to_async(drain)()
        await committed(ping([people[name] for name in headers]))()
        heard = {name: await until_marker(sockets[name]) for name in headers}
        for socket in sockets.values():
            await socket.disconnect()
        return heard

    heard = async_to_sync(scenario)()
    run = Run.objects.get(workflow__slug="two-naps")
    assert run.status == "completed"
    runs = [m for m in heard["sam"] if m["topic"] == "run"]
    assert {m["id"] for m in runs} == {run.pk}
    finished = [m["step"] for m in runs if m.get("step") and m["status"] == "completed"]
    assert finished == ["first", "second"]
    assert runs[-1] == {"topic": "run", "id": run.pk, "status": "completed"}
    assert heard["alice"] == []
