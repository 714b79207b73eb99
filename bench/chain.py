"""Chain benchmark: 5-step workflow runs end to end, against C0 of the same run.

``python -m bench.chain`` (``--help`` lists the knobs). Like ``bench.engine`` it owns a
database (dropped and created again) and a Redis database (flushed), and starts its own
Celery workers with the production worker settings. Phases:

1. C0, Celery's no-op drain rate (``bench.engine``'s phase, same code).
2. R5, the backlog drain of 5-step runs: N ``bench.chain.start`` events are emitted while
   no worker runs, then a fresh worker drains them. Each run adds a note, updates a field,
   emits ``bench.chain.next`` (which starts a one-step run of a second workflow), validates
   and adds a conditioned note. Measured ``--repeat`` times (a fresh worker each); the
   median is the figure, the spread is printed with it.
3. Statements: the same path in this process (the ``dispatch_pending`` task's body called
   until the outbox is empty), every SQL statement and commit counted.

Figures go to ``var/bench/chain-<timestamp>.json``. See bench/README.md.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import redis

from bench.common import add_owned_services, check_owned_services, log, migrate
from bench.cpu import CpuMeter
from bench.engine import (
    Worker,
    bench_env,
    cpu_line,
    cpu_total,
    database_recreate,
    environment,
    next_event_id,
    phase_c0,
    queue_depth,
    wait_for_quiet,
    wait_until,
)

START_EVENT = "bench.chain.start"
NEXT_EVENT = "bench.chain.next"
CHAIN_SLUG = "bench-chain"
NEXT_SLUG = "bench-chain-next"
CHAIN_STEPS = 5
# Atomic steps a chain run costs: its own five and the one of the run its event starts.
STEPS_PER_RUN = CHAIN_STEPS + 1
GOAL_RATIO = 0.2
GOAL_STEP_MS = 1.5

CHAIN_WORKFLOW: dict[str, Any] = {
    "slug": CHAIN_SLUG,
    "name": "Bench: five-step chain",
    "description": "Note, field update, chained event, validation, conditioned note.",
    "is_active": True,
    "triggers": [{"event_type": START_EVENT}],
    "steps": [
        {
            "key": "note",
            "type": "add_note",
            "config": {"entity_type": "lead", "entity_id": "{{lead_id}}", "note": "chain {{seq}}"},
        },
        {
            "key": "field",
            "type": "update_field",
            "config": {
                "entity_type": "lead",
                "entity_id": "{{lead_id}}",
                "field": "contact_name",
                "value": "contact {{seq}}",
            },
        },
        {
            "key": "emit",
            "type": "emit_event",
            "config": {"type": NEXT_EVENT, "payload": {"lead_id": "{{lead_id}}", "seq": "{{seq}}"}},
        },
        {
            "key": "check",
            "type": "validate",
            "config": {
                "condition": {"field": "seq", "operator": "gte", "value": 0},
                "message": "seq must not be negative",
            },
        },
        {
            "key": "done",
            "type": "add_note",
            "conditions": {"field": "steps.field.changed", "operator": "eq", "value": True},
            "config": {"entity_type": "lead", "entity_id": "{{lead_id}}", "note": "done {{seq}}"},
        },
    ],
}

NEXT_WORKFLOW: dict[str, Any] = {
    "slug": NEXT_SLUG,
    "name": "Bench: chained note",
    "description": "One note per bench.chain.next event (emitted by the chain).",
    "is_active": True,
    "triggers": [{"event_type": NEXT_EVENT}],
    "steps": [
        {
            "key": "note",
            "type": "add_note",
            "config": {"entity_type": "lead", "entity_id": "{{lead_id}}", "note": "next {{seq}}"},
        }
    ],
}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.chain",
        description="Measure 5-step workflow runs (event to last step done) against C0 "
        "(Celery no-op drain) of the same run.",
    )
    parser.add_argument("--n", type=int, default=300, help="chain runs per repeat (300)")
    parser.add_argument("--repeat", type=int, default=3, help="drains measured (3)")
    parser.add_argument("--concurrency", type=int, default=2, help="worker processes (2)")
    parser.add_argument("--c0-n", type=int, default=3000, help="tasks per C0 drain (3000)")
    parser.add_argument("--c0-repeat", type=int, default=3, help="C0 drains (3)")
    parser.add_argument(
        "--count-runs", type=int, default=50, help="runs of the in-process statement count (50)"
    )
    parser.add_argument(
        "--profile-runs",
        type=int,
        default=0,
        help="only profile: this many chain runs in this process under cProfile, no workers",
    )
    parser.add_argument("--quiet-wait", type=float, default=0.0, help="as in bench.engine")
    parser.add_argument("--settings", default="config.settings", help="Django settings module")
    parser.add_argument("--output", type=Path, default=None, help="JSON file to write")
    add_owned_services(parser, database="flowdesk_bench_chain", broker="redis://127.0.0.1:6379/7")
    args = parser.parse_args(argv)
    check_owned_services(parser, args)
    if args.n < 10 or args.repeat < 1 or args.c0_n < 10 or args.c0_repeat < 1:
        parser.error("need --n >= 10, --repeat >= 1, --c0-n >= 10, --c0-repeat >= 1")
    return args


def setup() -> int:
    """The events, a lead and the two workflows; returns the lead's id."""
    from automation.catalogue import declare_event
    from crm.models import Lead
    from workflows.services import workflow_save

    schema = {
        "type": "object",
        "properties": {"lead_id": {"type": "integer"}, "seq": {"type": "integer"}},
    }
    declare_event(START_EVENT, schema=schema, description="Starts a chain (bench.chain).")
    declare_event(NEXT_EVENT, schema=schema, description="Emitted by the chain.")
    (lead,) = Lead.objects.bulk_create([Lead(company_name="Chain Co")])
    workflow_save(document=NEXT_WORKFLOW)
    workflow_save(document=CHAIN_WORKFLOW)
    return int(lead.pk)


def emit_starts(lead_id: int, count: int, start_seq: int, dispatch: bool = True) -> None:
    from django.db import transaction

    from automation.events import event_emit

    for offset in range(0, count, 100):
        with transaction.atomic():
            for seq in range(start_seq + offset, start_seq + min(offset + 100, count)):
                event_emit(START_EVENT, {"lead_id": lead_id, "seq": seq}, dispatch=dispatch)


def counts(first_event_id: int) -> dict[str, int]:
    """Completed chain runs, completed chained runs, failed or cancelled runs: one query."""
    from django.db.models import Count, Q

    from automation.models import Run

    done = Q(status="completed")
    return Run.objects.filter(event_id__gte=first_event_id).aggregate(
        chain=Count("pk", filter=done & Q(workflow__slug=CHAIN_SLUG)),
        next=Count("pk", filter=done & Q(workflow__slug=NEXT_SLUG)),
        bad=Count("pk", filter=Q(status__in=["failed", "cancelled"])),
    )


def check_history(first_event_id: int, n: int) -> dict[str, int]:
    """Every chain run has its five steps completed once, in order; every effect once."""
    from automation.models import ActionRun, Note

    rows = ActionRun.objects.filter(
        run__event_id__gte=first_event_id, run__workflow__slug=CHAIN_SLUG
    )
    completed = rows.filter(status="completed", attempts=1).count()
    notes = Note.objects.filter(action_run__run__event_id__gte=first_event_id).count()
    if completed != n * CHAIN_STEPS or notes != n * 3:
        raise RuntimeError(
            f"expected {n * CHAIN_STEPS} completed steps and {n * 3} notes, "
            f"found {completed} and {notes}"
        )
    return {"completed_steps": completed, "notes": notes}


def drain_once(
    args: argparse.Namespace, env: dict[str, str], lead_id: int, log_dir: Path, attempt: int
) -> dict[str, Any]:
    """Emit N start events with no worker, then time a fresh worker finishing every chain
    run and the run each chain's event starts."""
    from django.db.models import Max, Min

    from automation.models import Run

    n = args.n
    wait_for_quiet(args, f"R5 #{attempt}")
    first_event_id = next_event_id()
    emit_starts(lead_id, n, start_seq=attempt * 1_000_000)
    worker = Worker(f"chain-{attempt}", args.concurrency, env, log_dir).start()
    meter = CpuMeter(args.database)

    def finished() -> bool:
        now = counts(first_event_id)
        if now["bad"]:
            raise RuntimeError(f"R5: {now['bad']} runs failed; see {args.database}")
        return now["chain"] >= n and now["next"] >= n

    try:
        wait_until(
            lambda: counts(first_event_id)["chain"] >= 1,
            worker,
            timeout=180,
            interval=0.02,
            what="the first chain run",
        )
        meter.start()
        at_start = counts(first_event_id)["chain"]
        wait_until(finished, worker, timeout=max(300.0, n), interval=0.1, what="chain runs")
        meter.stop()
    finally:
        worker.stop()
    stats = Run.objects.filter(event_id__gte=first_event_id).aggregate(
        created=Min("created_at"), last=Max("finished_at")
    )
    window = max((stats["last"] - stats["created"]).total_seconds(), 1e-6)
    rate = n / window
    history = check_history(first_event_id, n)
    cpu = meter.summary(n - at_start)
    log(f"R5 #{attempt}: {n} chain runs in {window:.2f}s -> {rate:.1f} runs/s")
    log(f"R5 #{attempt}: {cpu_line(cpu, 'run')}")
    return {
        "runs_per_second": round(rate, 2),
        "drain_window_seconds": round(window, 3),
        "cpu": cpu,
        "cpu_ms_per_run": round(cpu_total(cpu), 3) if cpu else None,
        **history,
        "worker_log": str(worker.log_path),
    }


def phase_r5(
    args: argparse.Namespace, env: dict[str, str], lead_id: int, log_dir: Path
) -> dict[str, Any]:
    attempts = [drain_once(args, env, lead_id, log_dir, i + 1) for i in range(args.repeat)]
    rates = [a["runs_per_second"] for a in attempts]
    cpus = [a["cpu_ms_per_run"] for a in attempts if a["cpu_ms_per_run"] is not None]
    median = sorted(attempts, key=lambda a: a["runs_per_second"])[len(attempts) // 2]
    return {
        "runs": args.n,
        "runs_per_second": median["runs_per_second"],
        "attempts_runs_per_second": rates,
        "spread_runs_per_second": [min(rates), max(rates)],
        "cpu_ms_per_run": round(statistics.median(cpus), 3) if cpus else None,
        "attempts_cpu_ms_per_run": cpus,
        "median_cpu": median["cpu"],
        "attempts": attempts,
    }


def drain_warm_up(lead_id: int) -> None:
    """Five chain runs through the in-process drain, before anything is counted."""
    from automation.models import Event
    from automation.tasks import dispatch_pending

    warm = next_event_id()
    emit_starts(lead_id, 5, start_seq=9_000_000, dispatch=False)
    while Event.objects.filter(pk__gte=warm, dispatched_at__isnull=True).exists():
        dispatch_pending()


def phase_statements(args: argparse.Namespace, lead_id: int) -> dict[str, Any]:
    """The worker's path in this process, every statement and commit counted."""
    from django.db import connection

    from automation.models import Event
    from automation.tasks import dispatch_pending
    from bench.profile import CommitCounter, QueryLog

    n = args.count_runs
    drain_warm_up(lead_id)
    first_event_id = next_event_id()
    emit_starts(lead_id, n, start_seq=8_000_000, dispatch=False)
    query_log, commits = QueryLog(), CommitCounter()
    uninstall = commits.install()
    started = time.perf_counter()
    try:
        with connection.execute_wrapper(query_log):
            while Event.objects.filter(pk__gte=first_event_id, dispatched_at__isnull=True).exists():
                dispatch_pending()
    finally:
        uninstall()
    wall = time.perf_counter() - started
    now = counts(first_event_id)
    if now["chain"] != n or now["next"] != n:
        raise RuntimeError(f"in-process: expected {n} chain and next runs, found {now}")
    check_history(first_event_id, n)
    savepoints = [q for q in query_log.queries if "SAVEPOINT" in q[1]]
    # The loop's own "is anything left" polls are not the engine's.
    polls = [q for q in query_log.queries if q[0] == "?" and "dispatched_at" in q[1]]
    queries = len(query_log.queries) - len(savepoints) - len(polls)
    result = {
        "runs": n,
        "queries_per_run": round(queries / n, 2),
        "savepoint_statements_per_run": round(len(savepoints) / n, 2),
        "commits_per_run": round(commits.count / n, 2),
        "wall_ms_per_run": round(wall / n * 1000, 2),
    }
    log(
        f"statements: {result['queries_per_run']} queries, "
        f"{result['savepoint_statements_per_run']} savepoint statements, "
        f"{result['commits_per_run']} commits per chain run (its chained run included)"
    )
    return result


def phase_profile(args: argparse.Namespace, lead_id: int) -> None:
    """The statement phase's path (``dispatch_pending``'s body until the outbox is empty)
    under cProfile, for ``--profile-runs`` chain runs; prints the top entries and the CPU
    per chain run and per atomic step of this process alone."""
    import cProfile
    import pstats

    from automation.models import Event
    from automation.tasks import dispatch_pending

    n = args.profile_runs
    drain_warm_up(lead_id)
    first_event_id = next_event_id()
    emit_starts(lead_id, n, start_seq=7_000_000, dispatch=False)
    profiler = cProfile.Profile(time.process_time)  # CPU, not waits
    cpu = time.process_time()
    profiler.enable()
    while Event.objects.filter(pk__gte=first_event_id, dispatched_at__isnull=True).exists():
        dispatch_pending()
    profiler.disable()
    cpu = time.process_time() - cpu
    check_history(first_event_id, n)
    # Once more without the profiler, for this process's own CPU per run.
    first_event_id = next_event_id()
    emit_starts(lead_id, n, start_seq=6_000_000, dispatch=False)
    plain = time.process_time()
    while Event.objects.filter(pk__gte=first_event_id, dispatched_at__isnull=True).exists():
        dispatch_pending()
    plain = time.process_time() - plain
    check_history(first_event_id, n)
    from django.conf import settings

    dump = Path(settings.VAR_DIR) / "bench" / "chain-profile.pstats"
    dump.parent.mkdir(parents=True, exist_ok=True)
    profiler.dump_stats(dump)  # for pstats' callers/callees
    stats = pstats.Stats(profiler, stream=sys.stdout)
    stats.sort_stats("tottime").print_stats(30)
    stats.sort_stats("cumulative").print_stats(45)
    log(f"profile: written to {dump}")
    log(
        f"profile: {n} chain runs, this process's CPU {cpu / n * 1000:.2f} ms per run under "
        f"cProfile, {plain / n * 1000:.2f} ms per run without "
        f"({plain / n / STEPS_PER_RUN * 1000:.2f} ms per atomic step)"
    )


def report(result: dict[str, Any]) -> str:
    c0, r5, st, env = result["c0"], result["r5"], result["statements"], result["environment"]
    per_run = r5["cpu_ms_per_run"]
    rows = [
        (
            "C0  Celery no-op drain",
            f"{c0['tasks_per_second']:.0f} tasks/s (median of "
            f"{', '.join(f'{r:.0f}' for r in c0['attempts_tasks_per_second'])})",
        ),
        (
            "R5  5-step chain runs",
            f"{r5['runs_per_second']:.1f} runs/s (median of "
            f"{', '.join(f'{r:.1f}' for r in r5['attempts_runs_per_second'])}; "
            f"{r5['runs']} runs each)",
        ),
        ("R5 / C0", f"{result['r5_over_c0']:.3f}  (target >= {GOAL_RATIO})"),
        (
            "CPU per chain run",
            f"{per_run} ms (repeats: {', '.join(str(c) for c in r5['attempts_cpu_ms_per_run'])})",
        ),
        (
            "CPU per atomic step",
            f"{result['cpu_ms_per_step']} ms ({STEPS_PER_RUN} per chain run: its "
            f"{CHAIN_STEPS} and its chained run's 1; target <= {GOAL_STEP_MS})",
        ),
        ("CPU split (median repeat)", cpu_line(r5["median_cpu"], "run")),
        (
            "per chain run, in process",
            f"{st['queries_per_run']} queries, {st['savepoint_statements_per_run']} savepoint "
            f"statements, {st['commits_per_run']} commits",
        ),
        (
            "other load on the machine",
            ", ".join(f"{a['cpu'].get('other_share_of_machine', 0):.0%}" for a in r5["attempts"])
            + f" of all cores; load avg at start {result['loadavg_at_start']}",
        ),
        ("Python / Django / Celery", f"{env['python']} / {env['django']} / {env['celery']}"),
        ("database", f"PostgreSQL {env['postgresql']} ({env['database']})"),
        ("machine", f"{env['cpus']} CPUs, {env['cpu']}"),
    ]
    width = max(len(label) for label, _ in rows)
    line = "-" * (width + 40)
    body = "\n".join(f"{label.ljust(width)}  {value}" for label, value in rows)
    return f"{line}\nFlowdesk chain benchmark\n{line}\n{body}\n{line}"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.perf_counter()
    loadavg = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    env = bench_env(args)
    r = redis.Redis.from_url(args.broker)
    r.flushdb()
    log(f"database {args.database}: recreating and migrating")
    database_recreate(args)
    migrate(env)

    import django

    django.setup()
    from django.conf import settings

    # This process's phases (statements, profile) drain in-process: the drain's coalescing
    # wait is a sleep, not the engine's work (the workers keep the production setting).
    settings.FLOWDESK = {**settings.FLOWDESK, "DISPATCH_COALESCE_SECONDS": 0.0}
    out_dir = Path(settings.VAR_DIR) / "bench"
    log_dir = out_dir / f"logs-chain-{stamp}"
    log_dir.mkdir(parents=True, exist_ok=True)
    lead_id = setup()
    if args.profile_runs:
        phase_profile(args, lead_id)
        r.flushdb()
        return 0
    if queue_depth(r):
        raise RuntimeError("the broker queues are not empty after setup")
    c0 = phase_c0(args, env, r, log_dir)
    r5 = phase_r5(args, env, lead_id, log_dir)
    statements = phase_statements(args, lead_id)
    r.flushdb()  # the in-process pass's doorbell messages
    per_run = r5["cpu_ms_per_run"]
    result = {
        "benchmark": "chain",
        "timestamp": stamp,
        "settings": {
            "n": args.n,
            "repeat": args.repeat,
            "concurrency": args.concurrency,
            "c0_n": args.c0_n,
            "c0_repeat": args.c0_repeat,
            "settings_module": args.settings,
        },
        "c0": c0,
        "r5": r5,
        "r5_over_c0": round(r5["runs_per_second"] / c0["tasks_per_second"], 3),
        "r5_over_c0_spread": [
            round(rate / c0["tasks_per_second"], 3) for rate in r5["spread_runs_per_second"]
        ],
        "cpu_ms_per_step": round(per_run / STEPS_PER_RUN, 3) if per_run else None,
        "statements": statements,
        "loadavg_at_start": loadavg,
        "environment": environment(args, r),
        "bench_seconds": round(time.perf_counter() - started, 1),
    }
    output = args.output or out_dir / f"chain-{stamp}.json"
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(result, indent=2) + "\n")
    print(report(result))
    print(f"figures: {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
