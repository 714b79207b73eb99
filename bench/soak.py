"""Chaos soak: events through real processes while workers are killed and the services fail.

Run with ``python -m bench.soak`` (or ``make soak``); ``--help`` lists the knobs. See
bench/README.md for what it measures and the figures of a full run.

What it starts, all on loopback: a private PostgreSQL cluster on a spare port (``initdb``
into a temporary directory under var/bench, run as the ``postgres`` user when root, trust
auth; stopped and removed at the end), a private ``redis-server`` on a spare port (broker, cache
and channel layer; no persistence, so a restart loses every queued message), the web
server as the Procfile runs it (daphne), beat under ``scripts/supervise.py``, Celery
workers each in a process group of its own, and an HTTP server recording the webhooks it
receives. The sweeps run every few seconds (``FLOWDESK_SWEEP_*_SECONDS``) and a running step
counts as lost after ``--stale-seconds``.

What it does: posts ``--events`` events to ``/api/v1/events/`` (each with its own
``Idempotency-Key``, retried until answered 202) into a workflow of seven steps (a note, a
field update, a delay, a webhook, an ``emit_event`` chained to a second workflow, a human
task that the soak completes through the API, a note). Meanwhile it SIGKILLs a worker's
process group every ``--kill-every`` seconds or so (at most ``--kills``; the worker is
started again a second later), restarts its Redis (``--redis-restarts``) and restarts its
private PostgreSQL cluster (``--pg-terminations``: ``pg_ctl restart -m fast``, every
session dropped; with ``--postgres`` an external server's connections to the database are
terminated with ``pg_terminate_backend`` instead). Then it
waits (at most ``--settle-timeout``) until every run is final, and checks from the database
and the webhook receiver's log:

- no event lost or doubled: one ``Event`` per posted key;
- exactly one run per event per matching workflow (the order workflow, the chained one);
- every run finished, completed (``stuck`` counts those that were not);
- every database effect once: notes, field updates (their ``deal.updated`` events), chained
  events, tasks;
- every webhook delivered, redeliveries carrying the same ``webhook-id``.

``run_soak`` is also what ``tests/test_soak.py`` calls, with fewer events and faults.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from bench.common import ROOT, log

FINAL = {"completed", "failed", "cancelled"}
COMPLETERS = 2  # threads completing the tasks through the API (each its share of the ids)
DAPHNE = [sys.executable, "-m", "daphne", "--bind", "127.0.0.1"]
SUPERVISE_BEAT = [sys.executable, "scripts/supervise.py", "--name", "beat", "--", sys.executable]
SUPERVISE_BEAT += ["-m", "celery", "-A", "config", "beat", "--loglevel", "INFO"]


@dataclass
class SoakConfig:
    events: int = 1800
    workers: int = 2
    concurrency: int = 2
    kills: int = 48
    kill_every: float = 10.0
    redis_restarts: int = 1
    pg_terminations: int = 1
    posters: int = 4
    delay_seconds: int = 2
    stale_seconds: int = 20
    sweep_seconds: float = 3.0
    settle_timeout: float = 900.0
    seed: int = 14
    log_dir: Path = field(default_factory=lambda: ROOT / "var" / "bench" / "soak-logs")


def spare_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(predicate: Any, timeout: float, what: str, interval: float = 0.2) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    raise RuntimeError(f"timed out after {timeout:.0f}s waiting for {what}")


# --- the processes ----------------------------------------------------------------------


class Process:
    """A subprocess in its own process group, logging to a file of its own."""

    def __init__(self, name: str, command: list[str], env: dict[str, str], log_dir: Path):
        self.name = name
        self.command = command
        self.env = env
        self.log_dir = log_dir
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self.log_path = log_dir / f"{name}.log"

    def start(self) -> None:
        self.starts += 1
        self.log_path = self.log_dir / f"{self.name}-{self.starts}.log"
        log_file = open(self.log_path, "ab")  # noqa: SIM115  (owned by the subprocess)
        self.proc = subprocess.Popen(
            self.command,
            cwd=ROOT,
            env=self.env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log_file.close()

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_has(self, text: bytes) -> bool:
        try:
            return text in self.log_path.read_bytes()
        except OSError:
            return False

    def kill(self) -> None:
        """SIGKILL the whole process group (the main process and its children)."""
        if self.proc is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def stop(self, timeout: float = 20) -> None:
        if not self.alive():
            return
        assert self.proc is not None
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
        except ProcessLookupError:
            pass


class RedisServer(Process):
    """A private ``redis-server`` without persistence: a restart loses every key."""

    def __init__(self, port: int, log_dir: Path) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not on PATH")
        command = [binary, "--port", str(port), "--bind", "127.0.0.1"]
        command += ["--save", "", "--appendonly", "no", "--daemonize", "no"]
        super().__init__("redis", command, dict(os.environ), log_dir)
        self.port = port
        self.url = f"redis://127.0.0.1:{port}/0"

    def start(self) -> None:
        super().start()
        wait_until(self.answers, 20, "redis-server to answer")

    def answers(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")
        except OSError:
            return False


def postgres_bin_dir() -> Path | None:
    """The directory holding ``initdb`` and ``pg_ctl`` (the newest installed version)."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"), key=lambda p: int(p.parts[-3]))
    if found:
        return found[-1].parent
    binary = shutil.which("pg_ctl")
    return Path(binary).parent if binary else None


class PostgresCluster:
    """A private PostgreSQL cluster (``initdb`` into var/bench, trust auth, loopback only)
    that the soak restarts; run as the ``postgres`` OS user, in the system's temporary
    directory, when this process is root."""

    def __init__(self, port: int, log_dir: Path) -> None:
        bin_dir = postgres_bin_dir()
        if bin_dir is None or not (bin_dir / "initdb").exists():
            raise RuntimeError("PostgreSQL server binaries (initdb, pg_ctl) are not installed")
        self.bin_dir = bin_dir
        self.port = port
        self.log_dir = log_dir
        self.prefix: list[str] = []
        if os.geteuid() == 0:
            # The server runs as the postgres user, who may not reach into the project (a
            # clone under a private directory): the cluster lives in the system's temp dir.
            self.root = Path(tempfile.mkdtemp(prefix="flowdesk-soak-pg-"))
            shutil.chown(self.root, "postgres", "postgres")
            self.prefix = ["runuser", "-u", "postgres", "--"]
        else:
            base = ROOT / "var" / "bench"
            base.mkdir(parents=True, exist_ok=True)
            self.root = Path(tempfile.mkdtemp(prefix="soak-pg-", dir=base))
        self.data = self.root / "data"
        self.log_path = self.root / "postgres.log"
        self.server_url = f"postgres://postgres@127.0.0.1:{port}"
        self.url = ""
        self.restarts = 0

    def run(self, *command: str) -> None:
        done = subprocess.run(
            [*self.prefix, *command], capture_output=True, text=True, cwd=self.root, timeout=120
        )
        if done.returncode != 0:
            raise RuntimeError(f"{command[0]} failed: {done.stderr.strip() or done.stdout}")

    def init(self) -> None:
        initdb = str(self.bin_dir / "initdb")
        self.run(initdb, "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8")

    def pg_ctl(self, *args: str) -> None:
        options = f"-p {self.port} -c listen_addresses=127.0.0.1"
        options += f" -c unix_socket_directories={self.root}"
        options += " -c shared_buffers=32MB -c max_connections=200"
        pg_ctl = str(self.bin_dir / "pg_ctl")
        self.run(pg_ctl, "-D", str(self.data), "-l", str(self.log_path), "-o", options, "-w",
                 "-t", "60", *args)  # fmt: skip

    def start(self) -> None:
        self.pg_ctl("start")

    def restart(self) -> None:
        """Stop (fast: every session dropped, open transactions rolled back) and start."""
        self.pg_ctl("-m", "fast", "restart")
        self.restarts += 1

    def stop(self) -> None:
        if (self.data / "postmaster.pid").exists():
            with contextlib.suppress(Exception):
                self.pg_ctl("-m", "immediate", "stop")
        if self.log_path.exists():
            with contextlib.suppress(OSError):
                shutil.copy(self.log_path, self.log_dir / "postgres.log")
        shutil.rmtree(self.root, ignore_errors=True)


@contextlib.contextmanager
def private_database(log_dir: Path, name: str = "flowdesk_soak") -> Iterator[PostgresCluster]:
    """Start a private cluster, create and migrate ``name`` on it and point this process's
    Django connection at it; yield the cluster; restore the connection and remove it all."""
    from django.db import connections

    from bench.common import database_recreate, migrate

    log_dir.mkdir(parents=True, exist_ok=True)
    cluster = PostgresCluster(spare_port(), log_dir)
    connection = connections["default"]
    saved = dict(connection.settings_dict)
    try:
        cluster.init()
        cluster.start()
        database_recreate(cluster.server_url, name)
        cluster.url = f"{cluster.server_url}/{name}"
        migrate({**os.environ, "DATABASE_URL": cluster.url, "CELERY_BROKER_URL": "memory://"})
        connection.close()
        connection.settings_dict.update(
            NAME=name, HOST="127.0.0.1", PORT=str(cluster.port), USER="postgres", PASSWORD=""
        )
        yield cluster
    finally:
        connection.close()
        connection.settings_dict.clear()
        connection.settings_dict.update(saved)
        cluster.stop()


class Worker(Process):
    def stop(self, timeout: float = 20) -> None:
        """Warm shutdown: SIGTERM to the main process only (it stops its pool)."""
        if self.alive():
            assert self.proc is not None
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()

    def __init__(self, index: int, config: SoakConfig, env: dict[str, str]) -> None:
        command = [sys.executable, "-m", "celery", "-A", "config", "worker"]
        command += ["--queues", "steps,sweeps", "--concurrency", str(config.concurrency)]
        command += ["--pool", "prefork", "--loglevel", "INFO", "--without-mingle"]
        command += ["--without-gossip", "--hostname", f"soak{index}@%h"]
        super().__init__(f"worker{index}", command, env, config.log_dir)
        self.started_at = 0.0
        self.ready_seconds: list[float] = []
        self.waiting_ready = False

    def start(self) -> None:
        super().start()
        self.started_at = time.monotonic()
        self.waiting_ready = True

    def check_ready(self) -> None:
        if self.waiting_ready and self.log_has(b" ready."):
            self.ready_seconds.append(time.monotonic() - self.started_at)
            self.waiting_ready = False


# --- the webhook receiver -----------------------------------------------------------------


class Receiver:
    """Records the ``webhook-id`` of every request it gets; answers 200."""

    def __init__(self) -> None:
        self.ids: list[str] = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                self.rfile.read(length)
                with receiver.lock:
                    receiver.ids.append(self.headers.get("webhook-id", ""))
                body = b'{"ok": true}'
                try:
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(body)))
                    self.send_header("Connection", "close")
                    self.end_headers()
                    self.wfile.write(body)
                except OSError:
                    pass  # the worker was killed while we answered
                self.close_connection = True

            def log_message(self, format: str, *args: Any) -> None:
                pass

        class Server(ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request: Any, client_address: Any) -> None:
                pass

        self.server = Server(("127.0.0.1", 0), Handler)
        self.port = int(self.server.server_address[1])
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


# --- the API client ---------------------------------------------------------------------


class Api:
    def __init__(self, base: str, token: str) -> None:
        self.base = base
        self.token = token

    def call(
        self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None
    ) -> tuple[int, Any]:
        """(status, JSON body); status 0 when there was no answer."""
        request = urllib.request.Request(  # noqa: S310  (http://127.0.0.1 only)
            self.base + path,
            data=None if body is None else json.dumps(body).encode(),
            method=method,
            headers={
                "Content-Type": "application/json",
                "Authorization": f"Token {self.token}",
                **(headers or {}),
            },
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
                return response.status, json.loads(response.read() or b"null")
        except urllib.error.HTTPError as exc:
            try:
                return exc.code, json.loads(exc.read() or b"null")
            except ValueError:
                return exc.code, None
        except (OSError, ValueError):
            return 0, None


# --- the soak ---------------------------------------------------------------------------


@dataclass
class Faults:
    kills: int = 0
    redis_restarts: int = 0
    pg_terminations: int = 0
    backends_terminated: int = 0
    last_at: float = 0.0
    log: list[str] = field(default_factory=list)


def workflow_documents(tag: str, hook_url: str, assignee: str, delay: int) -> list[dict]:
    deal = {"entity_type": "deal", "entity_id": "{{deal_id}}"}
    order = {
        "slug": f"soak-order-{tag}",
        "name": f"Soak order {tag}",
        "triggers": [{"event_type": f"soak.{tag}.order"}],
        "steps": [
            {"key": "received", "type": "add_note", "config": {**deal, "note": "received {{n}}"}},
            {
                "key": "amount",
                "type": "update_field",
                "config": {**deal, "field": "amount", "value": "{{amount}}"},
            },
            {"key": "pause", "type": "delay", "config": {"for": f"{delay} seconds"}},
            {
                "key": "notify",
                "type": "call_webhook",
                "config": {"url": hook_url, "body": {"n": "{{n}}", "deal": "{{deal_id}}"}},
            },
            {
                "key": "chain",
                "type": "emit_event",
                "config": {
                    "type": f"soak.{tag}.chained",
                    "payload": {"deal_id": "{{deal_id}}", "n": "{{n}}"},
                },
            },
            {
                "key": "review",
                "type": "create_task",
                "config": {"title": "Soak {{n}}", "assignee": assignee, "wait": True},
            },
            {"key": "done", "type": "add_note", "config": {**deal, "note": "done {{n}}"}},
        ],
    }
    chained = {
        "slug": f"soak-chained-{tag}",
        "name": f"Soak chained {tag}",
        "triggers": [{"event_type": f"soak.{tag}.chained"}],
        "steps": [
            {"key": "chained", "type": "add_note", "config": {**deal, "note": "chained {{n}}"}},
        ],
    }
    return [order, chained]


def process_env(database_url: str, redis_url: str, config: SoakConfig, hook_port: int) -> dict:
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "CELERY_BROKER_URL": redis_url,
        "CACHE_URL": redis_url,
        "CHANNELS_REDIS_URL": redis_url,
        "DEBUG": "0",
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "SESSION_COOKIE_SECURE": "0",
        "CSRF_COOKIE_SECURE": "0",
        "FLOWDESK_WEBHOOK_ALLOW_HOSTS": f"127.0.0.1:{hook_port}",
        "FLOWDESK_SWEEP_OUTBOX_SECONDS": str(config.sweep_seconds),
        "FLOWDESK_SWEEP_WAKE_SECONDS": str(config.sweep_seconds),
        "FLOWDESK_SWEEP_STALE_SECONDS": str(config.sweep_seconds),
        "FLOWDESK_STALE_RUN_SECONDS": str(config.stale_seconds),
        "FLOWDESK_OUTBOX_GRACE_SECONDS": "10",
        "THROTTLE_EVENTS": "1000000/min",
        "PYTHONUNBUFFERED": "1",
    }
    env.pop("DJANGO_SETTINGS_MODULE", None)
    return env


def terminate_backends() -> int:
    """Terminate every other connection to this database (never another database's)."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
            " AND backend_type = 'client backend'"
        )
        return int(cursor.fetchone()[0])


def run_soak(
    config: SoakConfig, database_url: str, cluster: PostgresCluster | None = None
) -> dict[str, Any]:
    """Run the soak against ``database_url`` (migrated; Django set up on it in this process)
    and return its figures, ``problems`` listing every check that failed. With ``cluster``
    (the private one ``database_url`` is on) the database fault is a restart of it; without,
    every connection to the database is terminated instead."""
    from django.contrib.auth import get_user_model
    from rest_framework.authtoken.models import Token

    from automation.catalogue import declare_event
    from crm.models import Deal
    from workflows.services import workflow_save

    rng = random.Random(config.seed)
    config.log_dir.mkdir(parents=True, exist_ok=True)
    tag = datetime.now(UTC).strftime("t%Y%m%d%H%M%S")
    started = time.monotonic()
    redis_server = RedisServer(spare_port(), config.log_dir)
    receiver = Receiver()
    receiver.start()
    env = process_env(database_url, redis_server.url, config, receiver.port)
    user = get_user_model().objects.create_superuser(
        f"soak-{tag}", f"soak-{tag}@example.com", "soak-pass-2026"
    )
    token = Token.objects.create(user=user).key
    for event_type in (f"soak.{tag}.order", f"soak.{tag}.chained"):
        declare_event(event_type, description="An event of the chaos soak (free-form).")
    for document in workflow_documents(
        tag, f"http://127.0.0.1:{receiver.port}/hook", user.email, config.delay_seconds
    ):
        workflow_save(document=document)
    deals = Deal.objects.bulk_create(
        [Deal(name=f"Soak {tag} {n}") for n in range(config.events)], batch_size=1000
    )
    web_port = spare_port()
    web = Process(
        "web",
        [*DAPHNE, "--port", str(web_port), "config.asgi:application"],
        env,
        config.log_dir,
    )
    beat = Process(
        "beat",
        [*SUPERVISE_BEAT, "--scheduler", "django_celery_beat.schedulers:DatabaseScheduler"],
        env,
        config.log_dir,
    )
    workers = [Worker(i, config, env) for i in range(config.workers)]
    api = Api(f"http://127.0.0.1:{web_port}", token)
    faults = Faults()
    stop = threading.Event()
    posted: dict[int, int] = {}  # n -> event id
    post_attempts = Counter[str]()
    completions = Counter[str]()
    try:
        redis_server.start()
        web.start()
        beat.start()
        for worker in workers:
            worker.start()
        wait_until(lambda: api.call("GET", "/healthz")[0] in (200, 503), 90, "the web server")
        wait_until(lambda: all(w.log_has(b" ready.") for w in workers), 120, "the workers")
        for worker in workers:
            worker.check_ready()
        setup_seconds = time.monotonic() - started
        log(
            f"soak {tag}: {config.events} events, {config.workers} workers,"
            f" setup {setup_seconds:.0f}s"
        )

        numbers = iter(range(config.events))
        numbers_lock = threading.Lock()

        def poster() -> None:
            while not stop.is_set():
                with numbers_lock:
                    n = next(numbers, None)
                if n is None:
                    return
                payload = {"deal_id": deals[n].pk, "n": n, "amount": n + 1}
                body = {"type": f"soak.{tag}.order", "payload": payload}
                key = {"Idempotency-Key": f"soak-{tag}-{n}"}
                while not stop.is_set():
                    status, answer = api.call("POST", "/api/v1/events/", body, key)
                    post_attempts[str(status)] += 1
                    if status == 202:
                        posted[n] = int(answer["id"])
                        break
                    time.sleep(0.5)

        def completer(part: int) -> None:
            while not stop.is_set():
                status, page = api.call("GET", "/api/v1/tasks/?open=true&assignee=me")
                tasks = page.get("results", []) if status == 200 and page else []
                tasks = [task for task in tasks if task["id"] % COMPLETERS == part]
                for task in tasks:
                    if stop.is_set():
                        return
                    api.call("POST", f"/api/v1/tasks/{task['id']}/transition/", {"action": "start"})
                    status, _ = api.call("POST", f"/api/v1/tasks/{task['id']}/complete/", {})
                    completions[str(status)] += 1
                if not tasks:
                    time.sleep(0.5)

        posting_started = time.monotonic()
        posters = [threading.Thread(target=poster, daemon=True) for _ in range(config.posters)]
        helpers = [
            threading.Thread(target=completer, args=(part,), daemon=True)
            for part in range(COMPLETERS)
        ]
        for thread in posters + helpers:
            thread.start()

        finished_at = chaos_loop(
            config, rng, tag, workers, redis_server, faults, posters, posting_started, cluster
        )
        posting_seconds = max(posting_done_at(posters, posting_started) - posting_started, 1e-9)
        settled = finished_at is not None
        if settled:
            time.sleep(3)  # late duplicates, if any, have a moment to show
    finally:
        stop.set()
        for worker in workers:
            worker.stop()
        beat.stop()
        web.stop()
        redis_server.stop()
        receiver.stop()

    figures = check(tag, config, posted, receiver.ids)
    end = finished_at or time.monotonic()
    figures.update(
        {
            "tag": tag,
            "config": {k: str(v) if isinstance(v, Path) else v for k, v in asdict(config).items()},
            "settled": settled,
            "setup_seconds": round(setup_seconds, 1),
            "posting_seconds": round(posting_seconds, 1),
            "events_per_second_posted": round(len(posted) / posting_seconds, 1),
            "runs_per_second_end_to_end": round(
                figures["runs_completed"] / max(end - posting_started, 1e-9), 2
            ),
            "seconds_first_post_to_all_final": round(end - posting_started, 1),
            "recovery_seconds_after_last_fault": round(end - faults.last_at, 1)
            if faults.last_at
            else None,
            "kills": faults.kills,
            "redis_restarts": faults.redis_restarts,
            "pg_terminations": faults.pg_terminations,
            "pg_backends_terminated": faults.backends_terminated,
            "pg_fault": "restart" if cluster is not None else "terminate",
            "worker_start_to_ready_seconds_mean": round(
                mean([s for w in workers for s in w.ready_seconds]), 1
            ),
            "post_answers": dict(post_attempts),
            "task_completion_answers": dict(completions),
            "fault_log": faults.log,
        }
    )
    if not settled:
        figures["problems"].append(f"not settled within {config.settle_timeout:.0f}s")
    return figures


def mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else 0.0


def posting_done_at(posters: list[threading.Thread], default: float) -> float:
    return max(getattr(t, "done_at", default) for t in posters)


def chaos_loop(
    config: SoakConfig,
    rng: random.Random,
    tag: str,
    workers: list[Worker],
    redis_server: RedisServer,
    faults: Faults,
    posters: list[threading.Thread],
    posting_started: float,
    cluster: PostgresCluster | None = None,
) -> float | None:
    """Inject the faults while the work goes on; return when every run is final (the time),
    or None after the settle timeout."""
    from automation.models import Run

    def fault(message: str) -> None:
        faults.last_at = time.monotonic()
        faults.log.append(f"{faults.last_at - posting_started:7.1f}s {message}")
        log(message)

    def schedule_fractions(count: int, low: float, high: float) -> list[float]:
        return [low + (high - low) * (i + 0.5) / count for i in range(count)] if count else []

    redis_at = schedule_fractions(config.redis_restarts, 0.15, 0.55)
    pg_at = schedule_fractions(config.pg_terminations, 0.35, 0.8)
    next_kill = time.monotonic() + config.kill_every * rng.uniform(0.5, 1.5)
    restarts: list[tuple[float, Worker]] = []
    expected = 2 * config.events  # order runs and chained runs
    deadline = time.monotonic() + config.settle_timeout
    last_report = 0.0
    while time.monotonic() < deadline:
        now = time.monotonic()
        for thread in posters:
            if not thread.is_alive() and not hasattr(thread, "done_at"):
                thread.done_at = now  # type: ignore[attr-defined]
        for worker in workers:
            worker.check_ready()
        for due, worker in list(restarts):
            if now >= due:
                restarts.remove((due, worker))
                worker.start()
        try:
            rows = Counter(
                Run.objects.filter(workflow__slug__endswith=tag).values_list("status", flat=True)
            )
        except Exception:  # our own connection was among those terminated
            from django.db import connection

            connection.close()
            continue
        final = sum(rows[s] for s in FINAL)
        done = final / expected
        if now - last_report >= 10:
            last_report = now
            log(f"runs final {final}/{expected}, by status {dict(rows)}")
        posting_done = all(hasattr(t, "done_at") for t in posters)
        if posting_done and final >= expected and not restarts:
            return now
        if redis_at and done >= redis_at[0]:
            redis_at.pop(0)
            redis_server.stop(timeout=10)
            time.sleep(1)
            redis_server.start()
            faults.redis_restarts += 1
            fault("redis restarted")
        if pg_at and done >= pg_at[0]:
            pg_at.pop(0)
            if cluster is not None:
                cluster.restart()
                faults.pg_terminations += 1
                fault("postgresql restarted")
            else:
                killed = terminate_backends()
                faults.pg_terminations += 1
                faults.backends_terminated += killed
                fault(f"{killed} database connections terminated")
        ready = [w for w in workers if w.alive() and not w.waiting_ready]
        if now >= next_kill and faults.kills < config.kills and ready:
            # A worker that is up and ready; the last one only when it alone runs.
            victim = rng.choice(ready)
            if len(ready) > 1 or len(workers) == 1:
                victim.kill()
                faults.kills += 1
                fault(f"{victim.name} SIGKILLed (kill {faults.kills})")
                restarts.append((time.monotonic() + 1.0, victim))
            next_kill = time.monotonic() + config.kill_every * rng.uniform(0.5, 1.5)
        time.sleep(0.5)
    return None


def check(tag: str, config: SoakConfig, posted: dict[int, int], hook_ids: list[str]) -> dict:
    """Count what the database and the receiver hold; every count that is off is a problem."""
    from django.contrib.contenttypes.models import ContentType
    from django.db.models import Count

    from automation.models import ActionRun, Event, Note, Run
    from crm.models import Deal
    from tasks_inbox.models import Task

    problems: list[str] = []
    n = config.events
    order_type, chained_type = f"soak.{tag}.order", f"soak.{tag}.chained"
    order_events = Event.objects.filter(type=order_type)
    chained_events = Event.objects.filter(type=chained_type)
    runs = Run.objects.filter(workflow__slug=f"soak-order-{tag}")
    chained_runs = Run.objects.filter(workflow__slug=f"soak-chained-{tag}")

    def doubled(queryset: Any, column: str) -> tuple[int, int]:
        """(keys present, extra rows beyond one per key)."""
        counts = list(queryset.values(column).annotate(c=Count("id")).values_list("c", flat=True))
        return len(counts), sum(c - 1 for c in counts)

    stored_ids = set(order_events.values_list("pk", flat=True))
    lost = [k for k, event_id in posted.items() if event_id not in stored_ids]
    not_posted = n - len(posted)
    with_run, run_dupes = doubled(runs, "event_id")
    with_chained, chained_event_dupes = doubled(chained_events, "caused_by_run_id")
    with_chained_run, chained_run_dupes = doubled(chained_runs, "event_id")
    run_ids = list(runs.values_list("pk", flat=True))
    field_updates = Event.objects.filter(type="deal.updated", caused_by_run_id__in=run_ids)
    with_update, update_dupes = doubled(field_updates, "caused_by_run_id")
    with_task, task_dupes = doubled(
        Task.objects.filter(origin_action_run__run__in=run_ids), "origin_action_run__run"
    )
    notes = Note.objects.filter(
        content_type=ContentType.objects.get_for_model(Deal),
        object_id__in=[
            str(pk)
            for pk in Deal.objects.filter(name__startswith=f"Soak {tag} ").values_list(
                "pk", flat=True
            )
        ],
    )
    note_counts = Counter(notes.values_list("object_id", "note"))
    note_dupes = sum(c - 1 for c in note_counts.values())
    statuses = Counter(runs.values_list("status", flat=True)) + Counter(
        chained_runs.values_list("status", flat=True)
    )
    stuck = sum(c for s, c in statuses.items() if s not in FINAL)
    not_completed = sum(c for s, c in statuses.items() if s != "completed")
    hook_steps = {
        f"flowdesk-ar-{pk}"
        for pk in ActionRun.objects.filter(run__in=run_ids, step_key="notify").values_list(
            "pk", flat=True
        )
    }
    received = Counter(hook_ids)
    missing_hooks = len(hook_steps - set(received))
    unknown_hooks = len(set(received) - hook_steps)
    duplicates = (
        run_dupes + chained_event_dupes + chained_run_dupes + update_dupes + task_dupes + note_dupes
    )

    expect = {
        "events posted": (len(posted), n),
        "events stored": (order_events.count(), n),
        "events lost": (len(lost), 0),
        "events with a run": (with_run, n),
        "chained events (one per run)": (with_chained, n),
        "chained events with a run": (with_chained_run, n),
        "field updates (one per run)": (with_update, n),
        "tasks (one per run)": (with_task, n),
        "notes": (len(note_counts), 3 * n),
        "duplicate effects": (duplicates, 0),
        "runs not final (stuck)": (stuck, 0),
        "runs final but not completed": (not_completed - stuck, 0),
        "webhooks missing": (missing_hooks, 0),
        "webhook ids not of a step": (unknown_hooks, 0),
    }
    for what, (got, wanted) in expect.items():
        if got != wanted:
            problems.append(f"{what}: {got}, expected {wanted}")
    return {
        "events": n,
        "events_posted": len(posted),
        "events_not_posted": not_posted,
        "events_lost": len(lost),
        "runs": with_run + with_chained_run,
        "runs_completed": statuses.get("completed", 0),
        "runs_by_status": dict(statuses),
        "stuck": stuck,
        "duplicates": {
            "runs": run_dupes + chained_run_dupes,
            "chained_events": chained_event_dupes,
            "field_updates": update_dupes,
            "tasks": task_dupes,
            "notes": note_dupes,
        },
        "webhook_requests": len(hook_ids),
        "webhook_ids": len(received),
        "webhook_redeliveries": len(hook_ids) - len(received),
        "problems": problems,
    }


def report(figures: dict[str, Any]) -> str:
    lines = [
        f"events posted      {figures['events_posted']}/{figures['events']}"
        f"  ({figures['events_per_second_posted']}/s over {figures['posting_seconds']}s)",
        f"runs               {figures['runs']} ({figures['runs_completed']} completed,"
        f" {figures['stuck']} stuck) by status {figures['runs_by_status']}",
        f"end to end         {figures['seconds_first_post_to_all_final']}s to all final"
        f" ({figures['runs_per_second_end_to_end']} runs/s)",
        f"lost / duplicates  {figures['events_lost']} lost, {figures['duplicates']}",
        f"webhooks           {figures['webhook_requests']} requests, {figures['webhook_ids']}"
        f" distinct webhook-ids, {figures['webhook_redeliveries']} redeliveries",
        f"faults             {figures['kills']} worker kills, {figures['redis_restarts']} Redis"
        f" restarts, {figures['pg_terminations']} PostgreSQL "
        + (
            "restarts"
            if figures.get("pg_fault") == "restart"
            else f"terminations ({figures['pg_backends_terminated']} connections)"
        ),
        f"recovery           {figures['recovery_seconds_after_last_fault']}s from the last fault"
        f" to all final; a killed worker ready again in"
        f" {figures['worker_start_to_ready_seconds_mean']}s (mean)",
        "checks             "
        + ("all passed" if not figures["problems"] else "; ".join(figures["problems"])),
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    from bench.common import database_recreate, migrate

    defaults = SoakConfig()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=defaults.events)
    parser.add_argument("--workers", type=int, default=defaults.workers)
    parser.add_argument("--concurrency", type=int, default=defaults.concurrency)
    parser.add_argument("--kills", type=int, default=defaults.kills, help="at most this many")
    parser.add_argument("--kill-every", type=float, default=defaults.kill_every, metavar="S")
    parser.add_argument("--redis-restarts", type=int, default=defaults.redis_restarts)
    parser.add_argument("--pg-terminations", type=int, default=defaults.pg_terminations)
    parser.add_argument("--stale-seconds", type=int, default=defaults.stale_seconds)
    parser.add_argument("--settle-timeout", type=float, default=defaults.settle_timeout)
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument(
        "--postgres",
        default="",
        help="an external PostgreSQL server URL without a database name (its connections are"
        " terminated instead of a restart); default: a private cluster the soak restarts",
    )
    parser.add_argument(
        "--database",
        default="flowdesk_soak",
        help="database the soak DROPS and creates (must contain 'soak'; default flowdesk_soak)",
    )
    args = parser.parse_args(argv)
    if "soak" not in args.database:
        parser.error("--database must contain 'soak': the soak drops it")
    config = SoakConfig(
        events=args.events,
        workers=args.workers,
        concurrency=args.concurrency,
        kills=args.kills,
        kill_every=args.kill_every,
        redis_restarts=args.redis_restarts,
        pg_terminations=args.pg_terminations,
        stale_seconds=args.stale_seconds,
        settle_timeout=args.settle_timeout,
        seed=args.seed,
    )
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    config.log_dir = ROOT / "var" / "bench" / f"soak-logs-{stamp}"
    # This process talks to the database only; its cache is a file of its own.
    os.environ.update(
        CELERY_BROKER_URL="memory://", CACHE_URL="", DJANGO_SETTINGS_MODULE="config.settings"
    )
    if args.postgres:
        database_url = f"{args.postgres.rstrip('/')}/{args.database}"
        database_recreate(args.postgres, args.database)
        os.environ["DATABASE_URL"] = database_url
        migrate({**os.environ})
        import django

        django.setup()
        figures = run_soak(config, database_url)
    else:
        # Settings need some DATABASE_URL to load; the connection is pointed at the cluster.
        os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:1/unused")
        import django

        django.setup()
        with private_database(config.log_dir, args.database) as cluster:
            figures = run_soak(config, cluster.url, cluster)
    out = ROOT / "var" / "bench" / f"soak-{stamp}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(figures, indent=2) + "\n")
    print(report(figures))
    print(f"figures: {out}; logs: {config.log_dir}")
    return 0 if not figures["problems"] else 1


if __name__ == "__main__":
    sys.exit(main())
