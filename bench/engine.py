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

import redis

from bench import common
from bench.common import ROOT, add_owned_services, check_owned_services, log, migrate
from bench.cpu import CpuMeter

QUEUES = ("steps", "sweeps")
EVENT_TYPE = "bench.ping"
GOAL = 0.4
STEADY_GOAL = 0.5
NOISE_WARNING = 0.10  # share of the machine used by other processes that voids a figure

BENCH_WORKFLOW: dict[str, Any] = {
    "slug": "bench-ping-note",
    "name": "Bench: note on ping",
    "description": "One add_note step per bench.ping event (the R1 benchmark).",
    "is_active": True,
    "triggers": [{"event_type": EVENT_TYPE}],
    "steps": [
        {
            "key": "note",
            "type": "add_note",
            "config": {
                "entity_type": "lead",
                "entity_id": "{{lead_id}}",
                "note": "bench ping {{seq}}",
            },
        },
    ],
}


# --- arguments and environment ----------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.engine",
        description="Measure C0 (Celery no-op drain), R1 (one-step runs, event to committed "
        "note) and event-to-step-done latency against PostgreSQL and Redis.",
    )
    parser.add_argument(
        "--n", type=int, default=2000, help="tasks for C0 and events for R1 (default 2000)"
    )
    parser.add_argument(
        "--concurrency",
        type=int,
        default=2,
        help="prefork processes of the worker (default 2, as in production)",
    )
    parser.add_argument(
        "--c0-repeat",
        type=int,
        default=3,
        help="C0 drains measured; the median is reported (default 3)",
    )
    parser.add_argument(
        "--c0-n",
        type=int,
        default=6000,
        help="tasks per C0 drain (default 6000: a window of several seconds)",
    )
    parser.add_argument(
        "--steady-rates",
        default="50,0.1x,100,0.2x,0.3x,0.4x,0.5x,0.6x,0.7x,0.8x,1x",
        help="the steady-traffic phase's rates (events/s, one event per transaction; '0.3x': "
        "that share of C0 in this run), tried in increasing order until one is not sustained",
    )
    parser.add_argument(
        "--steady-seconds",
        type=float,
        default=8.0,
        help="how long each steady-traffic rate emits (default 8)",
    )
    add_owned_services(parser, database="flowdesk_bench", broker="redis://127.0.0.1:6379/14")
    parser.add_argument(
        "--quiet-wait",
        type=float,
        default=0.0,
        help="before each phase, wait up to this many seconds for other "
        "processes to use less than 10%% of the machine (default 0)",
    )
    parser.add_argument(
        "--settings",
        default="config.settings",
        help="Django settings module of this process and the workers "
        "(to measure a settings change; default config.settings)",
    )
    parser.add_argument(
        "--output",
        type=Path,
        default=None,
        help="JSON file to write (default var/bench/engine-<timestamp>.json)",
    )
    args = parser.parse_args(argv)
    check_owned_services(parser, args)
    try:
        args.steady_rates = [
            (float(rate[:-1]), True) if rate.endswith("x") else (float(rate), False)
            for rate in args.steady_rates.split(",")
            if rate
        ]
    except ValueError:
        parser.error(
            "--steady-rates: a comma-separated list of numbers (events/s) or shares of C0 (0.3x)"
        )
    if (
        args.n < 10
        or args.concurrency < 1
        or args.c0_repeat < 1
        or args.c0_n < 10
        or not args.steady_rates
    ):
        parser.error(
            "need --n >= 10, --c0-n >= 10, --concurrency >= 1, --c0-repeat >= 1 and --steady-rates"
        )
    return args


def bench_env(args: argparse.Namespace) -> dict[str, str]:
    """The environment of this process (before Django loads) and of the workers."""
    env = {
        "DATABASE_URL": f"{args.postgres.rstrip('/')}/{args.database}",
        "CELERY_BROKER_URL": args.broker,
        "CACHE_URL": args.broker,
        "DEBUG": "0",
        "DJANGO_SETTINGS_MODULE": getattr(args, "settings", "config.settings"),
        "PYTHONUNBUFFERED": "1",
    }
    os.environ.update(env)
    return {**os.environ, **env}


def database_recreate(args: argparse.Namespace) -> None:
    common.database_recreate(args.postgres, args.database)


# --- workers ----------------------------------------------------------------------------


class Worker:
    """A ``celery worker`` subprocess with the production worker settings."""

    def __init__(self, name: str, concurrency: int, env: dict[str, str], log_dir: Path) -> None:
        self.name = name
        self.command = [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "config",
            "worker",
            "--queues",
            ",".join(QUEUES),
            "--concurrency",
            str(concurrency),
            "--pool",
            "prefork",
            "--loglevel",
            "WARNING",
            "--without-mingle",
            "--without-gossip",
            "--include",
            "bench.worker_tasks",
            "--hostname",
            f"bench-{name}@%h",
        ]
        self.env = env
        self.log_path = log_dir / f"worker-{name}.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.started_at = 0.0

    def start(self) -> Worker:
        log_file = open(self.log_path, "wb")  # noqa: SIM115  (owned by the subprocess)
        self.started_at = time.time()
        self.proc = subprocess.Popen(
            self.command,
            cwd=ROOT,
            env=self.env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log_file.close()
        return self

    def check_alive(self) -> None:
        if self.proc is not None and self.proc.poll() is not None:
            raise RuntimeError(
                f"worker {self.name} exited ({self.proc.returncode}); log: {self.log_path}"
            )

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


def wait_until(
    predicate: Callable[[], bool], worker: Worker, timeout: float, interval: float, what: str
) -> float:
    """Poll until ``predicate()``; returns the time (epoch seconds) it became true."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return time.time()
        worker.check_alive()
        time.sleep(interval)
    raise RuntimeError(
        f"timed out after {timeout:.0f}s waiting for {what}; worker log: {worker.log_path}"
    )


def queue_depth(r: redis.Redis) -> int:
    return sum(int(r.llen(queue)) for queue in QUEUES)


def wait_for_quiet(args: argparse.Namespace, phase: str) -> None:
    """On a shared machine, wait (up to ``--quiet-wait`` seconds) until others are idle."""
    if args.quiet_wait <= 0:
        return
    deadline = time.monotonic() + args.quiet_wait
    while True:
        meter = CpuMeter(args.database).start()
        time.sleep(2)
        meter.stop()
        if not meter.result:
            return
        share = meter.result["other"] / (meter.seconds * (os.cpu_count() or 1))
        if share <= NOISE_WARNING:
            return
        if time.monotonic() >= deadline:
            log(f"{phase}: other processes still use {share:.0%} of the machine; going on")
            return
        log(f"{phase}: other processes use {share:.0%} of the machine; waiting")
        time.sleep(3)


# --- phases -----------------------------------------------------------------------------


def c0_drain(
    args: argparse.Namespace, env: dict[str, str], r: redis.Redis, log_dir: Path, attempt: int
) -> dict[str, Any]:
    """Enqueue N no-op tasks with no worker running, then time a fresh worker draining them."""
    from bench.worker_tasks import COUNT_KEY, FIRST_KEY, LAST_KEY, noop
    from config.celery import app

    n = args.c0_n
    wait_for_quiet(args, "C0")
    r.delete(COUNT_KEY, FIRST_KEY, LAST_KEY)
    started = time.perf_counter()
    with app.producer_or_acquire() as producer:
        for _ in range(n):
            noop.apply_async(producer=producer)
    enqueue_seconds = time.perf_counter() - started
    depth = queue_depth(r)
    if depth != n:
        raise RuntimeError(f"C0: expected {n} queued messages, found {depth}")
    worker = Worker(f"c0-{attempt}", args.concurrency, env, log_dir).start()
    meter = CpuMeter(args.database)

    def count() -> int:
        return int(r.get(COUNT_KEY) or 0)

    try:
        wait_until(
            lambda: count() >= 1,
            worker,
            timeout=120,
            interval=0.005,
            what="the first C0 completion",
        )
        meter.start()
        at_start = count()
        done_at = wait_until(
            lambda: count() >= n, worker, timeout=max(120.0, n / 10), interval=0.01, what="C0 drain"
        )
        meter.stop()
    finally:
        worker.stop()
    first = float(r.get(FIRST_KEY))
    last = float(r.get(LAST_KEY))
    window = max(last - first, 1e-6)
    rate = (n - 1) / window
    log(
        f"C0 #{attempt}: {n} tasks queued in {enqueue_seconds:.2f}s, drained in {window:.2f}s "
        f"after the first completion -> {rate:.0f} tasks/s"
    )
    return {
        "tasks_per_second": round(rate, 1),
        "drain_window_seconds": round(window, 3),
        "worker_start_to_drained_seconds": round(done_at - worker.started_at, 3),
        "worker_start_to_first_completion_seconds": round(first - worker.started_at, 3),
        "enqueue_seconds": round(enqueue_seconds, 3),
        "worker_log": str(worker.log_path),
        "cpu": meter.summary(n - at_start),
    }


def phase_c0(
    args: argparse.Namespace, env: dict[str, str], r: redis.Redis, log_dir: Path
) -> dict[str, Any]:
    """C0 is short (a few seconds), so it is measured ``--c0-repeat`` times; the median
    drain (by rate) is the figure, every attempt is in the JSON."""
    attempts = [c0_drain(args, env, r, log_dir, i + 1) for i in range(args.c0_repeat)]
    ordered = sorted(attempts, key=lambda a: a["tasks_per_second"])
    median = ordered[len(ordered) // 2]
    rates = [a["tasks_per_second"] for a in attempts]
    return {
        "tasks": args.c0_n,
        "task": "bench.noop (INCR + SETNX + SET in one pipelined Redis round trip)",
        **median,
        "attempts_tasks_per_second": rates,
        "spread_tasks_per_second": [min(rates), max(rates)],
        "attempts": attempts,
    }


def bench_setup() -> int:
    """A lead to note on and the one-step workflow; returns the lead's id."""
    from automation.catalogue import declare_event
    from crm.models import Lead
    from workflows.services import workflow_save

    # The benchmark's own domain event: a workflow may only listen to a declared one.
    declare_event(
        EVENT_TYPE,
        schema={
            "type": "object",
            "properties": {"lead_id": {"type": "integer"}, "seq": {"type": "integer"}},
        },
        description="One benchmark event (bench.engine).",
    )
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


def run_counts(first_event_id: int) -> tuple[int, int]:
    """(completed runs, failed or cancelled runs) for events from ``first_event_id``: one
    query, so that polling costs the database little."""
    from django.db.models import Count, Q

    from automation.models import Run

    counts = Run.objects.filter(event_id__gte=first_event_id).aggregate(
        completed=Count("pk", filter=Q(status="completed")),
        bad=Count("pk", filter=Q(status__in=["failed", "cancelled"])),
    )
    return counts["completed"], counts["bad"]


def note_count(first_event_id: int) -> int:
    from automation.models import Note

    return Note.objects.filter(action_run__run__event_id__gte=first_event_id).count()


def next_event_id() -> int:
    from automation.models import Event

    last = Event.objects.order_by("-pk").values_list("pk", flat=True).first()
    return (last or 0) + 1


def phase_r1(
    args: argparse.Namespace, env: dict[str, str], r: redis.Redis, lead_id: int, log_dir: Path
) -> tuple[dict[str, Any], Worker]:
    """Emit N events with no worker running, then time a fresh worker turning them into
    completed one-step runs with their notes. Returns the still-running worker."""
    from django.db.models import Max, Min

    from automation.models import Run

    n = args.n
    wait_for_quiet(args, "R1")
    first_event_id = next_event_id()
    started = time.perf_counter()
    emit_events(lead_id, n, start_seq=0)
    emit_seconds = time.perf_counter() - started
    # The outbox doorbell publishes a drain message when none is on its way (not one per
    # event): at least one must be queued, or the worker would have nothing to start from.
    depth = queue_depth(r)
    if depth < 1:
        raise RuntimeError("R1: no drain message was queued for the emitted events")
    log(
        f"R1: {n} events emitted in {emit_seconds:.2f}s ({depth} drain messages queued); "
        f"starting the worker"
    )
    worker = Worker("r1", args.concurrency, env, log_dir).start()

    def drained() -> bool:
        completed, bad = run_counts(first_event_id)
        if bad:
            raise RuntimeError(f"R1: {bad} runs failed; see the runs in {args.database}")
        # A note commits with its step, before its run finishes: count them once at the end.
        return completed >= n and note_count(first_event_id) >= n

    meter = CpuMeter(args.database)
    try:
        wait_until(
            lambda: run_counts(first_event_id)[0] >= 1,
            worker,
            timeout=120,
            interval=0.02,
            what="the first R1 run",
        )
        meter.start()
        at_start = run_counts(first_event_id)[0]
        done_at = wait_until(
            drained, worker, timeout=max(150.0, n / 5), interval=0.1, what="R1 runs"
        )
        meter.stop()
    except BaseException:
        worker.stop()
        raise
    # The window opens with the first batch (its runs' creation) and closes with the last
    # run's finish: every run in it, the first batch included.
    stats = Run.objects.filter(event_id__gte=first_event_id).aggregate(
        created=Min("created_at"), first=Min("finished_at"), last=Max("finished_at")
    )
    window = max((stats["last"] - stats["created"]).total_seconds(), 1e-6)
    rate = n / window
    completed, notes = run_counts(first_event_id)[0], note_count(first_event_id)
    log(
        f"R1 backlog drain: {completed} runs / {notes} notes in {window:.2f}s from the first "
        f"batch -> {rate:.1f} runs/s"
    )
    return {
        "runs": n,
        "runs_per_second": round(rate, 1),
        "drain_window_seconds": round(window, 3),
        "worker_start_to_drained_seconds": round(done_at - worker.started_at, 3),
        "worker_start_to_first_completion_seconds": round(
            stats["first"].timestamp() - worker.started_at, 3
        ),
        "emit_seconds": round(emit_seconds, 3),
        "drain_messages_queued": depth,
        "completed_runs": completed,
        "notes": notes,
        "worker_log": str(worker.log_path),
        "cpu": meter.summary(n - at_start),
    }, worker


def percentile(values: list[float], pct: float) -> float:
    """Nearest-rank percentile of ``values`` (sorted or not)."""
    ordered = sorted(values)
    rank = max(math.ceil(pct / 100 * len(ordered)), 1)
    return ordered[rank - 1]


def process_ticks(pid: int) -> int:
    """User + system CPU ticks of one process (0 when it is gone or /proc is missing)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0
    return int(fields[11]) + int(fields[12])


def backend_pid() -> int:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        return int(cursor.fetchone()[0])


def steady_step(
    args: argparse.Namespace, worker: Worker, lead_id: int, rate: float, seq_start: int
) -> dict[str, Any]:
    """Emit events one transaction each at ``rate`` for ``--steady-seconds`` to a warm
    worker; latency = ActionRun.finished_at - Event.occurred_at, both from the database.

    Once a second the backlog (events emitted whose run has not completed) is sampled. The
    CPU per event is the engine's: the emitter (this process, and its PostgreSQL backend)
    is measured on its own and taken out."""
    from django.db import transaction

    from automation.events import emit
    from automation.models import ActionRun

    wait_for_quiet(args, f"steady {rate:.0f}/s")
    rate = max(rate, 1.0)
    count = max(int(rate * args.steady_seconds), 20)
    first_event_id = next_event_id()
    emitter_backend = backend_pid()
    log(f"steady: emitting {count} events at {rate:.0f}/s, one per transaction")
    meter = CpuMeter(args.database).start()
    emitter_cpu = time.process_time()
    emitter_backend_ticks = process_ticks(emitter_backend)
    started = time.perf_counter()
    late = 0.0
    backlog: list[int] = []
    next_sample = started + 1.0
    for i in range(count):
        now = time.perf_counter()
        if now >= next_sample:
            backlog.append(i - run_counts(first_event_id)[0])
            next_sample += 1.0
        delay = started + i / rate - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        else:
            late = max(late, -delay)
        with transaction.atomic():
            emit(EVENT_TYPE, {"lead_id": lead_id, "seq": seq_start + i})
    emit_seconds = time.perf_counter() - started
    backlog_at_end = count - run_counts(first_event_id)[0]
    drained = True
    try:
        wait_until(
            lambda: run_counts(first_event_id)[0] >= count,
            worker,
            timeout=max(60.0, count / 50),
            interval=0.05,
            what="steady-phase runs",
        )
    except RuntimeError:
        drained = False
    drain_seconds = time.perf_counter() - started - emit_seconds
    emitter_seconds = time.process_time() - emitter_cpu
    emitter_backend_seconds = (process_ticks(emitter_backend) - emitter_backend_ticks) / os.sysconf(
        "SC_CLK_TCK"
    )
    meter.stop()
    rows = list(
        ActionRun.objects.filter(
            run__event_id__gte=first_event_id, finished_at__isnull=False
        ).values_list("run__event__occurred_at", "run__created_at", "started_at", "finished_at")
    )
    latencies = [(done - occurred).total_seconds() * 1000 for occurred, _, _, done in rows]
    if not latencies:
        latencies = [float("inf")]
    p50, p99 = percentile(latencies, 50), percentile(latencies, 99)

    def ms(start: datetime, end: datetime) -> float:
        return (end - start).total_seconds() * 1000

    parts = {
        "event_to_run_created_p50_ms": [ms(o, c) for o, c, _, _ in rows] or [0.0],
        "run_created_to_step_started_p50_ms": [ms(c, s) for _, c, s, _ in rows] or [0.0],
        "step_started_to_done_p50_ms": [ms(s, d) for _, _, s, d in rows] or [0.0],
    }
    batches = run_batches(first_event_id)
    achieved = count / emit_seconds
    cpu = meter.summary(count)
    engine_ms = None
    if cpu:
        used = cpu["cpu_seconds"]
        engine = (
            max(used["bench"] - emitter_seconds, 0.0)
            + max(used["postgres_bench_db"] - emitter_backend_seconds, 0.0)
            + used["redis"]
        )
        engine_ms = round(engine / count * 1000, 3)
    # Sustained: the emitter kept the rate, p99 under a second, and the backlog at the end
    # of the emission is less than half a second of events (it does not grow).
    growing = backlog_at_end > max(rate * 0.5, 10)
    sustained = drained and p99 < 1000 and achieved >= 0.95 * rate and not growing
    log(
        f"steady {rate:.0f}/s: achieved {achieved:.0f}/s, p50 {p50:.1f} ms, p99 {p99:.1f} ms, "
        f"backlog at end {backlog_at_end}, {batches['events_per_batch']:.1f} events per batch, "
        f"engine CPU {engine_ms} ms/event -> {'sustained' if sustained else 'NOT sustained'}"
    )
    return {
        "events": count,
        "target_rate_per_second": round(rate, 1),
        "achieved_rate_per_second": round(achieved, 1),
        "max_emit_lag_ms": round(late * 1000, 1),
        "p50_ms": round(p50, 1),
        "p90_ms": round(percentile(latencies, 90), 1),
        "p99_ms": round(p99, 1),
        "max_ms": round(max(latencies), 1),
        "mean_ms": round(statistics.fmean(latencies), 1),
        "min_ms": round(min(latencies), 1),
        **{name: round(percentile(values, 50), 1) for name, values in parts.items()},
        "backlog_samples": backlog,
        "backlog_at_end_of_emission": backlog_at_end,
        "drain_after_emission_seconds": round(drain_seconds, 3),
        "drained": drained,
        "growing_backlog": growing,
        "sustained": sustained,
        **batches,
        "emitter_cpu_seconds": round(emitter_seconds, 3),
        "emitter_backend_cpu_seconds": round(emitter_backend_seconds, 3),
        "engine_cpu_ms_per_event": engine_ms,
        "cpu": cpu,
    }


def run_batches(first_event_id: int) -> dict[str, float]:
    """How many dispatch transactions the runs came from (runs created in one batch share
    ``created_at``): events per batch."""
    from automation.models import Run

    runs = Run.objects.filter(event_id__gte=first_event_id)
    total = runs.count()
    batches = runs.values("created_at").distinct().count() or 1
    return {"dispatch_batches": batches, "events_per_batch": round(total / batches, 2)}


def phase_steady(
    args: argparse.Namespace, worker: Worker, lead_id: int, seq_start: int, c0_rate: float
) -> dict[str, Any]:
    """The steady-traffic phase: each rate of ``--steady-rates`` (shares of C0 made events/s)
    in increasing order, until one is not sustained (p99 event-to-step-done >= 1 s, a
    growing backlog, or an emitter that cannot keep the rate)."""
    steps = []
    seq = seq_start
    rates = sorted({round(v * c0_rate if share else v, 1) for v, share in args.steady_rates})
    for rate in rates:
        step = steady_step(args, worker, lead_id, rate, seq)
        seq += step["events"]
        steps.append(step)
        if not step["sustained"]:
            break
    sustained = [s for s in steps if s["sustained"]]
    best = max((s["achieved_rate_per_second"] for s in sustained), default=0.0)
    return {"steps": steps, "sustained_rate_per_second": best, "events": seq - seq_start}


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


def cpu_line(cpu: dict[str, Any], unit: str) -> str:
    """CPU per item: the benchmark's processes, the benchmark database's backends, Redis.
    (Backends that ended during the window are not counted: the workers keep their
    connections, so those belong to other databases on a shared server; the JSON has them.)
    """
    if not cpu:
        return "n/a (no /proc)"
    per = cpu["cpu_ms_per_item"]
    postgres = per["postgres_bench_db"]
    return (
        f"{per['bench']:.2f} bench processes + {postgres:.2f} PostgreSQL + "
        f"{per['redis']:.2f} Redis = {per['bench'] + postgres + per['redis']:.2f} ms "
        f"per {unit}"
    )


def cpu_total(cpu: dict[str, Any]) -> float:
    per = cpu.get("cpu_ms_per_item") or {}
    return sum(per.get(group, 0.0) for group in ("bench", "postgres_bench_db", "redis"))


def noise_line(phases: dict[str, dict[str, Any]]) -> tuple[str, float]:
    shares = {name: cpu.get("other_share_of_machine", 0.0) for name, cpu in phases.items()}
    worst = max(shares.values(), default=0.0)
    text = ", ".join(f"{name} {share:.0%}" for name, share in shares.items())
    return text, worst


def report(result: dict[str, Any]) -> str:
    c0, r1, steady, env = result["c0"], result["r1"], result["steady"], result["environment"]
    ratio = result["r1_over_c0"]
    steady_ratio = result["steady_over_c0"]
    noise, worst = noise_line(
        {
            "C0": c0["cpu"],
            "R1": r1["cpu"],
            **{f"{s['target_rate_per_second']:.0f}/s": s["cpu"] for s in steady["steps"]},
        }
    )
    c0_attempts = ", ".join(f"{rate:.0f}" for rate in c0["attempts_tasks_per_second"])
    r1_cpu = cpu_total(r1["cpu"])
    rows = [
        (
            "C0  Celery no-op drain",
            f"{c0['tasks_per_second']:.0f} tasks/s (median of {c0_attempts}; "
            f"{c0['tasks']} tasks, window {c0['drain_window_seconds']:.1f} s)",
        ),
        (
            "S   steady traffic, sustained",
            f"{steady['sustained_rate_per_second']:.0f} events/s (p99 event -> step done "
            f"< 1 s, no growing backlog; one event per transaction)",
        ),
        ("S / C0", f"{steady_ratio:.3f}  (target >= {STEADY_GOAL})"),
    ]
    for step in steady["steps"]:
        engine_ms = step["engine_cpu_ms_per_event"]
        versus = f", {engine_ms / r1_cpu:.2f} x R1" if engine_ms and r1_cpu else ""
        rows.append(
            (
                f"  at {step['target_rate_per_second']:.0f}/s",
                f"{'ok ' if step['sustained'] else 'NO '} achieved "
                f"{step['achieved_rate_per_second']:.0f}/s, p50 {step['p50_ms']:.0f} ms, "
                f"p99 {step['p99_ms']:.0f} ms, backlog at end "
                f"{step['backlog_at_end_of_emission']}, {step['events_per_batch']:.1f} "
                f"events/batch, engine CPU {engine_ms} ms/event{versus}",
            )
        )
    rows += [
        ("R1  backlog drain, one-step runs", f"{r1['runs_per_second']:.1f} runs/s"),
        ("R1 / C0", f"{ratio:.3f}  (goal >= {GOAL})"),
        ("N (R1 events)", str(result["settings"]["n"])),
        (
            "worker concurrency",
            f"{result['settings']['concurrency']} (prefork, acks late, prefetch 1, queue steps)",
        ),
        ("CPU per C0 task", cpu_line(c0["cpu"], "task")),
        ("CPU per R1 run", cpu_line(r1["cpu"], "run")),
        (
            "other load on the machine",
            f"{noise} of all cores; load avg at start {result['loadavg_at_start']}",
        ),
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
    warning = ""
    if worst > NOISE_WARNING:
        warning = (
            f"\nWARNING: other processes used up to {worst:.0%} of the machine during a "
            f"measured phase; the rates are lower than on a quiet machine."
        )
    return f"{line}\nFlowdesk engine benchmark\n{line}\n{body}\n{line}{warning}"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    bench_started = time.perf_counter()
    loadavg = (
        " ".join(Path("/proc/loadavg").read_text().split()[:3])
        if Path("/proc/loadavg").exists()
        else "n/a"
    )
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
        steady = phase_steady(args, worker, lead_id, args.n, c0["tasks_per_second"])
    finally:
        worker.stop()

    result = {
        "benchmark": "engine",
        "timestamp": stamp,
        "settings": {
            "n": args.n,
            "concurrency": args.concurrency,
            "settings_module": args.settings,
            "c0_repeat": args.c0_repeat,
            "c0_n": args.c0_n,
            "steady_rates": [f"{v}x" if share else v for v, share in args.steady_rates],
            "steady_seconds": args.steady_seconds,
            "quiet_wait": args.quiet_wait,
            "worker_command": " ".join(Worker("x", args.concurrency, env, log_dir).command[1:]),
            "acks_late": settings.CELERY_TASK_ACKS_LATE,
            "prefetch_multiplier": settings.CELERY_WORKER_PREFETCH_MULTIPLIER,
            "db_conn_max_age": settings.DATABASES["default"]["CONN_MAX_AGE"],
        },
        "c0": c0,
        "r1": r1,
        "r1_over_c0": round(r1["runs_per_second"] / c0["tasks_per_second"], 3),
        "goal_r1_over_c0": GOAL,
        "steady": steady,
        "steady_over_c0": round(steady["sustained_rate_per_second"] / c0["tasks_per_second"], 3),
        "goal_steady_over_c0": STEADY_GOAL,
        "migrate_seconds": round(migrate_seconds, 2),
        "loadavg_at_start": loadavg,
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
