"""Where an R1 run spends its time: the queries and transactions of the worker's code path.

``python -m bench.profile`` runs the body of the ``flowdesk.dispatch_pending`` task (the
task called in-process, exactly what a worker executes: the outbox drained in batches), or
with ``--path single`` that of ``flowdesk.dispatch_event`` for each event, for K events of
the R1 workflow, on a database of its own, on one warm connection. Every SQL statement is timed
through ``connection.execute_wrapper`` and attributed to the engine function that issued it;
commits are counted. It prints per run: wall time, database time, queries, commits; then
each statement shape with the function that issued it, its count and time per run; the
cost of a new connection per task; and the top functions of a cProfile of the same path.
See bench/README.md.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import re
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis

from bench.common import add_owned_services, check_owned_services
from bench.engine import EVENT_TYPE, bench_env, bench_setup, database_recreate, migrate

ROOT = Path(__file__).resolve().parent.parent
ENGINE_DIRS = tuple(str(ROOT / name) + "/" for name in ("automation", "workflows", "crm"))
NUMBER = re.compile(r"\b\d+(\.\d+)?\b")
STRING = re.compile(r"'(?:[^']|'')*'")
SAVEPOINT = re.compile(r'"s\d+_x\d+"')


def statement_shape(statement: str) -> str:
    """The statement with literals replaced by ``?``, so equal shapes group together."""
    return NUMBER.sub("?", STRING.sub("?", SAVEPOINT.sub('"sp"', statement)))


def engine_caller() -> str:
    """``module.function:line`` of the innermost engine frame on the stack."""
    frame = sys._getframe(2)
    while frame is not None:
        filename = frame.f_code.co_filename
        if filename.startswith(ENGINE_DIRS):
            module = filename[len(str(ROOT)) + 1 : -3].replace("/", ".")
            return f"{module}.{frame.f_code.co_name}:{frame.f_lineno}"
        frame = frame.f_back
    return "?"


@dataclass
class QueryLog:
    """An ``execute_wrapper``: (caller, statement, seconds) of every statement."""

    queries: list[tuple[str, str, float]] = field(default_factory=list)
    paused: bool = False  # while the events of the next drain are written

    def __call__(
        self,
        execute: Callable[..., Any],
        statement: str,
        params: Any,
        many: bool,
        context: dict[str, Any],
    ) -> Any:
        if self.paused:
            return execute(statement, params, many, context)
        caller = engine_caller()
        started = time.perf_counter()
        try:
            return execute(statement, params, many, context)
        finally:
            self.queries.append((caller, statement, time.perf_counter() - started))


class CommitCounter:
    """Counts (and times) the commits of Django's connection while installed."""

    def __init__(self) -> None:
        self.count = 0
        self.seconds = 0.0
        self.paused = False

    def install(self) -> Callable[[], None]:
        from django.db import connection

        original = connection._commit

        def counted() -> None:
            started = time.perf_counter()
            try:
                original()
            finally:
                if not self.paused:
                    self.count += 1
                    self.seconds += time.perf_counter() - started

        connection._commit = counted

        def uninstall() -> None:
            del connection._commit

        return uninstall


def emit_events(lead_id: int, count: int) -> list[int]:
    """Outbox rows written as ``automation.events.emit`` writes them, without the publish
    (the path measured here is the worker's)."""
    from django.db import transaction

    from automation.events import event_emit

    with transaction.atomic():
        return [
            event_emit(EVENT_TYPE, {"lead_id": lead_id, "seq": seq}, dispatch=False).pk
            for seq in range(count)
        ]


PATHS = ("drain", "single")


def drive_batches(
    lead_id: int,
    count: int,
    batch: int,
    meters: tuple[Any, ...] = (),
    profiler: cProfile.Profile | None = None,
) -> tuple[list[int], float]:
    """Steady traffic: ``batch`` events written, then one drain (the task's body), until
    ``count`` events are done; (event ids, milliseconds per event of the drains alone, CPU
    milliseconds of this process per event in them). The writes are left out of ``meters``
    (their ``paused``) and of ``profiler``."""
    from automation.tasks import dispatch_pending

    event_ids: list[int] = []
    spent = cpu = 0.0
    while len(event_ids) < count:
        for meter in meters:
            meter.paused = True
        event_ids += emit_events(lead_id, min(batch, count - len(event_ids)))
        for meter in meters:
            meter.paused = False
        if profiler is not None:
            profiler.enable()
        started, cpu_started = time.perf_counter(), time.process_time()
        dispatch_pending()
        spent += time.perf_counter() - started
        cpu += time.process_time() - cpu_started
        if profiler is not None:
            profiler.disable()
    return event_ids, spent / count * 1000, cpu / count * 1000


def drive(event_ids: list[int], reconnect: bool = False, path: str = "drain") -> float:
    """Dispatch the events as a worker does; milliseconds per event.

    ``drain``: the ``dispatch_pending`` task's body (the outbox drained in batches), called
    until the events are dispatched. ``single``: the ``dispatch_event`` task's body for each
    event (the sweep's and replay's path). With ``reconnect``, the connection is closed
    around each task, as Celery's Django fixup does unless ``CELERY_DB_REUSE_MAX`` is set."""
    from django.db import connection

    from automation.models import Event
    from automation.tasks import dispatch_event, dispatch_pending

    started = time.perf_counter()
    if path == "drain":
        while Event.objects.filter(pk__in=event_ids, dispatched_at__isnull=True).exists():
            if reconnect:
                connection.close()
            dispatch_pending()
    else:
        for event_id in event_ids:
            if reconnect:
                connection.close()
            dispatch_event(event_id)
    if reconnect:
        connection.close()
    return (time.perf_counter() - started) / len(event_ids) * 1000


def check_done(event_ids: list[int]) -> None:
    from automation.models import Note, Run

    runs = Run.objects.filter(event_id__in=event_ids)
    completed = runs.filter(status="completed").count()
    notes = Note.objects.filter(action_run__run__event_id__in=event_ids).count()
    if completed != len(event_ids) or notes != len(event_ids):
        raise RuntimeError(
            f"expected {len(event_ids)} completed runs and notes, found "
            f"{completed} runs and {notes} notes (is the path asynchronous?)"
        )


def measure(
    lead_id: int, runs: int, path: str, batch: int | None
) -> tuple[QueryLog, CommitCounter, float]:
    from django.db import connection

    event_ids = [] if batch else emit_events(lead_id, runs)
    log, commits = QueryLog(), CommitCounter()
    uninstall = commits.install()
    try:
        with connection.execute_wrapper(log):
            if batch:
                event_ids, wall, _ = drive_batches(lead_id, runs, batch, (log, commits))
            else:
                wall = drive(event_ids, path=path)
    finally:
        uninstall()
    check_done(event_ids)
    return log, commits, wall


def print_queries(log: QueryLog, commits: CommitCounter, wall_ms: float, runs: int) -> None:
    db_ms = sum(q[2] for q in log.queries) / runs * 1000
    commit_ms = commits.seconds / runs * 1000
    statements = [q for q in log.queries if "SAVEPOINT" not in q[1]]
    print(f"\n== Per run, mean over {runs} runs (one warm connection) ==")
    print(
        f"  wall {wall_ms:.2f} ms = statements {db_ms:.2f} ms + commits {commit_ms:.2f} ms "
        f"+ Python {wall_ms - db_ms - commit_ms:.2f} ms"
    )
    print(
        f"  {len(statements) / runs:.1f} queries, {commits.count / runs:.1f} commits, "
        f"{(len(log.queries) - len(statements)) / runs:.1f} savepoint statements"
    )
    groups: dict[tuple[str, str], list[float]] = defaultdict(list)
    for caller, statement, seconds in log.queries:
        groups[(caller, statement_shape(statement))].append(seconds)
    print("\n  per run  ms/run  issued by / statement")
    for (caller, shape), durations in sorted(groups.items(), key=lambda item: -sum(item[1])):
        if len(durations) / runs < 0.05:
            continue  # one-off statements (an index reload) are not per-run costs
        text = shape if len(shape) <= 200 else shape[:197] + "..."
        print(f"  {len(durations) / runs:7.2f}  {sum(durations) / runs * 1000:6.3f}  {caller}")
        print(f"                   {text}")


def print_profile(profiler: cProfile.Profile, runs: int, limit: int) -> None:
    for key in ("tottime", "cumulative"):
        stream = io.StringIO()
        stats = pstats.Stats(profiler, stream=stream)
        stats.sort_stats(key).print_stats(limit)
        print(f"\n== cProfile of {runs} runs, top {limit} by {key} ==")
        text = stream.getvalue()
        start = text.find("   ncalls")
        print(text[start:] if start >= 0 else text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.profile",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--runs", type=int, default=200, help="events measured (default 200)")
    parser.add_argument("--warmup", type=int, default=20, help="events run first, unmeasured")
    parser.add_argument(
        "--path",
        choices=PATHS,
        default="drain",
        help="drain: the outbox drained in batches, what workers do (default);"
        " single: one event per task, the sweep's path",
    )
    parser.add_argument(
        "--batch",
        type=int,
        default=0,
        help="drain path: write this many events before each drain (steady traffic: 1 is a "
        "lone event per drain); default 0, all of them first (full batches)",
    )
    parser.add_argument("--top", type=int, default=30, help="functions listed by cProfile")
    add_owned_services(
        parser, database="flowdesk_bench_profile", broker="redis://127.0.0.1:6379/14"
    )
    parser.add_argument(
        "--settings",
        default="config.settings",
        help="Django settings module (default config.settings)",
    )
    args = parser.parse_args(argv)
    check_owned_services(parser, args)
    env = bench_env(args)
    redis.Redis.from_url(args.broker).flushdb()
    database_recreate(args)
    migrate(env)

    import django

    django.setup()
    from django.conf import settings

    # The drain's coalescing wait is a sleep, not the engine's work: left out here.
    settings.FLOWDESK = {**settings.FLOWDESK, "DISPATCH_COALESCE_SECONDS": 0.0}
    lead_id = bench_setup()
    path = args.path
    batch = args.batch if path == "drain" else 0
    drive(emit_events(lead_id, args.warmup), path=path)
    print(f"path: {path}" + (f", {batch} events per drain" if batch else ""))

    log, commits, wall = measure(lead_id, args.runs, path, batch)
    print_queries(log, commits, wall, args.runs)

    if batch:
        _, wall, cpu = drive_batches(lead_id, args.runs, batch)
        print(f"\n== Unmeasured: {wall:.2f} ms per event, {cpu:.2f} ms of this process's CPU ==")
        profiler = cProfile.Profile()
        drive_batches(lead_id, args.runs, batch, profiler=profiler)
        print_profile(profiler, args.runs, args.top)
        return 0
    warm = drive(emit_events(lead_id, args.runs), path=path)
    cold = drive(emit_events(lead_id, args.runs), reconnect=True, path=path)
    print("\n== Connection reuse ==")
    print(f"  one connection for all runs:          {warm:6.2f} ms per run")
    print(
        f"  a new connection per run (per task):  {cold:6.2f} ms per run  (+{cold - warm:.2f} ms)"
    )

    event_ids = emit_events(lead_id, args.runs)
    profiler = cProfile.Profile()
    profiler.enable()
    drive(event_ids, path=path)
    profiler.disable()
    print_profile(profiler, args.runs, args.top)
    return 0


if __name__ == "__main__":
    sys.exit(main())
