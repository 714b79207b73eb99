"""Trigger index benchmark: what one workflow edit costs a worker, and what pattern
triggers of other prefixes cost the matching of an event.

``python -m bench.triggers`` loads ``--workflows`` workflows of ``--per-workflow``
triggers each (default 2,000 x 5 = 10,000 triggers, a tenth of them ``p<i>.*`` patterns,
a fifth with a condition) straight into a database of its own, then, in this process:

1. **Raw baseline**: the index's query alone (the published definitions, read and decoded).
2. **Full load**: a fresh index built from nothing (what every process paid for any edit
   before edits were logged per workflow).
3. **One edit**: a workflow re-saved through ``workflow_save``, its commit moving the
   generation; then the refresh of an index loaded before it (another worker's), which
   reloads that workflow only. Median of ``--edits``.
4. **Matching**: ``match()`` of an exact event type on indexes holding 0 and ``--patterns``
   pattern triggers of other prefixes, with the per-type cache cleared before each call
   (the lookup itself) and warm.

Times are CPU seconds of this process (``time.process_time``) and wall seconds; the CPU
figure hardly moves when other work shares the machine. See bench/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import redis

from bench import common
from bench.common import add_owned_services, check_owned_services, log, migrate

EDIT_GOAL_MS = 50.0


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.triggers", description=__doc__)
    parser.add_argument("--workflows", type=int, default=2000)
    parser.add_argument("--per-workflow", type=int, default=5)
    parser.add_argument("--edits", type=int, default=7, help="edits measured (median)")
    parser.add_argument(
        "--patterns", type=int, default=5000, help="pattern triggers of other prefixes"
    )
    add_owned_services(
        parser, database="flowdesk_bench_triggers", broker="redis://127.0.0.1:6379/11"
    )
    parser.add_argument("--output", type=Path, default=None)
    args = parser.parse_args(argv)
    check_owned_services(parser, args)
    return args


def definition(i: int, per: int, prefix: str = "t") -> dict[str, Any]:
    triggers = []
    for j in range(per):
        trigger: dict[str, Any] = {"event_type": f"{prefix}{i}.e{j}"}
        if prefix == "p" or (i * per + j) % 10 == 0:
            trigger = {"event_type": f"{prefix}{i}.*"}
        if (i * per + j) % 5 == 1:
            trigger["conditions"] = {"and": [{"field": "amount", "operator": "gt", "value": j}]}
        triggers.append(trigger)
    return {
        "slug": f"{prefix}-{i}",
        "name": f"{prefix} {i}",
        "description": "",
        "is_active": True,
        "triggers": triggers,
        "steps": [
            {
                "key": "note",
                "type": "add_note",
                "config": {"entity_type": "lead", "entity_id": "1", "note": "x"},
            }
        ],
    }


def load_workflows(count: int, per: int, prefix: str) -> None:
    """Workflows with a published version each, in a few bulk statements."""
    from workflows.models import Workflow, WorkflowVersion

    workflows = Workflow.objects.bulk_create(
        [Workflow(slug=f"{prefix}-{i}", name=f"{prefix} {i}") for i in range(count)]
    )
    versions = WorkflowVersion.objects.bulk_create(
        [
            WorkflowVersion(workflow=w, number=1, definition=definition(i, per, prefix))
            for i, w in enumerate(workflows)
        ]
    )
    for workflow, version in zip(workflows, versions, strict=True):
        workflow.published_version = version
    Workflow.objects.bulk_update(workflows, ["published_version"])


def timed(fn: Any) -> tuple[float, float]:
    """(CPU ms, wall ms) of ``fn()``."""
    cpu, wall = time.process_time(), time.perf_counter()
    fn()
    return (time.process_time() - cpu) * 1000, (time.perf_counter() - wall) * 1000


def best(samples: list[tuple[float, float]]) -> dict[str, float]:
    return {
        "cpu_ms_median": round(statistics.median(s[0] for s in samples), 3),
        "wall_ms_median": round(statistics.median(s[1] for s in samples), 3),
        "cpu_ms_min": round(min(s[0] for s in samples), 3),
    }


def match_cost(index: Any, event_type: str, calls: int) -> dict[str, float]:
    """CPU microseconds per match: the lookup (per-type cache cleared first) and warm."""
    context = {"amount": 10}
    cpu = time.process_time()
    for _ in range(calls):
        index._by_type = {}
        index.match(event_type, context, refresh=False)
    cold = (time.process_time() - cpu) / calls * 1e6
    cpu = time.process_time()
    for _ in range(calls):
        index.match(event_type, context, refresh=False)
    warm = (time.process_time() - cpu) / calls * 1e6
    return {"lookup_us": round(cold, 2), "warm_us": round(warm, 2)}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    env = {
        "DATABASE_URL": f"{args.postgres.rstrip('/')}/{args.database}",
        "CELERY_BROKER_URL": args.broker,
        "CACHE_URL": args.broker,
        "DEBUG": "0",
        "DJANGO_SETTINGS_MODULE": "config.settings",
    }
    os.environ.update(env)
    redis.Redis.from_url(args.broker).flushdb()
    log(f"database {args.database}: recreating and migrating")
    common.database_recreate(args.postgres, args.database)
    migrate({**os.environ, **env})

    import django

    django.setup()
    from django.conf import settings

    from automation.matcher import TriggerIndex
    from workflows.models import Workflow
    from workflows.services import workflow_save

    triggers = args.workflows * args.per_workflow
    log(f"loading {args.workflows} workflows x {args.per_workflow} triggers")
    load_workflows(args.workflows, args.per_workflow, "t")

    probe = TriggerIndex()
    raw = best([timed(lambda: probe._rows(None)) for _ in range(3)])
    full = best([timed(lambda: TriggerIndex().refresh()) for _ in range(3)])
    log(f"raw query {raw['cpu_ms_median']:.1f} ms CPU; full load {full['cpu_ms_median']:.1f} ms")

    from automation.catalogue import declare_event

    # Saving checks that every trigger names a known event type: declare the edited
    # workflows' types (the index loaded above went straight into the database).
    for n in range(args.edits):
        declare_event(f"edited{n}.x", description="An edited trigger of the benchmark.")
        for j in range(args.per_workflow):
            declare_event(f"t{(n * 37) % args.workflows}.e{j}", description="A benchmark type.")

    other = TriggerIndex()  # another worker's index, loaded before the edits
    other.refresh()
    edits = []
    for n in range(args.edits):
        i = (n * 37) % args.workflows
        document = definition(i, args.per_workflow)
        document["triggers"] = [*document["triggers"], {"event_type": f"edited{n}.x"}]
        workflow_save(document=document)  # commits: the generation moves
        edits.append(timed(other.refresh))
    edit = best(edits)
    assert other.loads == 1, "an edit reloaded the whole index"
    assert other.match(f"edited{args.edits - 1}.x", {}, refresh=False)
    log(f"one edit: {edit['cpu_ms_median']:.1f} ms CPU per worker")

    exact_type = "t7.e1"
    without = match_cost(other, exact_type, 2000)
    load_workflows(args.patterns, 1, "p")  # one p<i>.* pattern each (position 0)
    with_patterns = TriggerIndex()
    with_patterns.refresh()
    pattern_count = sum(len(v) for v in with_patterns._prefixes.values())
    with_ = match_cost(with_patterns, exact_type, 2000)
    log(
        f"match {exact_type}: {without['lookup_us']:.1f} us with no other patterns, "
        f"{with_['lookup_us']:.1f} us with {pattern_count} pattern triggers of other prefixes"
    )
    result = {
        "benchmark": "triggers",
        "timestamp": stamp,
        "workflows": args.workflows,
        "triggers": triggers,
        "raw_query": raw,
        "full_load": full,
        "one_edit_refresh": edit,
        "edit_over_full_load": round(edit["cpu_ms_median"] / full["cpu_ms_median"], 4),
        "edit_goal_ms": EDIT_GOAL_MS,
        "match_no_other_patterns": without,
        "match_with_other_patterns": with_,
        "pattern_triggers": pattern_count,
        "workflows_total": Workflow.objects.count(),
    }
    out_dir = Path(settings.VAR_DIR) / "bench"
    out_dir.mkdir(parents=True, exist_ok=True)
    output = args.output or out_dir / f"triggers-{stamp}.json"
    output.write_text(json.dumps(result, indent=2) + "\n")
    rows = [
        ("triggers", f"{triggers} in {args.workflows} workflows"),
        ("raw query (baseline)", f"{raw['cpu_ms_median']:.1f} ms CPU"),
        ("full index load", f"{full['cpu_ms_median']:.1f} ms CPU"),
        (
            "one edit, per worker",
            f"{edit['cpu_ms_median']:.2f} ms CPU ({edit['wall_ms_median']:.2f} ms wall; "
            f"{result['edit_over_full_load']:.4f} x full load; goal < {EDIT_GOAL_MS:.0f} ms)",
        ),
        (
            "match, lookup",
            f"{without['lookup_us']:.1f} us with no pattern triggers of other prefixes, "
            f"{with_['lookup_us']:.1f} us with {pattern_count}",
        ),
        (
            "match, warm",
            f"{without['warm_us']:.1f} us / {with_['warm_us']:.1f} us",
        ),
    ]
    width = max(len(label) for label, _ in rows)
    print("-" * (width + 40))
    print("Flowdesk trigger index benchmark")
    print("-" * (width + 40))
    for label, value in rows:
        print(f"{label.ljust(width)}  {value}")
    print(f"figures: {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
