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
        "--latency-load",
        type=float,
        default=0.5,
        help="steady emit rate of the latency phase, as a fraction of R1 (default 0.5)",
    )
    parser.add_argument(
        "--light-rate",
        type=float,
        default=50.0,
        help="emit rate (events/s) of a second latency phase at a light, fixed load (default 50)",
    )
    parser.add_argument(
        "--latency-seconds",
        type=float,
        default=15.0,
        help="how long the latency phase emits events (default 15)",
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
    if (
        args.n < 10
        or args.concurrency < 1
        or args.c0_repeat < 1
        or not (0 < args.latency_load <= 1)
    ):
        parser.error(
            "need --n >= 10, --concurrency >= 1, --c0-repeat >= 1 and 0 < --latency-load <= 1"
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

    n = args.n
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
    return {
        "tasks": args.n,
        "task": "bench.noop (INCR + SETNX + SET in one pipelined Redis round trip)",
        **median,
        "attempts_tasks_per_second": [a["tasks_per_second"] for a in attempts],
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
    stats = Run.objects.filter(event_id__gte=first_event_id).aggregate(
        first=Min("finished_at"), last=Max("finished_at")
    )
    window = max((stats["last"] - stats["first"]).total_seconds(), 1e-6)
    rate = (n - 1) / window
    completed, notes = run_counts(first_event_id)[0], note_count(first_event_id)
    log(
        f"R1: {completed} runs / {notes} notes in {window:.2f}s after the first completion "
        f"-> {rate:.1f} runs/s"
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


def phase_latency(
    args: argparse.Namespace, worker: Worker, lead_id: int, rate: float, what: str, seq_start: int
) -> dict[str, Any]:
    """Emit events one transaction each at a steady rate below capacity to a warm worker;
    latency = ActionRun.finished_at - Event.occurred_at, both from the database."""
    from django.db import transaction

    from automation.events import emit
    from automation.models import ActionRun

    wait_for_quiet(args, "latency")
    rate = max(rate, 1.0)
    count = max(int(rate * args.latency_seconds), 20)
    first_event_id = next_event_id()
    log(f"latency: emitting {count} events at {rate:.1f}/s ({what}) to the running worker")
    meter = CpuMeter(args.database).start()
    started = time.perf_counter()
    late = 0.0
    for i in range(count):
        delay = started + i / rate - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        else:
            late = max(late, -delay)
        with transaction.atomic():
            emit(EVENT_TYPE, {"lead_id": lead_id, "seq": seq_start + i})
    emit_seconds = time.perf_counter() - started
    wait_until(
        lambda: run_counts(first_event_id)[0] >= count,
        worker,
        timeout=120,
        interval=0.1,
        what="latency-phase runs",
    )
    meter.stop()
    rows = list(
        ActionRun.objects.filter(run__event_id__gte=first_event_id).values_list(
            "run__event__occurred_at", "run__created_at", "started_at", "finished_at"
        )
    )
    latencies = [(done - occurred).total_seconds() * 1000 for occurred, _, _, done in rows]
    p50, p99 = percentile(latencies, 50), percentile(latencies, 99)

    def ms(start: datetime, end: datetime) -> float:
        return (end - start).total_seconds() * 1000

    # Where the time goes (p50 of each part): the event's commit, publish, queue and the
    # worker's pick-up up to the run's creation; the run's creation to its step's start
    # (dispatch commit, planning); the step itself.
    parts = {
        "event_to_run_created_p50_ms": [ms(o, c) for o, c, _, _ in rows],
        "run_created_to_step_started_p50_ms": [ms(c, s) for _, c, s, _ in rows],
        "step_started_to_done_p50_ms": [ms(s, d) for _, _, s, d in rows],
    }
    t0 = min(o for o, _, _, _ in rows)
    by_second: dict[int, list[float]] = {}
    for (occurred, _, _, _), latency in zip(rows, latencies, strict=True):
        by_second.setdefault(int((occurred - t0).total_seconds()), []).append(latency)
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
        **{name: round(percentile(values, 50), 1) for name, values in parts.items()},
        "by_second": [
            {
                "second": second,
                "events": len(values),
                "p50_ms": round(percentile(values, 50), 1),
                "max_ms": round(max(values), 1),
            }
            for second, values in sorted(by_second.items())
        ],
        "cpu": meter.summary(count),
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


def cpu_line(cpu: dict[str, Any], unit: str) -> str:
    if not cpu:
        return "n/a (no /proc)"
    per = cpu["cpu_ms_per_item"]
    postgres = per["postgres_bench_db"] + per["postgres_ended"]
    return (
        f"{per['bench']:.2f} bench processes + {postgres:.2f} PostgreSQL + "
        f"{per['redis']:.2f} Redis = {per['bench'] + postgres + per['redis']:.2f} ms "
        f"per {unit}"
    )


def noise_line(phases: dict[str, dict[str, Any]]) -> tuple[str, float]:
    shares = {name: cpu.get("other_share_of_machine", 0.0) for name, cpu in phases.items()}
    worst = max(shares.values(), default=0.0)
    text = ", ".join(f"{name} {share:.0%}" for name, share in shares.items())
    return text, worst


def report(result: dict[str, Any]) -> str:
    c0, r1, lat, env = result["c0"], result["r1"], result["latency"], result["environment"]
    light = result["latency_light"]
    ratio = result["r1_over_c0"]
    verdict = "meets" if ratio >= GOAL else "BELOW"
    noise, worst = noise_line(
        {"C0": c0["cpu"], "R1": r1["cpu"], "latency": lat["cpu"], "light": light["cpu"]}
    )
    c0_attempts = ", ".join(f"{rate:.0f}" for rate in c0["attempts_tasks_per_second"])
    rows = [
        (
            "C0  Celery no-op drain",
            f"{c0['tasks_per_second']:.0f} tasks/s (median of {c0_attempts})",
        ),
        ("R1  one-step runs, event -> note", f"{r1['runs_per_second']:.1f} runs/s"),
        ("R1 / C0", f"{ratio:.3f}  ({verdict} the goal >= {GOAL})"),
        ("latency p50 (event -> step done)", f"{lat['p50_ms']:.1f} ms"),
        ("latency p99", f"{lat['p99_ms']:.1f} ms"),
        (
            "latency load",
            f"{lat['events']} events at {lat['achieved_rate_per_second']:.1f}/s "
            f"({result['settings']['latency_load']:.0%} of R1), one per "
            f"transaction, worker warm",
        ),
        (
            "latency at a light load",
            f"p50 {light['p50_ms']:.1f} ms, p99 {light['p99_ms']:.1f} "
            f"ms ({light['events']} events at "
            f"{light['achieved_rate_per_second']:.1f}/s)",
        ),
        ("N (C0 tasks, R1 events)", str(result["settings"]["n"])),
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
        latency = phase_latency(
            args,
            worker,
            lead_id,
            args.latency_load * r1["runs_per_second"],
            f"{args.latency_load:.0%} of R1",
            seq_start=args.n,
        )
        light = phase_latency(
            args,
            worker,
            lead_id,
            args.light_rate,
            "a light load",
            seq_start=args.n + latency["events"],
        )
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
            "latency_load": args.latency_load,
            "latency_seconds": args.latency_seconds,
            "light_rate": args.light_rate,
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
        "latency": latency,
        "latency_light": light,
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
