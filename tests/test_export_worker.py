"""A 100,000-row export on a real worker (PostgreSQL, Redis, SMTP on loopback).

Given 100,000 leads (70,000 Ann's, 30,000 Bob's), when a staff user's run exports them,
then progress is visible from this process while the worker writes, the file holds every
row, the worker's memory barely moves, and the link arrives by mail; when Ann's run
exports, she gets her 70,000 rows and none of Bob's. Figures are printed (run with -s).
"""

from __future__ import annotations

import csv
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from django.conf import settings

from automation.models import ActionRun, Export, Run, RunStatus, StepStatus
from crm.models import Lead
from tests.conftest import WorkerProcess, wait_for
from tests.step_servers import execute, one_step_workflow, smtp_server, step_of

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.worker]

ROWS = 100_000


def pool_child(worker: WorkerProcess) -> int:
    assert worker.proc is not None
    path = Path(f"/proc/{worker.proc.pid}/task/{worker.proc.pid}/children")
    children = wait_for(lambda: path.read_text().split(), message="the worker's pool process")
    return int(children[0])


def memory_kb(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise AssertionError(f"no {field} for {pid}")


def watch_export(run: Any) -> list[dict[str, Any]]:
    """Sample the step's progress from this process until the run ends."""
    samples: list[dict[str, Any]] = []
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        progress = ActionRun.objects.filter(run=run).values_list("progress", flat=True).first()
        if progress and (not samples or samples[-1] != progress):
            samples.append(progress)
        if Run.objects.filter(
            pk=run.pk, status__in=[RunStatus.COMPLETED, RunStatus.FAILED]
        ).exists():
            return samples
        time.sleep(0.02)
    pytest.fail("the export did not finish in 300s")


def read_export(media: Path, run: Any) -> list[list[str]]:
    export = Export.objects.get(action_run=step_of(run))
    with open(media / export.file.name, newline="", encoding="utf-8") as handle:
        return list(csv.reader(handle))


def test_100k_export_progress_memory_mail_and_visibility(
    start_worker: Any, make_user: Any, tmp_path: Path
) -> None:
    boss, ann, bob = make_user("boss", staff=True), make_user("ann"), make_user("bob")
    Lead.objects.bulk_create(
        [
            Lead(
                company_name=f"Company {i:06d}",
                email=f"c{i}@example.com",
                budget=i,
                annual_revenue=i * 10,
                owner=ann if i % 10 < 7 else bob,
            )
            for i in range(ROWS)
        ],
        batch_size=5000,
    )
    workflow = one_step_workflow(
        "big-export", "enqueue_export", {"entity_type": "lead", "email_to": "{{actor.email}}"}
    )

    with smtp_server() as smtp:
        worker = start_worker(
            "export",
            concurrency=1,
            FLOWDESK_VAR_DIR=str(tmp_path),
            SECRET_KEY=settings.SECRET_KEY,
            EMAIL_BACKEND="django.core.mail.backends.smtp.EmailBackend",
            EMAIL_HOST="127.0.0.1",
            EMAIL_PORT=str(smtp.port),
        )
        child = pool_child(worker)
        rss_before = memory_kb(child, "VmRSS")

        run = execute(workflow, actor=boss)
        samples = watch_export(run)
        peak_after = memory_kb(child, "VmHWM")
        step = step_of(run)
        assert step.status == StepStatus.COMPLETED, step.error

        # Progress was visible from outside while the worker wrote the file.
        writing = [s for s in samples if s.get("phase") == "writing"]
        assert any(0 < s["rows_written"] < ROWS for s in writing), samples[:5]
        assert all(s["total"] == ROWS for s in writing)
        assert step.progress["phase"] == "done" and step.progress["rows_written"] == ROWS
        counts = [s["rows_written"] for s in writing]
        assert counts == sorted(counts)

        media = tmp_path / "media"
        rows = read_export(media, run)
        assert len(rows) == ROWS + 1 and rows[0][0] == "id"
        assert len({row[0] for row in rows[1:]}) == ROWS

        # The link is mailed; it leads to the download page, which serves the stored file.
        [message] = smtp.wait(1)
        assert message.rcpt_tos == [boss.email]
        link = step.output["url"]
        assert link in message.body("plain")
        assert urlsplit(link).path == f"/exports/{step.output['export_id']}/download/"
        assert (media / step.output["file"]).exists()

        delta_mb = (peak_after - rss_before) / 1024
        seconds = step.duration_ms / 1000
        print(
            f"\nworker export of {ROWS:,} rows: {seconds:.1f}s, "
            f"{len(writing)} progress samples seen while writing, "
            f"pool RSS {rss_before / 1024:.0f} MB before, peak {peak_after / 1024:.0f} MB "
            f"after (delta {delta_mb:.1f} MB)"
        )
        assert delta_mb < 64

        # Ann may see her own leads only.
        ann_run = execute(workflow, actor=ann)
        wait_for(
            lambda: Run.objects.filter(pk=ann_run.pk, status=RunStatus.COMPLETED).exists(),
            timeout=120,
            message="Ann's export",
        )
        ann_rows = read_export(media, ann_run)
        owner = ann_rows[0].index("owner")
        assert len(ann_rows) - 1 == 70_000
        assert {row[owner] for row in ann_rows[1:]} == {str(ann.pk)}
        assert step_of(ann_run).output["visible_to"] == "ann"
        assert smtp.wait(2)[1].rcpt_tos == [ann.email]
