"""Engine benchmark: C0 (raw Celery no-op drain), R1 (one-step runs end to end), latency.

Run with ``python -m bench.engine`` (or ``make bench``); ``--help`` lists the knobs. The
benchmark owns a database (dropped and created again each run) and a Redis database
(flushed), starts its own Celery workers with the production worker settings, and writes
its figures to ``var/bench/engine-<timestamp>.json``. See bench/README.md.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psycopg
import redis
from psycopg import sql

ROOT = Path(__file__).resolve().parent.parent
QUEUES = ("steps", "sweeps")
EVENT_TYPE = "bench.ping"
GOAL = 0.4

BENCH_WORKFLOW: dict[str, Any] = {
    "slug": "bench-ping-note",
    "name": "Bench: note on ping",
    "description": "One add_note step per bench.ping event (the R1 benchmark).",
    "is_active": True,
    "triggers": [{"event_type": EVENT_TYPE}],
    "steps": [
        {"key": "note", "type": "add_note",
         "config": {"entity_type": "lead", "entity_id": "{{lead_id}}",
                    "note": "bench ping {{seq}}"}},
    ],
}


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


# --- arguments and environment ----------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.engine",
        description="Measure C0 (Celery no-op drain), R1 (one-step runs, event to committed "
                    "note) and event-to-step-done latency against PostgreSQL and Redis.",
    )
    parser.add_argument("--n", type=int, default=2000,
                        help="tasks for C0 and events for R1 (default 2000)")
    parser.add_argument("--concurrency", type=int, default=2,
                        help="prefork processes of the worker (default 2, as in production)")
    parser.add_argument("--latency-load", type=float, default=0.5,
                        help="steady emit rate of the latency phase, as a fraction of R1 "
                             "(default 0.5)")
    parser.add_argument("--latency-seconds", type=float, default=15.0,
                        help="how long the latency phase emits events (default 15)")
    parser.add_argument("--postgres", default="postgres://postgres@127.0.0.1:5432",
                        help="PostgreSQL server URL without a database name")
    parser.add_argument("--database", default="flowdesk_bench",
                        help="database the benchmark DROPS and creates (must contain 'bench')")
    parser.add_argument("--broker", default="redis://127.0.0.1:6379/14",
                        help="Redis URL of the broker; the benchmark FLUSHES this database")
    parser.add_argument("--output", type=Path, default=None,
                        help="JSON file to write (default var/bench/engine-<timestamp>.json)")
    args = parser.parse_args(argv)
    if "bench" not in args.database:
        parser.error("--database must contain 'bench': the benchmark drops it")
    if urlsplit(args.broker).path.strip("/") in ("", "0"):
        parser.error("--broker must name a Redis database other than 0: the benchmark "
                     "flushes it")
    if args.n < 10 or args.concurrency < 1 or not 0 < args.latency_load <= 1:
        parser.error("need --n >= 10, --concurrency >= 1 and 0 < --latency-load <= 1")
    return args


def bench_env(args: argparse.Namespace) -> dict[str, str]:
    """The environment of this process (before Django loads) and of the workers."""
    env = {
        "DATABASE_URL": f"{args.postgres.rstrip('/')}/{args.database}",
        "CELERY_BROKER_URL": args.broker,
        "CACHE_URL": args.broker,
        "DEBUG": "0",
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "PYTHONUNBUFFERED": "1",
    }
    os.environ.update(env)
    return {**os.environ, **env}


def database_recreate(args: argparse.Namespace) -> None:
    with psycopg.connect(f"{args.postgres.rstrip('/')}/postgres", autocommit=True) as conn:
        name = sql.Identifier(args.database)
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(name))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(name))


def migrate(env: dict[str, str]) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "manage.py", "migrate", "--noinput", "--verbosity", "0"],
                   cwd=ROOT, env=env, check=True)
    return time.perf_counter() - started


# --- workers ----------------------------------------------------------------------------


class Worker:
    """A ``celery worker`` subprocess with the production worker settings."""

    def __init__(self, name: str, concurrency: int, env: dict[str, str], log_dir: Path
                 ) -> None:
        self.name = name
        self.command = [
            sys.executable, "-m", "celery", "-A", "config", "worker",
            "--queues", ",".join(QUEUES), "--concurrency", str(concurrency),
            "--pool", "prefork", "--loglevel", "WARNING",
            "--without-mingle", "--without-gossip",
            "--include", "bench.worker_tasks", "--hostname", f"bench-{name}@%h",
        ]
        self.env = env
        self.log_path = log_dir / f"worker-{name}.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.started_at = 0.0

    def start(self) -> Worker:
        log_file = open(self.log_path, "wb")  # noqa: SIM115  (owned by the subprocess)
        self.started_at = time.time()
        self.proc = subprocess.Popen(self.command, cwd=ROOT, env=self.env, stdout=log_file,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        log_file.close()
        return self

    def check_alive(self) -> None:
        if self.proc is not None and self.proc.poll() is not None:
            raise RuntimeError(f"worker {self.name} exited ({self.proc.returncode}); "
                               f"log: {self.log_path}")

    def stop(self) -> None:
        """Warm shutdown (SIGTERM to the worker's own process group), then SIGKILL."""
        if self.proc is None or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)


def wait_until(predicate: Callable[[], bool], worker: Worker, timeout: float,
               interval: float, what: str) -> float:
    """Poll until ``predicate()``; returns the time (epoch seconds) it became true."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return time.time()
        worker.check_alive()
        time.sleep(interval)
    raise RuntimeError(f"timed out after {timeout:.0f}s waiting for {what}; "
                       f"worker log: {worker.log_path}")


def queue_depth(r: redis.Redis) -> int:
    return sum(int(r.llen(queue)) for queue in QUEUES)


# --- phases -----------------------------------------------------------------------------


def phase_c0(args: argparse.Namespace, env: dict[str, str], r: redis.Redis, log_dir: Path
             ) -> dict[str, Any]:
    """Enqueue N no-op tasks with no worker running, then time a fresh worker draining them."""
    from bench.worker_tasks import COUNT_KEY, FIRST_KEY, LAST_KEY, noop
    from config.celery import app

    n = args.n
    r.delete(COUNT_KEY, FIRST_KEY, LAST_KEY)
    started = time.perf_counter()
    with app.producer_or_acquire() as producer:
        for _ in range(n):
            noop.apply_async(producer=producer)
    enqueue_seconds = time.perf_counter() - started
    depth = queue_depth(r)
    if depth != n:
        raise RuntimeError(f"C0: expected {n} queued messages, found {depth}")
    log(f"C0: {n} no-op tasks queued in {enqueue_seconds:.2f}s; starting the worker")
    worker = Worker("c0", args.concurrency, env, log_dir).start()
    try:
        done_at = wait_until(lambda: int(r.get(COUNT_KEY) or 0) >= n, worker,
                             timeout=max(120.0, n / 10), interval=0.01, what="C0 drain")
    finally:
        worker.stop()
    first = float(r.get(FIRST_KEY))
    last = float(r.get(LAST_KEY))
    window = max(last - first, 1e-6)
    rate = (n - 1) / window
    log(f"C0: drained in {window:.2f}s after the first completion -> {rate:.0f} tasks/s")
    return {
        "tasks": n,
        "tasks_per_second": round(rate, 1),
        "drain_window_seconds": round(window, 3),
        "worker_start_to_drained_seconds": round(done_at - worker.started_at, 3),
        "worker_start_to_first_completion_seconds": round(first - worker.started_at, 3),
        "enqueue_seconds": round(enqueue_seconds, 3),
        "task": "bench.noop (INCR + SETNX + SET in one pipelined Redis round trip)",
        "worker_log": str(worker.log_path),
    }


def bench_setup() -> int:
    """A lead to note on and the one-step workflow; returns the lead's id."""
    from crm.models import Lead
    from workflows.services import workflow_save

    # bulk_create raises no model event: nothing but the benchmark's own events is queued.
    (lead,) = Lead.objects.bulk_create([Lead(company_name="Bench Co")])
    workflow_save(document=BENCH_WORKFLOW)
    return int(lead.pk)


def emit_events(lead_id: int, count: int, start_seq: int, batch: int = 100) -> None:
    """``automation.events.emit`` in transactions of ``batch`` events (dispatch on commit)."""
    from django.db import transaction

    from automation.events import emit

    for offset in range(0, count, batch):
        with transaction.atomic():
            for seq in range(start_seq + offset, start_seq + min(offset + batch, count)):
                emit(EVENT_TYPE, {"lead_id": lead_id, "seq": seq})


def run_counts(first_event_id: int) -> tuple[int, int, int]:
    """(completed runs, notes, failed or cancelled runs) for events from ``first_event_id``."""
    from automation.models import Note, Run

    runs = Run.objects.filter(event_id__gte=first_event_id)
    completed = runs.filter(status="completed").count()
    bad = runs.filter(status__in=["failed", "cancelled"]).count()
    notes = Note.objects.filter(action_run__run__event_id__gte=first_event_id).count()
    return completed, notes, bad


def next_event_id() -> int:
    from automation.models import Event

    last = Event.objects.order_by("-pk").values_list("pk", flat=True).first()
    return (last or 0) + 1


def phase_r1(args: argparse.Namespace, env: dict[str, str], r: redis.Redis, lead_id: int,
             log_dir: Path) -> tuple[dict[str, Any], Worker]:
    """Emit N events with no worker running, then time a fresh worker turning them into
    completed one-step runs with their notes. Returns the still-running worker."""
    from django.db.models import Max, Min

    from automation.models import Run

    n = args.n
    first_event_id = next_event_id()
    started = time.perf_counter()
    emit_events(lead_id, n, start_seq=0)
    emit_seconds = time.perf_counter() - started
    depth = queue_depth(r)
    if depth != n:
        raise RuntimeError(f"R1: expected {n} queued dispatch messages, found {depth}")
    log(f"R1: {n} events emitted in {emit_seconds:.2f}s; starting the worker")
    worker = Worker("r1", args.concurrency, env, log_dir).start()

    def drained() -> bool:
        completed, notes, bad = run_counts(first_event_id)
        if bad:
            raise RuntimeError(f"R1: {bad} runs failed; see the runs in {args.database}")
        return completed >= n and notes >= n

    try:
        done_at = wait_until(drained, worker, timeout=max(150.0, n / 5), interval=0.1,
                             what="R1 runs")
    except BaseException:
        worker.stop()
        raise
    stats = Run.objects.filter(event_id__gte=first_event_id).aggregate(
        first=Min("finished_at"), last=Max("finished_at"))
    window = max((stats["last"] - stats["first"]).total_seconds(), 1e-6)
    rate = (n - 1) / window
    completed, notes, _ = run_counts(first_event_id)
    log(f"R1: {completed} runs / {notes} notes in {window:.2f}s after the first completion "
        f"-> {rate:.1f} runs/s")
    return {
        "runs": n,
        "runs_per_second": round(rate, 1),
        "drain_window_seconds": round(window, 3),
        "worker_start_to_drained_seconds": round(done_at - worker.started_at, 3),
        "worker_start_to_first_completion_seconds": round(
            stats["first"].timestamp() - worker.started_at, 3),
        "emit_seconds": round(emit_seconds, 3),
        "completed_runs": completed,
        "notes": notes,
        "worker_log": str(worker.log_path),
    }, worker


def percentile(values: list[float], pct: float) -> float:
    """Nearest-rank percentile of ``values`` (sorted or not)."""
    ordered = sorted(values)
    rank = max(math.ceil(pct / 100 * len(ordered)), 1)
    return ordered[rank - 1]


def phase_latency(args: argparse.Namespace, worker: Worker, lead_id: int, r1_rate: float
                  ) -> dict[str, Any]:
    """Emit events one transaction each at a steady rate below capacity to a warm worker;
    latency = ActionRun.finished_at - Event.occurred_at, both from the database."""
    from django.db import transaction

    from automation.events import emit
    from automation.models import ActionRun

    rate = max(args.latency_load * r1_rate, 1.0)
    count = max(int(rate * args.latency_seconds), 20)
    first_event_id = next_event_id()
    log(f"latency: emitting {count} events at {rate:.1f}/s ({args.latency_load:.0%} of R1) "
        f"to the running worker")
    started = time.perf_counter()
    late = 0.0
    for i in range(count):
        delay = started + i / rate - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        else:
            late = max(late, -delay)
        with transaction.atomic():
            emit(EVENT_TYPE, {"lead_id": lead_id, "seq": args.n + i})
    emit_seconds = time.perf_counter() - started
    wait_until(lambda: run_counts(first_event_id)[0] >= count, worker, timeout=120,
               interval=0.1, what="latency-phase runs")
    rows = list(ActionRun.objects.filter(run__event_id__gte=first_event_id)
                .values_list("finished_at", "run__event__occurred_at"))
    latencies = [(done - occurred).total_seconds() * 1000 for done, occurred in rows]
    p50, p99 = percentile(latencies, 50), percentile(latencies, 99)
    log(f"latency: p50 {p50:.1f} ms, p99 {p99:.1f} ms over {len(latencies)} runs")
    return {
        "events": count,
        "target_rate_per_second": round(rate, 1),
        "achieved_rate_per_second": round(count / emit_seconds, 1),
        "max_emit_lag_ms": round(late * 1000, 1),
        "p50_ms": round(p50, 1),
        "p90_ms": round(percentile(latencies, 90), 1),
        "p99_ms": round(p99, 1),
        "max_ms": round(max(latencies), 1),
        "mean_ms": round(statistics.fmean(latencies), 1),
        "min_ms": round(min(latencies), 1),
    }


# --- environment and report -------------------------------------------------------------


def environment(args: argparse.Namespace, r: redis.Redis) -> dict[str, Any]:
    from importlib.metadata import version

    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SHOW server_version")
        pg_version = cursor.fetchone()[0]
    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "python": platform.python_version(),
        "django": version("django"),
        "celery": version("celery"),
        "kombu": version("kombu"),
        "psycopg": version("psycopg"),
        "redis_py": version("redis"),
        "postgresql": pg_version,
        "redis": r.info("server")["redis_version"],
        "database": f"{args.postgres.rstrip('/')}/{args.database}",
        "broker": args.broker,
        "cpus": os.cpu_count(),
        "cpu": cpu,
        "platform": platform.platform(),
    }


def report(result: dict[str, Any]) -> str:
    c0, r1, lat, env = result["c0"], result["r1"], result["latency"], result["environment"]
    ratio = result["r1_over_c0"]
    verdict = "meets" if ratio >= GOAL else "BELOW"
    rows = [
        ("C0  Celery no-op drain", f"{c0['tasks_per_second']:.0f} tasks/s"),
        ("R1  one-step runs, event -> note", f"{r1['runs_per_second']:.1f} runs/s"),
        ("R1 / C0", f"{ratio:.3f}  ({verdict} the goal >= {GOAL})"),
        ("latency p50 (event -> step done)", f"{lat['p50_ms']:.1f} ms"),
        ("latency p99", f"{lat['p99_ms']:.1f} ms"),
        ("latency load", f"{lat['events']} events at {lat['achieved_rate_per_second']:.1f}/s "
                         f"({result['settings']['latency_load']:.0%} of R1)"),
        ("N (C0 tasks, R1 events)", str(result["settings"]["n"])),
        ("worker concurrency", f"{result['settings']['concurrency']} (prefork, acks late, "
                               f"prefetch 1, queue steps)"),
        ("Python / Django / Celery", f"{env['python']} / {env['django']} / {env['celery']}"),
        ("kombu / psycopg / redis-py", f"{env['kombu']} / {env['psycopg']} / {env['redis_py']}"),
        ("database", f"PostgreSQL {env['postgresql']} ({env['database']})"),
        ("broker", f"Redis {env['redis']} ({env['broker']})"),
        ("machine", f"{env['cpus']} CPUs, {env['cpu']}"),
        ("bench run time", f"{result['bench_seconds']:.1f} s"),
    ]
    width = max(len(label) for label, _ in rows)
    line = "-" * (width + 40)
    body = "\n".join(f"{label.ljust(width)}  {value}" for label, value in rows)
    return f"{line}\nFlowdesk engine benchmark\n{line}\n{body}\n{line}"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    bench_started = time.perf_counter()
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    env = bench_env(args)
    r = redis.Redis.from_url(args.broker)
    r.flushdb()
    log(f"database {args.database}: recreating and migrating")
    database_recreate(args)
    migrate_seconds = migrate(env)

    import django

    django.setup()
    from django.conf import settings

    out_dir = Path(settings.VAR_DIR) / "bench"
    log_dir = out_dir / f"logs-{stamp}"
    log_dir.mkdir(parents=True, exist_ok=True)
    lead_id = bench_setup()
    if queue_depth(r):
        raise RuntimeError("the broker queues are not empty after setup")

    c0 = phase_c0(args, env, r, log_dir)
    r1, worker = phase_r1(args, env, r, lead_id, log_dir)
    try:
        latency = phase_latency(args, worker, lead_id, r1["runs_per_second"])
    finally:
        worker.stop()

    result = {
        "benchmark": "engine",
        "timestamp": stamp,
        "settings": {
            "n": args.n, "concurrency": args.concurrency,
            "latency_load": args.latency_load, "latency_seconds": args.latency_seconds,
            "worker_command": " ".join(Worker("x", args.concurrency, env, log_dir).command[1:]),
            "acks_late": settings.CELERY_TASK_ACKS_LATE,
            "prefetch_multiplier": settings.CELERY_WORKER_PREFETCH_MULTIPLIER,
            "db_conn_max_age": settings.DATABASES["default"]["CONN_MAX_AGE"],
        },
        "c0": c0,
        "r1": r1,
        "r1_over_c0": round(r1["runs_per_second"] / c0["tasks_per_second"], 3),
        "goal_r1_over_c0": GOAL,
        "latency": latency,
        "migrate_seconds": round(migrate_seconds, 2),
        "environment": environment(args, r),
    }
    result["bench_seconds"] = round(time.perf_counter() - bench_started, 1)
    output = args.output or out_dir / f"engine-{stamp}.json"
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(result, indent=2) + "\n")
    print(report(result))
    print(f"figures: {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
