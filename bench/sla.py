"""SLA sweep benchmark: one million open tasks, a share of them past due.

``python -m bench.sla`` (``--help`` for the knobs) recreates its own database, migrates it,
bulk-loads the open tasks with COPY, and then for each due share (default 0.1% and 1%):

- prints the EXPLAIN (ANALYZE, BUFFERS) of the sweep's claim query (the due set, read
  through the index ``sla_check_due`` of the check table);
- measures two raw baselines on the same due rows: a bare ``SELECT`` of the due set and a
  set-based ``UPDATE`` marking them breached (rolled back);
- runs the real sweep (``tasks_inbox.sla.sweep.sla_sweep``, batch after batch as the
  ``flowdesk.sweep.sla`` task does when it re-enqueues itself) until nothing is due, and
  checks that every due task breached exactly once.

It also times a sweep when nothing is due. See bench/README.md ("SLA sweep").
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import redis
from psycopg import sql

from bench import common
from bench.common import (
    add_owned_services,
    add_quiet_wait,
    check_owned_services,
    log,
    wait_for_quiet,
)
from bench.cpu import CpuMeter

TASK_TABLE = "tasks_inbox_task"
RECORD_TABLE = "tasks_inbox_slaeventrecord"
CHECK_TABLE = "tasks_inbox_slacheck"
TARGET = timedelta(hours=4)
WARNING = timedelta(hours=3)
AGENTS = 20


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.sla",
        description="Time the SLA sweep over N open tasks of which a share is past due, "
        "against raw SQL baselines on the same rows.",
    )
    parser.add_argument(
        "--tasks", type=int, default=1_000_000, help="open tasks to load (default 1000000)"
    )
    parser.add_argument(
        "--ratios",
        default="0.001,0.01",
        help="due shares to measure, comma-separated (default 0.001,0.01)",
    )
    parser.add_argument(
        "--batch",
        type=int,
        default=500,
        help="sweep batch size (default 500, FLOWDESK_SWEEP_BATCH_SIZE)",
    )
    add_owned_services(parser, database="flowdesk_bench_sla", broker="redis://127.0.0.1:6379/13")
    add_quiet_wait(parser)
    parser.add_argument(
        "--workers",
        type=int,
        default=2,
        help="also sweep each share with the sweep task on a real celery worker of this "
        "many processes (default 2, the Procfile's --concurrency; 0: skip)",
    )
    parser.add_argument(
        "--profile",
        type=Path,
        default=None,
        help="after the measured shares, sweep the largest one once more under cProfile, "
        "save the stats to this file (pstats) and print the top entries (not timed)",
    )
    parser.add_argument(
        "--output",
        type=Path,
        default=None,
        help="JSON figures (default var/bench/sla-<timestamp>.json)",
    )
    args = parser.parse_args(argv)
    check_owned_services(parser, args)
    args.ratio_list = sorted(float(r) for r in args.ratios.split(","))
    if not all(0 < r <= 0.5 for r in args.ratio_list):
        parser.error("--ratios must be shares between 0 and 0.5")
    return args


# --- data -------------------------------------------------------------------------------


def setup_domain() -> dict[str, Any]:
    """Agents in a queue with a manager, and the SLA the tasks run under (through the
    services, as an operator would create them)."""
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group

    from tasks_inbox.lifecycles import lifecycle_get
    from tasks_inbox.models import Queue
    from tasks_inbox.sla.configs import sla_config_save

    group = Group.objects.create(name="Bench")
    users = get_user_model().objects
    agents = [users.create_user(f"agent{n}", f"agent{n}@example.com") for n in range(AGENTS)]
    for agent in agents:
        agent.groups.add(group)
    Queue.objects.create(group=group).managers.add(users.create_user("manager"))
    config = sla_config_save(
        document={
            "name": "Bench",
            "queue": "Bench",
            "target": "4h",
            "warning_after": "3h",
            "escalation_ladder": [
                {"after_percent": 150, "actions": [{"type": "remind"}, {"type": "notify_manager"}]}
            ],
        }
    )
    return {
        "queue_id": group.pk,
        "agent_ids": [a.pk for a in agents],
        "config_id": config.pk,
        "lifecycle_id": lifecycle_get("task").pk,
    }


def task_rows(
    total: int, step: int, domain: dict[str, Any], now: datetime
) -> Iterator[tuple[Any, ...]]:
    """Open tasks with a running clock. Every ``step``-th one started 4 h 05 to 4 h 15 ago:
    its warning has fired and its breach is due. The others started in the last 20 minutes:
    their first threshold (the warning) is 2 h 40 or more away."""
    agents = domain["agent_ids"]
    for pk in range(1, total + 1):
        due = pk % step == 0
        started = now - (
            TARGET + timedelta(minutes=5 + pk % 10) if due else timedelta(seconds=pk % 1200)
        )
        warning_at = started + WARNING
        due_at = started + TARGET
        yield (
            pk,
            f"Bench task {pk}",
            "",
            "bench",
            domain["queue_id"],
            agents[pk % len(agents)],
            started,
            20,
            domain["lifecycle_id"],
            "new",
            True,
            "",
            "{}",
            False,
            "",
            started,
            started,
            due_at,
            domain["config_id"],
            started,
            started,
            0,
            warning_at,
            due_at if due else warning_at,
            warning_at if due else None,
            0,
        )


TASK_COLUMNS = (
    "id",
    "title",
    "description",
    "task_type",
    "queue_id",
    "assignee_id",
    "assigned_at",
    "priority",
    "lifecycle_id",
    "state",
    "is_open",
    "outcome",
    "form",
    "wait",
    "object_id",
    "created_at",
    "updated_at",
    "sla_due_at",
    "sla_config_id",
    "sla_started_at",
    "sla_resumed_at",
    "sla_elapsed_seconds",
    "sla_warning_at",
    "sla_next_check_at",
    "sla_warned_at",
    "sla_escalation_level",
)


def check_columns(conn: psycopg.Connection) -> None:
    """Every NOT NULL column of the task table is loaded (the model may have grown)."""
    required = {
        row[0]
        for row in conn.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_name = %s "
            "AND is_nullable = 'NO' AND column_default IS NULL",
            [TASK_TABLE],
        )
    }
    missing = required - set(TASK_COLUMNS)
    if missing:
        raise RuntimeError(f"bench.sla does not fill the NOT NULL columns {sorted(missing)}")


def secondary_indexes(conn: psycopg.Connection) -> list[tuple[str, str]]:
    """The task table's indexes that back no constraint: (name, definition)."""
    return list(
        conn.execute(
            "SELECT c.relname, pg_get_indexdef(i.indexrelid) FROM pg_index i "
            "JOIN pg_class c ON c.oid = i.indexrelid "
            "WHERE i.indrelid = %s::regclass AND NOT EXISTS "
            "(SELECT 1 FROM pg_constraint k WHERE k.conindid = i.indexrelid)",
            [TASK_TABLE],
        )
    )


def load(
    args: argparse.Namespace, domain: dict[str, Any], step: int, now: datetime
) -> dict[str, float]:
    """COPY the tasks (secondary indexes dropped during the load and rebuilt after), the
    warning records of the due ones, then VACUUM ANALYZE."""
    times: dict[str, float] = {}
    with psycopg.connect(common.owned_database_url(args)) as conn:
        check_columns(conn)
        indexes = secondary_indexes(conn)
        for name, _ in indexes:
            conn.execute(sql.SQL("DROP INDEX {}").format(sql.Identifier(name)))
        conn.commit()
        # A bulk load: the check table's triggers are off during the COPY and the check
        # rows are written after it in one statement.
        conn.execute(
            sql.SQL("ALTER TABLE {} DISABLE TRIGGER USER").format(sql.Identifier(TASK_TABLE))
        )
        started = time.perf_counter()
        chunk = 200_000
        rows = task_rows(args.tasks, step, domain, now)
        columns = sql.SQL(", ").join(map(sql.Identifier, TASK_COLUMNS))
        for offset in range(0, args.tasks, chunk):
            copy_sql = sql.SQL("COPY {} ({}) FROM STDIN").format(
                sql.Identifier(TASK_TABLE), columns
            )
            with conn.cursor() as cursor, cursor.copy(copy_sql) as copy:
                for _ in range(min(chunk, args.tasks - offset)):
                    copy.write_row(next(rows))
            conn.commit()
            log(f"  loaded {min(offset + chunk, args.tasks):,} tasks")
        conn.execute(
            sql.SQL("SELECT setval(pg_get_serial_sequence(%s, 'id'), %s)"), [TASK_TABLE, args.tasks]
        )
        conn.execute(
            sql.SQL("ALTER TABLE {} ENABLE TRIGGER USER").format(sql.Identifier(TASK_TABLE))
        )
        conn.execute(
            sql.SQL(
                "INSERT INTO {} (task_id, next_check_at) SELECT id, sla_next_check_at FROM {} "
                "WHERE is_open AND sla_next_check_at IS NOT NULL"
            ).format(sql.Identifier(CHECK_TABLE), sql.Identifier(TASK_TABLE))
        )
        with (
            conn.cursor() as cursor,
            cursor.copy(
                f"COPY {RECORD_TABLE} (task_id, kind, level, config_id, due_at, fired_at, "
                "details) FROM STDIN"
            ) as copy,
        ):
            for pk in range(step, args.tasks + 1, step):
                started_at = now - (TARGET + timedelta(minutes=5 + pk % 10))
                copy.write_row(
                    (
                        pk,
                        "warning",
                        0,
                        domain["config_id"],
                        started_at + WARNING,
                        started_at + WARNING,
                        "{}",
                    )
                )
        conn.commit()
        times["copy_seconds"] = time.perf_counter() - started
        started = time.perf_counter()
        for _name, definition in indexes:
            conn.execute(definition)
            conn.commit()
        times["index_seconds"] = time.perf_counter() - started
    started = time.perf_counter()
    vacuum()
    times["vacuum_seconds"] = time.perf_counter() - started
    return times


def vacuum() -> None:
    from django.db import connection

    with connection.cursor() as cursor:
        for table in (
            TASK_TABLE,
            CHECK_TABLE,
            RECORD_TABLE,
            "automation_event",
            "tasks_inbox_notification",
        ):
            cursor.execute(f"VACUUM ANALYZE {table}")


def make_due(candidates: list[int], due_ids: list[int]) -> None:
    """Exactly ``due_ids`` due (breach pending), the other candidates not due; nothing the
    previous scenario fired is left."""
    from django.db import connection, transaction

    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(f"DELETE FROM {RECORD_TABLE} WHERE kind <> 'warning'")  # noqa: S608
        cursor.execute("DELETE FROM tasks_inbox_notification")
        cursor.execute("DELETE FROM automation_event")
        cursor.execute(
            f"UPDATE {TASK_TABLE} SET sla_breached_at = NULL, "  # noqa: S608
            "sla_escalation_level = 0, sla_next_check_at = CASE WHEN id = ANY(%s) "
            "THEN sla_due_at ELSE sla_due_at + interval '10 days' END WHERE id = ANY(%s)",
            [due_ids, candidates],
        )
    redis.Redis.from_url(os.environ["CELERY_BROKER_URL"]).flushdb()
    vacuum()


# --- measurements -----------------------------------------------------------------------


def due_query(batch: int) -> Any:
    from django.utils import timezone

    from tasks_inbox.sla.sweep import claim_query

    return claim_query(timezone.now(), batch)


def explain(batch: int) -> str:
    from django.db import transaction

    with transaction.atomic():
        plan = due_query(batch).explain(analyze=True, buffers=True)
        transaction.set_rollback(True)
    return plan


def baselines(repeat: int = 3) -> dict[str, Any]:
    """A bare SELECT of the due set, and a set-based UPDATE of the same rows (rolled back;
    the check table's trigger included), on the same Django connection as the sweep; the
    best of ``repeat`` runs."""
    from django.db import connection, transaction
    from django.utils import timezone

    # the due set as the sweep finds it: through the check table's index
    where = (
        f"is_open AND id IN (SELECT task_id FROM {CHECK_TABLE} "  # noqa: S608
        "WHERE next_check_at <= %s)"
    )
    select_times, update_times, counts = [], [], set()
    for _ in range(repeat):
        now = timezone.now()
        with connection.cursor() as cursor:
            started = time.perf_counter()
            cursor.execute(
                f"SELECT id FROM {TASK_TABLE} WHERE {where} ORDER BY id",  # noqa: S608
                [now],
            )
            counts.add(len(cursor.fetchall()))
            select_times.append(time.perf_counter() - started)
        with transaction.atomic(), connection.cursor() as cursor:
            started = time.perf_counter()
            cursor.execute(
                f"UPDATE {TASK_TABLE} SET sla_breached_at = %s, "  # noqa: S608
                f"sla_next_check_at = NULL WHERE {where}",
                [now, now],
            )
            update_times.append(time.perf_counter() - started)
            transaction.set_rollback(True)
    vacuum()  # the rolled-back versions
    return {
        "select_seconds": min(select_times),
        "update_seconds": min(update_times),
        "due_rows_seen": sorted(counts),
    }


class QueryCounter:
    def __init__(self) -> None:
        self.count = 0

    def __call__(
        self, execute: Any, statement: str, params: Any, many: bool, context: dict[str, Any]
    ) -> Any:
        self.count += 1
        return execute(statement, params, many, context)


def sweep_until_done(batch: int) -> dict[str, Any]:
    """The sweep as the re-enqueued task chain runs it: batches until one is not full."""
    from django.db import connection

    from tasks_inbox.sla.sweep import sla_sweep

    counter = QueryCounter()
    batches, fired, failed, claimed = 0, 0, 0, 0
    with connection.execute_wrapper(counter):
        started = time.perf_counter()
        cpu = time.process_time()
        while True:
            result = sla_sweep(batch_size=batch)
            batches += 1
            fired += result.fired
            failed += result.failed
            claimed += result.claimed
            if not result.full:
                break
        seconds = time.perf_counter() - started
        cpu_seconds = time.process_time() - cpu
    return {
        "seconds": seconds,
        "python_cpu_seconds": cpu_seconds,
        "batches": batches,
        "claimed": claimed,
        "fired": fired,
        "failed": failed,
        "queries": counter.count,
    }


def start_worker(args: argparse.Namespace, candidates: list[int]) -> Any:
    """A ``celery worker`` of ``--workers`` processes on the benchmark's services, warmed up
    (each process has swept a batch: connections open, code and URLs loaded)."""
    from django.conf import settings

    from bench.engine import Worker

    log_dir = Path(settings.VAR_DIR) / "bench"
    log_dir.mkdir(parents=True, exist_ok=True)
    worker = Worker("sla", args.workers, os.environ.copy(), log_dir)
    # the sweeps queue only: the outbox drains the events' doorbell asks for are not the
    # sweep's work (nothing consumes them, as in the in-process sweep)
    worker.command[worker.command.index("--queues") + 1] = "sweeps"
    worker.start()
    make_due(candidates, candidates[: args.batch * args.workers + 50])
    sweep_on_worker(worker, args.batch, timeout=120)
    return worker


def sweep_on_worker(worker: Any, batch: int, *, timeout: float = 600) -> dict[str, Any]:
    """The sweep as production runs it: one ``flowdesk.sweep.sla`` message, each full batch
    enqueueing the next sweep as soon as it is claimed, the worker's processes sweeping side
    by side; timed from the message until no due task is left uncommitted (the due set, read
    every 10 ms, is empty once every batch has committed)."""
    from django.utils import timezone

    from tasks_inbox.models import SLACheck
    from tasks_inbox.tasks import sweep_sla

    due = SLACheck.objects.filter(next_check_at__lte=timezone.now())
    started = time.perf_counter()
    sweep_sla.delay(batch)
    deadline = started + timeout
    while due.exists():
        worker.check_alive()
        if time.perf_counter() > deadline:
            raise RuntimeError(f"the worker's sweep did not finish in {timeout:.0f} s")
        time.sleep(0.01)
    return {"seconds": time.perf_counter() - started}


def verify(due_ids: list[int]) -> dict[str, int]:
    from django.db.models import Count

    from automation.models import Event
    from tasks_inbox.models import SLACheck, SLAEventRecord
    from tasks_inbox.sla.sweep import due_tasks

    breaches = SLAEventRecord.objects.filter(kind="breach")
    per_task = breaches.values("task_id").annotate(n=Count("id")).filter(n__gt=1).count()
    counts = {
        "breach_records": breaches.count(),
        "breach_records_of_due_tasks": breaches.filter(task_id__in=due_ids).count(),
        "tasks_with_two_breach_records": per_task,
        "breach_events": Event.objects.filter(type="task.sla_breached").count(),
        "still_due": due_tasks(datetime.now(UTC)).count(),
        "still_due_in_check_table": SLACheck.objects.filter(
            next_check_at__lte=datetime.now(UTC)
        ).count(),
    }
    if (
        counts["breach_records"] != len(due_ids)
        or counts["breach_events"] != len(due_ids)
        or counts["breach_records_of_due_tasks"] != len(due_ids)
        or counts["still_due"]
        or counts["still_due_in_check_table"]
    ):
        raise RuntimeError(f"the sweep did not breach each due task exactly once: {counts}")
    return counts


def plan_summary(plan: str) -> str:
    lines = [line.strip() for line in plan.splitlines()]
    keep = [
        line
        for line in lines
        if line.startswith(("->", "Limit", "LockRows"))
        or "Index Cond" in line
        or "Execution Time" in line
        or "Buffers" in line
    ]
    return "\n".join(keep)


def scenario(
    ratio: float, candidates: list[int], args: argparse.Namespace, worker: Any = None
) -> dict[str, Any]:
    due_count = max(1, round(args.tasks * ratio))
    stride = max(1, len(candidates) // due_count)
    due_ids = candidates[::stride][:due_count]
    log(f"scenario {ratio:.2%}: {len(due_ids):,} of {args.tasks:,} open tasks due")
    make_due(candidates, due_ids)
    plan = explain(args.batch)
    log("  claim query plan:\n    " + plan_summary(plan).replace("\n", "\n    "))
    base = baselines()
    log(
        f"  baselines: SELECT of the due set {base['select_seconds'] * 1000:.1f} ms, "
        f"set-based UPDATE {base['update_seconds'] * 1000:.1f} ms"
    )
    quiet = wait_for_quiet(args.quiet_wait, args.database, "sweep")
    meter = CpuMeter(database=args.database).start()
    sweep = sweep_until_done(args.batch)
    meter.stop()
    cpu = meter.summary(len(due_ids))
    log(
        f"  sweep: {sweep['fired']:,} breaches in {sweep['seconds']:.2f} s "
        f"({sweep['batches']} batches, {sweep['queries'] / len(due_ids):.1f} queries per task)"
    )
    checked = verify(due_ids)
    on_worker = None
    if worker is not None:
        make_due(candidates, due_ids)
        worker_quiet = wait_for_quiet(args.quiet_wait, args.database, "sweep on the worker")
        meter = CpuMeter(database=args.database).start()
        on_worker = sweep_on_worker(worker, args.batch)
        meter.stop()
        on_worker.update(
            processes=args.workers,
            cpu=meter.summary(len(due_ids)),
            other_load_before=worker_quiet,
            verify=verify(due_ids),
        )
        log(
            f"  sweep on a worker of {args.workers} processes: {len(due_ids):,} breaches in "
            f"{on_worker['seconds']:.2f} s"
        )
    return {
        "ratio": ratio,
        "open_tasks": args.tasks,
        "due": len(due_ids),
        "sweep": sweep,
        "cpu": cpu,
        "other_load_before": quiet,
        "on_worker": on_worker,
        "baselines": base,
        "explain": plan,
        "uses_due_set_index": "sla_check_due" in plan,
        "verify": checked,
        "sweep_ms_per_due_task": sweep["seconds"] * 1000 / len(due_ids),
        "ratio_sweep_over_update": sweep["seconds"] / base["update_seconds"],
        "ratio_sweep_over_select": sweep["seconds"] / base["select_seconds"],
    }


def profiled_sweep(ratio: float, candidates: list[int], args: argparse.Namespace) -> str:
    """The share's due tasks made due again and swept under cProfile (apart from the timed
    sweeps, which the profiler would slow down); the stats go to ``--profile``."""
    import cProfile
    import io
    import pstats

    due_count = max(1, round(args.tasks * ratio))
    due_ids = candidates[:: max(1, len(candidates) // due_count)][:due_count]
    make_due(candidates, due_ids)
    profiler = cProfile.Profile()
    profiler.enable()
    sweep_until_done(args.batch)
    profiler.disable()
    verify(due_ids)
    args.profile.parent.mkdir(parents=True, exist_ok=True)
    profiler.dump_stats(args.profile)
    text = io.StringIO()
    stats = pstats.Stats(profiler, stream=text)
    stats.sort_stats("tottime").print_stats(15)
    stats.sort_stats("cumulative").print_stats(25)
    return f"cProfile of a sweep of {len(due_ids):,} due tasks ({args.profile}):\n" + (
        text.getvalue()
    )


def idle_sweep(args: argparse.Namespace, candidates: list[int]) -> dict[str, float]:
    """A sweep over the million open tasks when none is due (the cost of every quiet
    minute): the best of five."""
    make_due(candidates, [])
    times = []
    for _ in range(5):
        times.append(sweep_until_done(args.batch)["seconds"])
    return {"seconds": min(times), "median_seconds": statistics.median(times)}


def environment() -> dict[str, str]:
    import celery
    import django
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SHOW server_version")
        server = cursor.fetchone()[0]
    return {
        "python": platform.python_version(),
        "django": django.get_version(),
        "celery": celery.__version__,
        "psycopg": psycopg.__version__,
        "postgresql": server,
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
    }


def report(result: dict[str, Any]) -> str:
    rows = result["scenarios"]
    head = (
        f"{'due share':>9} {'open':>9} {'due':>7} {'sweep s':>8} {'ms/due':>7} "
        f"{'due/s':>7} {'SELECT ms':>9} {'UPDATE ms':>9} {'sweep/UPDATE':>12} "
        f"{'sweep/SELECT':>12} {'q/due':>6}"
    )
    lines = [head, "-" * len(head)]
    for row in rows:
        sweep, base = row["sweep"], row["baselines"]
        lines.append(
            f"{row['ratio']:>9.2%} {row['open_tasks']:>9,} {row['due']:>7,} "
            f"{sweep['seconds']:>8.2f} {row['sweep_ms_per_due_task']:>7.2f} "
            f"{row['due'] / sweep['seconds']:>7.0f} {base['select_seconds'] * 1000:>9.1f} "
            f"{base['update_seconds'] * 1000:>9.1f} {row['ratio_sweep_over_update']:>12.0f} "
            f"{row['ratio_sweep_over_select']:>12.0f} {sweep['queries'] / row['due']:>6.1f}"
        )
    for row in rows:
        cpu = row.get("cpu") or {}
        per = cpu.get("cpu_ms_per_item", {})
        if per:
            lines.append(
                f"CPU per due task at {row['ratio']:.2%}: sweep process "
                f"{per['bench']:.2f} ms, its PostgreSQL backend "
                f"{per['postgres_bench_db']:.2f} ms, Redis {per['redis']:.2f} ms; other "
                f"processes used {cpu['other_share_of_machine']:.0%} of the machine"
            )
    for row in rows:
        on_worker = row.get("on_worker")
        if not on_worker:
            continue
        per = on_worker["cpu"].get("cpu_ms_per_item", {})
        lines.append(
            f"on a celery worker of {on_worker['processes']} processes at {row['ratio']:.2%}: "
            f"{on_worker['seconds']:.2f} s, {row['due'] / on_worker['seconds']:.0f} due/s, "
            f"{on_worker['seconds'] * 1000 / row['due']:.2f} ms/due; CPU per due task: "
            f"worker {per.get('bench', 0):.2f} ms, PostgreSQL "
            f"{per.get('postgres_bench_db', 0):.2f} ms, Redis {per.get('redis', 0):.2f} ms; "
            f"other processes used {on_worker['cpu'].get('other_share_of_machine', 0):.0%}"
        )
    if len(rows) >= 2:
        first, last = rows[0], rows[-1]
        due_factor = last["due"] / first["due"]
        time_factor = last["sweep"]["seconds"] / first["sweep"]["seconds"]
        lines.append("")
        lines.append(
            f"due tasks x{due_factor:.1f} -> sweep time x{time_factor:.2f} "
            f"(open tasks unchanged: {first['open_tasks']:,})"
        )
    lines.append(
        f"idle sweep (nothing due, {result['tasks']:,} open): "
        f"{result['idle']['seconds'] * 1000:.1f} ms"
    )
    lines.append(
        f"load: COPY {result['load']['copy_seconds']:.0f} s, indexes "
        f"{result['load']['index_seconds']:.0f} s, vacuum "
        f"{result['load']['vacuum_seconds']:.0f} s; migrate "
        f"{result['migrate_seconds']:.0f} s; whole run {result['bench_seconds']:.0f} s"
    )
    lines.append("environment: " + ", ".join(f"{k} {v}" for k, v in result["environment"].items()))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    bench_started = time.perf_counter()
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    log(f"database {args.database}: recreating and migrating")
    migrate_seconds = common.owned_services_prepare(args)

    import django

    django.setup()
    from django.conf import settings

    domain = setup_domain()
    step = round(1 / max(args.ratio_list))
    now = datetime.now(UTC)
    log(f"loading {args.tasks:,} open tasks (1 in {step} past due)")
    load_times = load(args, domain, step, now)
    candidates = list(range(step, args.tasks + 1, step))
    idle = idle_sweep(args, candidates)
    log(f"idle sweep: {idle['seconds'] * 1000:.1f} ms")
    make_due(candidates, candidates[:50])  # warm up: broker connection, URL resolver
    warm = sweep_until_done(args.batch)
    log(f"warm-up sweep: {warm['fired']} breaches in {warm['seconds']:.2f} s (not reported)")
    worker = start_worker(args, candidates) if args.workers else None
    try:
        scenarios = [scenario(ratio, candidates, args, worker) for ratio in args.ratio_list]
    finally:
        if worker is not None:
            worker.stop()
    result = {
        "benchmark": "sla",
        "timestamp": stamp,
        "tasks": args.tasks,
        "batch": args.batch,
        "load": load_times,
        "migrate_seconds": migrate_seconds,
        "idle": idle,
        "scenarios": scenarios,
        "environment": environment(),
    }
    profile = profiled_sweep(max(args.ratio_list), candidates, args) if args.profile else None
    result["bench_seconds"] = time.perf_counter() - bench_started
    output = args.output or Path(settings.VAR_DIR) / "bench" / f"sla-{stamp}.json"
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(result, indent=2, default=str) + "\n")
    print()
    for row in scenarios:
        print(f"EXPLAIN (ANALYZE, BUFFERS) of the claim query, {row['ratio']:.2%} due:")
        print("  " + row["explain"].replace("\n", "\n  "))
    print()
    print(report(result))
    print(f"figures: {output}")
    if profile:
        print()
        print(profile)
    redis.Redis.from_url(args.broker).flushdb()
    return 0


if __name__ == "__main__":
    sys.exit(main())
