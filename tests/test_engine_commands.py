"""replay_events and run_sweeps."""

from __future__ import annotations

from io import StringIO
from typing import Any

import pytest
from django.core.management import call_command

from automation.events import emit
from automation.models import Run
from crm.models import Deal
from workflows.services import workflow_save

pytestmark = pytest.mark.django_db


def test_replay_starts_new_workflows_on_old_events_once(drain: Any) -> None:
    deal = Deal.objects.create(name="Old")
    for _ in range(3):
        emit("deal.won", {"deal_id": deal.pk})
    drain()
    assert Run.objects.count() == 0
    workflow_save(
        document={
            "slug": "late",
            "name": "Late",
            "triggers": [{"event_type": "deal.won"}],
            "steps": [
                {
                    "key": "note",
                    "type": "add_note",
                    "config": {"entity_type": "deal", "entity_id": "{{deal_id}}", "note": "late"},
                }
            ],
        }
    )
    out = StringIO()
    call_command("replay_events", "--type", "deal.*", "--inline", stdout=out)
    # deal.created and the three deal.won events; only the latter start runs.
    assert "4 event(s) replayed; started 3 run(s)" in out.getvalue()
    call_command("replay_events", "--type", "deal.won", "--inline", stdout=StringIO())
    drain()
    assert Run.objects.filter(status="completed").count() == 3


def test_replay_dry_run_and_bad_dates() -> None:
    out = StringIO()
    call_command("replay_events", "--dry-run", stdout=out)
    assert "0 event(s) would be replayed" in out.getvalue()
    with pytest.raises(Exception, match="not an ISO datetime"):
        call_command("replay_events", "--since", "yesterday")


def test_run_sweeps(drain: Any) -> None:
    out = StringIO()
    call_command("run_sweeps", "--stale-after", "0", stdout=out)
    assert "outbox:" in out.getvalue() and "stale:" in out.getvalue()
