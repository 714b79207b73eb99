"""The embedded default end to end: what ``make run`` starts with no service configured.

The Procfile's web, worker and beat run as subprocesses on a fresh SQLite file and the
filesystem broker in a temporary folder (``FLOWDESK_VAR_DIR``), with ``DATABASE_URL``,
``CELERY_BROKER_URL`` and ``CACHE_URL`` removed from their environment, whatever the suite
itself runs on. Everything is driven through HTTP: a lead created in the admin is qualified
by its run, a delay is woken by beat's sweep (no wake-up message is sent), and an SLA is
breached by beat's sweep.
"""

from __future__ import annotations

import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.conftest import ARTIFACTS, ROOT, free_port

# Setting up the stack (migrate, seed, three processes) counts towards the first test.
pytestmark = [pytest.mark.worker, pytest.mark.timeout(600)]

# Fast sweeps, so waits and SLAs come due within seconds; no wake-up message for delays,
# so only beat's sweep can resume them.
SWEEP_SECONDS = "1"
ENGINE_ENV = {
    "FLOWDESK_SWEEP_WAKE_SECONDS": SWEEP_SECONDS,
    "FLOWDESK_SWEEP_SLA_SECONDS": SWEEP_SECONDS,
    "FLOWDESK_WAKE_MESSAGE_MAX_SECONDS": "0",
    # The test's own domain events, declared without code as a client would.
    "FLOWDESK_EVENT_TYPES": "embedded.delay",
}
BOUND = 60.0  # seconds any one wait of this test may take at most
DEMO_LOGIN = ("demo", "demo-pass-2026")


def embedded_env(var_dir: Path, port: int) -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if key
        not in {
            "DATABASE_URL",
            "CELERY_BROKER_URL",
            "CACHE_URL",
            "DJANGO_SETTINGS_MODULE",
            "REQUIRE_SERVICES",
        }
        and not key.startswith(("FLOWDESK_", "PYTEST_"))
    }
    env.update(
        ENGINE_ENV,
        FLOWDESK_VAR_DIR=str(var_dir),
        WEB_PORT=str(port),
        DEBUG="1",
        PYTHONUNBUFFERED="1",
        LOG_LEVEL="INFO",
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
    )
    return env


def procfile() -> dict[str, list[str]]:
    """The Procfile's commands, each run by a shell as honcho runs it (``make run`` puts the
    venv's bin folder first on PATH; :func:`embedded_env` does the same)."""
    commands = {}
    for line in (ROOT / "Procfile").read_text().splitlines():
        name, _, command = line.partition(":")
        if command.strip():
            commands[name.strip()] = ["/bin/sh", "-c", command.strip()]
    return commands


@dataclass
class Stack:
    var_dir: Path
    env: dict[str, str]
    base_url: str
    logs: dict[str, Path] = field(default_factory=dict)
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def manage(self, *args: str) -> str:
        done = subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert done.returncode == 0, f"manage.py {' '.join(args)}:\n{done.stdout}{done.stderr}"
        return done.stdout

    def start(self, name: str, command: list[str]) -> None:
        self.logs[name] = ARTIFACTS / f"embedded-{name}-{os.getpid()}.log"
        with open(self.logs[name], "wb") as log:
            self.procs[name] = subprocess.Popen(
                command,
                cwd=ROOT,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def log(self, name: str) -> str:
        return self.logs[name].read_text(errors="replace")

    def logs_text(self) -> str:
        return "\n".join(
            f"--- {name} ({path})\n{self.log(name)[-3000:]}" for name, path in self.logs.items()
        )

    def alive(self) -> None:
        for name, proc in self.procs.items():
            assert proc.poll() is None, f"{name} exited with {proc.returncode}:\n{self.logs_text()}"

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)

    def db(self) -> sqlite3.Connection:
        """The stack's own database file, read directly (the suite may be on PostgreSQL)."""
        return sqlite3.connect(f"file:{self.var_dir / 'db.sqlite3'}?mode=ro", uri=True)


def until(stack: Stack, predicate: Callable[[], Any], message: str) -> Any:
    """Poll ``predicate`` until truthy, for at most ``BOUND`` seconds; every process must
    stay up meanwhile."""
    deadline = time.monotonic() + BOUND
    while time.monotonic() < deadline:
        stack.alive()
        value = predicate()
        if value:
            return value
        time.sleep(0.25)
    pytest.fail(f"timed out after {BOUND}s waiting for {message}\n{stack.logs_text()}")


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    ARTIFACTS.mkdir(exist_ok=True)
    var_dir = tmp_path_factory.mktemp("embedded-var")
    port = free_port()
    stack = Stack(
        var_dir=var_dir, env=embedded_env(var_dir, port), base_url=f"http://127.0.0.1:{port}"
    )
    try:
        stack.manage("migrate", "--noinput", "--verbosity", "0")
        stack.manage("seed_demo", "--quiet")
        for name, command in procfile().items():
            stack.start(name, command)

        def web_up() -> bool:
            try:
                return requests.get(f"{stack.base_url}/healthz", timeout=10).status_code == 200
            except requests.RequestException:  # not listening yet, or still booting
                return False

        until(stack, web_up, "/healthz to answer 200")
        until(stack, lambda: " ready." in stack.log("worker"), "the worker to be ready")
        yield stack
    finally:
        stack.stop()


@pytest.fixture(scope="module")
def api(stack: Stack) -> requests.Session:
    """The demo superuser's session against the stack's API, with its token."""
    output = stack.manage("drf_create_token", DEMO_LOGIN[0])
    token = re.search(r"token (\w+) for", output)
    assert token, output
    session = requests.Session()
    session.headers["Authorization"] = f"Token {token.group(1)}"
    return session


def get(session: requests.Session, stack: Stack, path: str, **params: Any) -> Any:
    response = session.get(f"{stack.base_url}{path}", params=params, timeout=10)
    assert response.status_code == 200, response.text
    return response.json()


def post(session: requests.Session, stack: Stack, path: str, body: dict[str, Any]) -> Any:
    response = session.post(f"{stack.base_url}{path}", json=body, timeout=10)
    assert response.status_code in (201, 202), response.text
    return response.json()


def test_the_stack_runs_on_sqlite_and_the_filesystem_broker(stack: Stack) -> None:
    health = requests.get(f"{stack.base_url}/healthz", timeout=10)
    assert health.json() == {"status": "ok", "checks": {"database": "ok", "broker": "ok"}}
    assert (stack.var_dir / "db.sqlite3").exists()
    assert (stack.var_dir / "broker" / "queue").is_dir()
    assert "filesystem://" in stack.log("worker")
    with stack.db() as db:
        assert db.execute("SELECT count(*) FROM auth_user WHERE username = 'demo'").fetchone()


def test_a_lead_created_in_the_admin_is_qualified_by_its_run(
    stack: Stack, api: requests.Session
) -> None:
    browser = requests.Session()
    login_url = f"{stack.base_url}/admin/login/"
    browser.get(login_url, timeout=10)
    response = browser.post(
        login_url,
        timeout=10,
        data={
            "username": DEMO_LOGIN[0],
            "password": DEMO_LOGIN[1],
            "next": "/admin/",
            "csrfmiddlewaretoken": browser.cookies["csrftoken"],
        },
        headers={"Referer": login_url},
    )
    assert response.status_code == 200 and "/admin/logout/" in response.text, response.text
    add_url = f"{stack.base_url}/admin/crm/lead/add/"
    form = browser.get(add_url, timeout=10).text
    alice = re.search(r'<option value="(\d+)">alice</option>', form)
    assert alice, form
    response = browser.post(
        add_url,
        timeout=10,
        allow_redirects=False,
        data={
            "company_name": "Embedded Co",
            "contact_name": "",
            "email": "",
            "annual_revenue": "3000000",
            "budget": "90000",
            "status": "new",
            "owner": alice.group(1),
            "_save": "Save",
            "csrfmiddlewaretoken": browser.cookies["csrftoken"],
        },
        headers={"Referer": add_url},
    )
    assert response.status_code == 302, response.text

    # The seeded leads have runs of their own: find this lead's event, then its run.
    def lead_event() -> list[dict[str, Any]]:
        events = get(api, stack, "/api/v1/events/", type="lead.created")["results"]
        return [event for event in events if event["payload"]["company_name"] == "Embedded Co"]

    (event,) = until(stack, lead_event, "the lead.created event")

    def finished() -> list[dict[str, Any]]:
        runs = get(api, stack, "/api/v1/runs/", event=event["id"])["results"]
        return [run for run in runs if run["status"] in {"completed", "failed"}]

    runs = until(stack, finished, "the lead's run to finish")
    assert [(run["workflow"], run["status"]) for run in runs] == [
        ("qualify-high-value-leads", "completed")
    ], runs
    detail = get(api, stack, f"/api/v1/runs/{runs[0]['id']}/")
    assert {step["step_key"]: step["status"] for step in detail["action_runs"]} == {
        "qualify": "completed",
        "note": "completed",
        "notify": "completed",
        "follow_up": "completed",
    }
    with stack.db() as db:
        (status,) = db.execute(
            "SELECT status FROM crm_lead WHERE company_name = 'Embedded Co'"
        ).fetchone()
        titles = [row[0] for row in db.execute("SELECT title FROM tasks_inbox_task")]
    assert status == "qualified"
    assert "Follow up with Embedded Co" in titles


def test_a_delay_is_woken_by_beats_sweep(stack: Stack, api: requests.Session) -> None:
    created = post(
        api,
        stack,
        "/api/v1/workflows/",
        {
            "slug": "embedded-delay",
            "name": "Embedded delay",
            "triggers": [{"event_type": "deal.won"}],
            "steps": [
                {"key": "wait", "type": "delay", "config": {"for": "2 seconds"}},
                {"key": "after", "type": "delay", "config": {"for": 0}},
            ],
        },
    )
    response = api.post(f"{stack.base_url}/api/v1/workflows/{created['id']}/publish/", timeout=10)
    assert response.status_code == 200, response.text
    post(api, stack, "/api/v1/events/", {"type": "deal.won", "payload": {}})

    def runs() -> list[dict[str, Any]]:
        return get(api, stack, "/api/v1/runs/", workflow="embedded-delay")["results"]

    def finished() -> list[dict[str, Any]]:
        return [run for run in runs() if run["status"] in {"completed", "failed"}]

    started = until(stack, runs, "the run to start")
    wakes_before = stack.log("worker").count("wake sweep: 1 due steps woken")
    done = until(stack, finished, "the delay to end")
    assert [(run["id"], run["status"]) for run in done] == [(started[0]["id"], "completed")]
    detail = get(api, stack, f"/api/v1/runs/{done[0]['id']}/")
    assert [(step["step_key"], step["status"]) for step in detail["action_runs"]] == [
        ("wait", "completed"),
        ("after", "completed"),
    ]
    # No wake-up message was sent (FLOWDESK_WAKE_MESSAGE_MAX_SECONDS=0): beat's sweep sent
    # runs-wake-due and the worker's sweep resumed the step.
    # (A sweep that did work says so at INFO; the routine received/succeeded lines of the
    # sweeps are DEBUG.)
    assert not re.search(r"flowdesk\.wake_step\[", stack.log("worker"))
    assert stack.log("worker").count("wake sweep: 1 due steps woken") > wakes_before, stack.log(
        "worker"
    )[-3000:]


def test_an_sla_breach_is_swept_by_beat(stack: Stack, api: requests.Session) -> None:
    post(
        api,
        stack,
        "/api/v1/sla-configs/",
        {"name": "Embedded quick", "task_type": "embedded_quick", "target": "2s"},
    )
    task = post(
        api, stack, "/api/v1/tasks/", {"title": "Answer quickly", "task_type": "embedded_quick"}
    )
    assert task["sla_due_at"], task

    def breached() -> list[dict[str, Any]]:
        events = get(api, stack, "/api/v1/events/", type="task.sla_breached")["results"]
        return [event for event in events if str(event["entity_id"]) == str(task["id"])]

    events = until(stack, breached, "the SLA breach")
    assert len(events) == 1, events
    assert re.search(r"SLA sweep: [1-9]\d* thresholds fired", stack.log("worker")), stack.log(
        "worker"
    )[-3000:]
    with stack.db() as db:
        (breached_at,) = db.execute(
            "SELECT sla_breached_at FROM tasks_inbox_task WHERE id = ?", (task["id"],)
        ).fetchone()
    assert breached_at is not None
