"""An event meets the workflows that were live when it was written, with a real worker:
the worker is stopped while an event commits, a new workflow is published and another is
switched off; when the worker starts, the event starts a run of the one switched off after
it and none of the one published after it."""

from __future__ import annotations

import time
from typing import Any

import pytest

from automation.events import emit
from automation.models import Event, Run
from crm.models import Deal
from tests.conftest import wait_for
from tests.test_drafts import note_workflow, notes_on
from workflows.services import workflow_save, workflow_set_active

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.worker,
    pytest.mark.postgres,
    pytest.mark.redis,
]


def test_a_stopped_worker_starts_the_runs_of_the_workflows_live_when_the_event_was_written(
    start_worker: Any,
) -> None:
    # No worker yet: every commit below only waits in the outbox (and on the broker).
    switched_off = workflow_save(document=note_workflow("switched-off"))
    deal = Deal.objects.create(name="Stopped worker")
    first = emit("deal.won", {"deal_id": deal.pk})
    workflow_save(document=note_workflow("published-later"))
    workflow_set_active(workflow=switched_off, is_active=False)
    second = emit("deal.won", {"deal_id": deal.pk})
    time.sleep(0.5)
    assert Run.objects.count() == 0
    assert Event.objects.filter(dispatched_at__isnull=True).count() == 3  # with deal.created

    start_worker("w")
    wait_for(
        lambda: (
            not Event.objects.filter(dispatched_at__isnull=True).exists()
            and Run.objects.count() == 2
            and not Run.objects.exclude(status="completed").exists()
        ),
        timeout=60,
        message="the worker to dispatch the three events and finish their runs",
    )
    time.sleep(1)  # anything started late would show now
    runs = {
        (run.event_id, run.workflow.slug, run.version.number)
        for run in Run.objects.select_related("workflow", "version")
    }
    assert runs == {(first.pk, "switched-off", 1), (second.pk, "published-later", 1)}
    assert notes_on(deal) == ["published-later ran", "switched-off ran"]
