"""Deep task lists benchmark: page 1 against page 500 of 100,000 tasks.

``python -m bench.lists`` (``--help`` for the knobs) recreates its own database, migrates
it, bulk-loads the tasks (``bulk_create``) into one queue (a third claimable, the rest
assigned to one agent, plus tasks of another queue the agent may not see), and then for
the task API (``/api/v1/tasks/``, 50 a page) and the inbox queues page (``/inbox/queues/``,
25 a page) at page 1 and page 500:

- times the request through Django's test client (server time: middleware, the queries,
  serialization or rendering), p50/p95 over ``--repeats`` requests, with the queries per
  request;
- times the raw baseline of the same run: the bare keyset SQL of the same page, through
  psycopg;
- prints the EXPLAIN (ANALYZE, BUFFERS) of the page's query.

Page 500 is reached with the cursor of its previous page's last row. See bench/README.md
("Deep task lists").
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import redis

from bench import common
from bench.common import add_owned_services, check_owned_services, log


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.lists",
        description="Time page 1 and a deep page of the task API and the inbox queues page "
        "against the bare keyset SQL of the same page.",
    )
    parser.add_argument("--tasks", type=int, default=100_000, help="tasks (default 100000)")
    parser.add_argument("--deep", type=int, default=500, help="the deep page (default 500)")
    parser.add_argument(
        "--repeats", type=int, default=40, help="requests per measurement (default 40)"
    )
    add_owned_services(parser, database="flowdesk_bench_lists", broker="redis://127.0.0.1:6379/8")
    parser.add_argument(
        "--output",
        type=Path,
        default=None,
        help="JSON figures (default var/bench/lists-<timestamp>.json)",
    )
    args = parser.parse_args(argv)
    check_owned_services(parser, args)
    if args.deep < 2 or args.repeats < 5:
        parser.error("--deep must be at least 2 and --repeats at least 5")
    return args


def load(tasks: int) -> dict[str, Any]:
    """The agent's queue with ``tasks`` tasks (a third claimable), and a tenth as many in a
    queue the agent is not in."""
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group
    from django.db import connection

    from tasks_inbox.lifecycles import lifecycle_get
    from tasks_inbox.models import Task

    users = get_user_model().objects
    agent = users.create_user("agent", "agent@example.com")
    other = users.create_user("other", "other@example.com")
    desk, elsewhere = Group.objects.create(name="Desk"), Group.objects.create(name="Other")
    agent.groups.add(desk)
    other.groups.add(elsewhere)
    lifecycle = lifecycle_get("task")
    now = datetime.now(UTC)
    started = time.perf_counter()

    def rows(count: int, queue: Any, member: Any) -> Any:
        for n in range(count):
            yield Task(
                title=f"Task {n}",
                task_type=f"type{n % 7}",
                queue=queue,
                assignee=member if n % 3 else None,
                assigned_at=now if n % 3 else None,
                priority=(10, 20, 30, 40)[n % 4],
                due_at=None if n % 11 == 0 else now + timedelta(minutes=n % 5000 - 2500),
                lifecycle=lifecycle,
                state="new",
                is_open=True,
                created_at=now - timedelta(seconds=n),
                updated_at=now,
            )

    Task.objects.bulk_create(rows(tasks, desk, agent), batch_size=5000)
    Task.objects.bulk_create(rows(tasks // 10, elsewhere, other), batch_size=5000)
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE tasks_inbox_task")
    return {"agent": agent, "seconds": time.perf_counter() - started}


def percentiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "p50_ms": statistics.median(ordered) * 1000,
        "p95_ms": ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))] * 1000,
    }


def page_cursor(queryset: Any, sort: str, page: int, size: int) -> str | None:
    """The cursor of page ``page`` (the ``next`` of the page before it)."""
    from tasks_inbox.keyset import encode_cursor, sort_ordering

    if page == 1:
        return None
    last = queryset.order_by(*sort_ordering(sort))[(page - 1) * size - 1]
    return encode_cursor(sort, last, backward=False)


def page_queryset(queryset: Any, sort: str, cursor: str | None, size: int) -> Any:
    """The bare keyset query of the page (the one ``keyset_page`` runs)."""
    from tasks_inbox.keyset import decode_cursor, past_cursor, sort_ordering

    if cursor:
        values, backward = decode_cursor(cursor, sort)
        queryset = past_cursor(queryset, sort, values, backward)
    return queryset.order_by(*sort_ordering(sort))[: size + 1]


def measure(
    args: argparse.Namespace, agent: Any, name: str, url: str, listed: Any, size: int
) -> list[dict[str, Any]]:
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext
    from django.utils.http import urlencode

    client = Client()
    client.force_login(agent)
    results = []
    for page in (1, args.deep):
        cursor = page_cursor(listed, "priority", page, size)
        full = url + ("&" + urlencode({"cursor": cursor}) if cursor else "")
        for _ in range(3):  # warm up
            assert client.get(full).status_code == 200
        samples, queries = [], set()
        for _ in range(args.repeats):
            with CaptureQueriesContext(connection) as captured:
                started = time.perf_counter()
                response = client.get(full)
                samples.append(time.perf_counter() - started)
            assert response.status_code == 200, response.content[:300]
            queries.add(len(captured.captured_queries))
        sql, params = page_queryset(listed, "priority", cursor, size).query.sql_with_params()
        raw = []
        with psycopg.connect(common.owned_database_url(args)) as conn:
            for _ in range(3 + args.repeats):
                started = time.perf_counter()
                conn.execute(sql, params).fetchall()
                raw.append(time.perf_counter() - started)
            plan = "\n".join(
                row[0]
                for row in conn.execute("EXPLAIN (ANALYZE, BUFFERS) " + sql, params).fetchall()
            )
        results.append(
            {
                "list": name,
                "page": page,
                "page_size": size,
                "server": percentiles(samples),
                "queries_per_request": sorted(queries),
                "raw_keyset_sql": percentiles(raw[3:]),
                "index_scan": "Index Scan" in plan or "Index Only Scan" in plan,
                "sort_on_disk": "external" in plan,
                "sorted": "Sort Method" in plan,
                "explain": plan,
            }
        )
        log(f"{name} page {page}: p50 {results[-1]['server']['p50_ms']:.1f} ms")
    return results


def report(result: dict[str, Any]) -> str:
    lines = [
        f"{result['tasks']:,} tasks; server time per request (Django test client) and the "
        "bare keyset SQL of the same page (psycopg), p50 / p95 ms",
    ]
    for row in result["runs"]:
        lines.append(
            f"  {row['list']:<14} page {row['page']:>4}: server {row['server']['p50_ms']:6.1f}"
            f" / {row['server']['p95_ms']:6.1f}  raw SQL {row['raw_keyset_sql']['p50_ms']:5.2f}"
            f" / {row['raw_keyset_sql']['p95_ms']:5.2f}  queries {row['queries_per_request']}"
            f"  index scan {row['index_scan']}  sort {row['sorted']}"
            f"  sort on disk {row['sort_on_disk']}"
        )
    for name, check in result["targets"].items():
        lines.append(f"  target {name}: {'met' if check else 'MISSED'}")
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
    from django.test.utils import setup_test_environment

    setup_test_environment()
    from tasks_inbox.selectors import task_inbox, tasks_visible_to

    log(f"loading {args.tasks:,} tasks")
    loaded = load(args.tasks)
    agent = loaded["agent"]
    runs = measure(
        args,
        agent,
        "task API",
        "/api/v1/tasks/?sort=priority",
        tasks_visible_to(agent).select_related("queue", "assignee", "lifecycle"),
        50,
    )
    runs += measure(
        args,
        agent,
        "inbox queues",
        "/inbox/queues/?sort=priority",
        task_inbox(user=agent, scope="queues").filter(is_open=True),
        25,
    )
    targets: dict[str, bool] = {}
    for name in ("task API", "inbox queues"):
        first, deep = (row for row in runs if row["list"] == name)
        fast, slow = sorted((first["server"]["p50_ms"], deep["server"]["p50_ms"]))
        targets[f"{name}: page 1 and {args.deep} within 1.5x"] = slow <= 1.5 * fast
        targets[f"{name}: p95 < 50 ms"] = (
            max(first["server"]["p95_ms"], deep["server"]["p95_ms"]) < 50
        )
        targets[f"{name}: queries constant"] = (
            first["queries_per_request"] == deep["queries_per_request"]
            and len(first["queries_per_request"]) == 1
        )
    result = {
        "benchmark": "lists",
        "timestamp": stamp,
        "tasks": args.tasks,
        "deep_page": args.deep,
        "repeats": args.repeats,
        "load_seconds": loaded["seconds"],
        "migrate_seconds": migrate_seconds,
        "runs": runs,
        "targets": targets,
        "environment": {
            "python": platform.python_version(),
            "django": django.get_version(),
            "psycopg": psycopg.__version__,
            "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        },
        "bench_seconds": time.perf_counter() - bench_started,
    }
    output = args.output or Path(settings.VAR_DIR) / "bench" / f"lists-{stamp}.json"
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(result, indent=2, default=str) + "\n")
    print()
    for row in runs:
        print(f"EXPLAIN (ANALYZE, BUFFERS), {row['list']} page {row['page']}:")
        print("  " + row["explain"].replace("\n", "\n  "))
    print()
    print(report(result))
    print(f"figures: {output}")
    redis.Redis.from_url(args.broker).flushdb()
    return 0


if __name__ == "__main__":
    sys.exit(main())
