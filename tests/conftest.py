"""Shared fixtures: service gating, API clients, users, and a real Celery worker.

The suite runs on both setups ``make test`` knows: PostgreSQL and Redis (``DATABASE_URL`` and
``CELERY_BROKER_URL`` set, as in CI) and the embedded default (SQLite and the filesystem
broker). Everything that works on SQLite runs on SQLite; a test says what it needs beyond
that with a marker:

- ``postgres``: PostgreSQL itself, i.e. row locks that make concurrent writers wait or skip
  (``SELECT ... FOR UPDATE [SKIP LOCKED]``, which SQLite ignores: it serialises whole-database
  writes instead), PostgreSQL-only SQL or plans (partial-index scans, ``statement_timeout``),
  or volumes SQLite is not meant for.
- ``redis``: a Redis broker or cache, i.e. behaviour only Redis has (the outbox doorbell kept in
  Redis, ``visibility_timeout`` redelivery) or a broker shared reliably by several workers.

Without what a marker asks for, the test skips with the reason; with ``REQUIRE_SERVICES=1``
it fails instead, so CI can never pass by skipping. Tests that start a Celery worker (the
``celery_worker`` / ``start_worker`` fixtures) need both. ``tests/test_embedded_default.py``
starts web, worker and beat on a fresh SQLite file and filesystem broker whatever the
suite runs on.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from rest_framework.test import APIClient

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "test-artifacts"
REQUIRE_SERVICES = os.environ.get("REQUIRE_SERVICES") == "1"
# Debian's chromium, started as this machine allows (no background networking).
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def postgres_missing() -> str | None:
    """Why PostgreSQL is not available, or None when it is."""
    if not settings.DATABASE_IS_POSTGRES:
        return "needs PostgreSQL: set DATABASE_URL=postgres://..."
    return None


def redis_missing() -> str | None:
    """Why Redis is not available, or None when it is."""
    if not settings.CELERY_BROKER_URL.startswith(("redis://", "rediss://")):
        return "needs Redis: set CELERY_BROKER_URL=redis://..."
    try:
        import redis

        redis.Redis.from_url(settings.CELERY_BROKER_URL, socket_timeout=2).ping()
    except Exception as exc:  # any failure to reach Redis
        return f"Redis at CELERY_BROKER_URL is not reachable: {exc}"
    return None


def services_missing() -> str | None:
    """Why the real services (PostgreSQL and Redis) are not available, or None."""
    return postgres_missing() or redis_missing()


def require(reason: str | None) -> None:
    """Skip (or, with ``REQUIRE_SERVICES=1``, fail) the test when ``reason`` is set."""
    if reason is None:
        return
    if REQUIRE_SERVICES:
        pytest.fail(f"REQUIRE_SERVICES=1 but {reason}")
    pytest.skip(reason)


def require_services() -> None:
    require(services_missing())


WORKER_FIXTURES = {"celery_worker", "start_worker"}


def pytest_runtest_setup(item: Any) -> None:
    if WORKER_FIXTURES & set(getattr(item, "fixturenames", ())):
        require(services_missing())
    if item.get_closest_marker("postgres"):
        require(postgres_missing())
    if item.get_closest_marker("redis"):
        require(redis_missing())


@pytest.fixture(autouse=True)
def _fresh_trigger_index() -> None:
    """Each test's database starts empty; so must this process's index of its triggers and
    its cache of version definitions (ids are reused once a test's rows are rolled back)."""
    from automation.matcher import trigger_index
    from automation.services import version_definition

    trigger_index.reset()
    version_definition.cache_clear()


@pytest.fixture(autouse=True)
def _test_step_types() -> None:
    """Step types only the tests use (a worker loads them through FLOWDESK_ACTION_MODULES)."""
    import tests.steps  # noqa: F401


# Domain events only the tests emit, declared as host code declares its own (free-form
# payloads): a workflow may only listen to an event type the engine knows.
TEST_EVENTS = (
    "claim.filed",
    "crm.check",
    "deal.closed",
    "deal.reopened",
    "dry.check",
    "dry.ghost",
    "nap.due",
    "order.placed",
    "ticket.resolved",
    "x.dead",
    "x.flaky",
    "x.happened",
    "x.slow",
    "x.y",
)


@pytest.fixture(autouse=True)
def _test_events() -> None:
    from automation.catalogue import declare_event

    for event_type in TEST_EVENTS:
        declare_event(event_type, description="An event of the test suite.")


@pytest.fixture
def drain(db: Any) -> Iterator[Callable[..., int]]:
    """Drive the engine in this process, as workers would: drain the outbox (in batches,
    like the ``dispatch_pending`` task), execute the steps handed out as ``execute_step``
    messages (published meanwhile: taken here, as a worker would), advance open runs, wake
    due steps; repeat until nothing is left. Returns the rounds."""
    from celery.signals import before_task_publish
    from django.db.models import Q
    from django.utils import timezone

    from automation import services
    from automation.models import ActionRun, Event, Run
    from automation.tasks import execute_step

    handed_out: list[int] = []

    def on_publish(sender: str | None = None, body: Any = None, **kwargs: Any) -> None:
        if sender == execute_step.name:
            handed_out.append(body[0][0])

    before_task_publish.connect(on_publish, weak=False)

    def steps_of(run_ids: list[int]) -> set[tuple[int, str]]:
        return set(ActionRun.objects.filter(run_id__in=run_ids).values_list("pk", "status"))

    def execute_handed_out() -> None:
        while handed_out:
            execute_step(handed_out.pop(0))

    def undispatched() -> Any:
        return Event.objects.filter(dispatched_at__isnull=True).filter(
            Q(dispatch_after__isnull=True) | Q(dispatch_after__lte=timezone.now())
        )

    def run(max_rounds: int = 50) -> int:
        for rounds in range(1, max_rounds + 1):
            had_events = undispatched().exists()
            while undispatched().exists() and services.outbox_drain():
                pass  # until empty, or what is left was put off after failing

            due = list(
                ActionRun.objects.filter(
                    wake_at__lte=timezone.now(),
                    status__in=["pending", "waiting"],
                ).values_list("pk", flat=True)
            )
            for action_run_id in due:
                run_id = services.step_wake(action_run_id=action_run_id)
                if run_id:
                    services.run_advance(run_id=run_id)
            execute_handed_out()
            open_runs = list(
                Run.objects.filter(status__in=["pending", "running"]).values_list("pk", flat=True)
            )
            before = steps_of(open_runs)
            for run_id in open_runs:
                services.run_advance(run_id=run_id)
            execute_handed_out()
            # An advance starts one parallel branch here (the others are handed out as
            # messages, which a test without commits never sends): go on while runs move.
            moved = steps_of(open_runs) != before
            if not had_events and not due and not moved and not undispatched().exists():
                return rounds
        return max_rounds

    yield run
    before_task_publish.disconnect(on_publish)


# --- users and clients ----------------------------------------------------------------


@pytest.fixture
def make_user(db: Any) -> Callable[..., Any]:
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group

    counter = {"n": 0}

    def make(
        username: str | None = None,
        *,
        staff: bool = False,
        superuser: bool = False,
        groups: tuple[str, ...] = (),
        password: str = "pw-123456!",  # noqa: S107
    ) -> Any:
        counter["n"] += 1
        username = username or f"user{counter['n']}"
        user = get_user_model().objects.create_user(
            username=username,
            email=f"{username}@example.com",
            password=password,
            is_staff=staff or superuser,
            is_superuser=superuser,
        )
        for name in groups:
            user.groups.add(Group.objects.get_or_create(name=name)[0])
        return user

    return make


@pytest.fixture
def admin_user(make_user: Callable[..., Any]) -> Any:
    return make_user("admin", superuser=True)


@pytest.fixture
def api(admin_user: Any) -> APIClient:
    """An API client authenticated as a superuser with a token."""
    from rest_framework.authtoken.models import Token

    client = APIClient()
    token, _ = Token.objects.get_or_create(user=admin_user)
    client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    return client


@pytest.fixture
def anon_api() -> APIClient:
    return APIClient()


def publish(api: APIClient, workflow_id: int) -> dict[str, Any]:
    """Publish a workflow's draft through the API (saving only writes the draft)."""
    response = api.post(f"/api/v1/workflows/{workflow_id}/publish/")
    assert response.status_code == 200, response.content
    return response.json()


def create_published(api: APIClient, document: dict[str, Any]) -> dict[str, Any]:
    """Create a workflow through the API and publish it, as saving did before drafts."""
    response = api.post("/api/v1/workflows/", document, format="json")
    assert response.status_code == 201, response.content
    return publish(api, response.json()["id"])


# --- a real Celery worker -------------------------------------------------------------


def database_url() -> str:
    db = settings.DATABASES["default"]
    if db["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{db['NAME']}"
    host = db.get("HOST") or "127.0.0.1"
    port = db.get("PORT") or 5432
    user = db.get("USER") or "postgres"
    password = f":{db['PASSWORD']}" if db.get("PASSWORD") else ""
    return f"postgres://{user}{password}@{host}:{port}/{db['NAME']}"


class WorkerProcess:
    """A ``celery worker`` subprocess on the test database and broker."""

    def __init__(self, name: str, env: dict[str, str], concurrency: int = 2) -> None:
        ARTIFACTS.mkdir(exist_ok=True)
        self.log_path = ARTIFACTS / f"worker-{name}-{os.getpid()}.log"
        self.name = name
        self.env = env
        self.concurrency = concurrency
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 90) -> WorkerProcess:
        log = open(self.log_path, "ab")  # noqa: SIM115  (owned by the subprocess)
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "config",
                "worker",
                "--queues",
                "steps,sweeps",
                "--concurrency",
                str(self.concurrency),
                "--pool",
                "prefork",
                "--loglevel",
                "INFO",
                "--without-mingle",
                "--without-gossip",
                "--hostname",
                f"{self.name}@%h",
            ],
            cwd=ROOT,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"worker exited early; log: {self.log_path}")
            if b" ready." in self.log_path.read_bytes():
                return self
            time.sleep(0.1)
        raise RuntimeError(f"worker not ready after {timeout}s; log: {self.log_path}")

    def kill(self) -> None:
        """SIGKILL the whole worker (main process and its pool children)."""
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def worker_env(**extra: str) -> dict[str, str]:
    env = {
        **os.environ,
        "DATABASE_URL": database_url(),
        "CELERY_BROKER_URL": settings.CELERY_BROKER_URL,
        "FLOWDESK_ACTION_MODULES": "tests.steps",
        "PYTHONUNBUFFERED": "1",
    }
    env.pop("DJANGO_SETTINGS_MODULE", None)
    env.update(extra)
    return env


def purge_broker() -> None:
    """Drop queued messages, and the outbox doorbell that says a drain message is queued."""
    from automation.events import outbox_doorbell_reset
    from config.celery import app

    with app.connection_for_write() as conn:
        for queue in ("steps", "sweeps"):
            conn.default_channel.queue_purge(queue)
    outbox_doorbell_reset()


@pytest.fixture
def start_worker(transactional_db: Any) -> Iterator[Callable[..., WorkerProcess]]:
    """Start as many workers as a test needs; all are stopped at the end."""
    started: list[WorkerProcess] = []
    purge_broker()

    def start(name: str = "w", concurrency: int = 2, **env: str) -> WorkerProcess:
        worker = WorkerProcess(f"{name}{len(started)}", worker_env(**env), concurrency)
        started.append(worker)
        return worker.start()

    yield start
    for worker in started:
        worker.stop()


@pytest.fixture
def celery_worker(start_worker: Callable[..., WorkerProcess]) -> WorkerProcess:
    """One real worker on the test database (PostgreSQL) and broker (Redis)."""
    return start_worker("w")


def wait_for(
    predicate: Callable[[], Any],
    timeout: float = 20,
    interval: float = 0.1,
    message: str = "condition",
) -> Any:
    """Poll until ``predicate()`` is truthy; fail with ``message`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    pytest.fail(f"timed out after {timeout}s waiting for {message}")


@pytest.fixture
def chromium() -> Path:
    if not CHROMIUM.exists():
        reason = f"needs Debian's chromium at {CHROMIUM} (apt-get install -y chromium)"
        if REQUIRE_SERVICES:
            pytest.fail(f"REQUIRE_SERVICES=1 but this test {reason}")
        pytest.skip(reason)
    return CHROMIUM


@pytest.fixture
def asgi_server(transactional_db: Any, settings: Any) -> Iterator[Any]:
    """daphne as the Procfile runs it, on the test database and Redis (their shared channel
    layer carries the live updates)."""
    from tests.servers import AsgiServer

    if not settings.CELERY_BROKER_URL.startswith("redis://"):
        pytest.skip("needs Redis: the test process and the server share its channel layer")
    server = AsgiServer(free_port())
    server.start()
    yield server
    server.stop()


# --- shared helpers -------------------------------------------------------------------


def free_port() -> int:
    """A spare loopback port (for a server the test starts)."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def as_user(user: Any) -> APIClient:
    """An API client authenticated as ``user`` (no token)."""
    client = APIClient()
    client.force_authenticate(user)
    return client


def notes_on(obj: Any) -> list[str]:
    """The texts of the notes on ``obj``, sorted."""
    from django.contrib.contenttypes.models import ContentType

    from automation.models import Note

    return sorted(
        Note.objects.filter(
            content_type=ContentType.objects.get_for_model(obj), object_id=str(obj.pk)
        ).values_list("note", flat=True)
    )
