"""The trigger index: a change reloads only the workflow it touched, in every process;
patterns are found by their prefix; a cache that lost the generation means a full reload."""

from __future__ import annotations

from typing import Any

import pytest
from django.core.cache import cache

from automation.matcher import (
    COUNTER_KEY,
    EPOCH_KEY,
    TriggerIndex,
    generation_bump,
    trigger_index,
)
from workflows.models import Workflow
from workflows.services import workflow_delete, workflow_save

pytestmark = [pytest.mark.postgres, pytest.mark.redis]


def document(slug: str, *event_types: str) -> dict[str, Any]:
    return {
        "slug": slug,
        "name": slug,
        "triggers": [{"event_type": event_type} for event_type in event_types],
        "steps": [
            {
                "key": "note",
                "type": "add_note",
                "config": {"entity_type": "lead", "entity_id": "1", "note": "x"},
            }
        ],
    }


def matched(index: TriggerIndex, event_type: str) -> set[str]:
    ids = {c.workflow_id for c in index.match(event_type, {}, refresh=False)}
    return set(Workflow.objects.filter(pk__in=ids).values_list("slug", flat=True))


@pytest.fixture
def fresh_generation() -> None:
    cache.delete_many([EPOCH_KEY, COUNTER_KEY])


def test_a_change_reloads_only_its_workflow_in_another_process(
    db: Any, fresh_generation: None
) -> None:
    workflow_save(document=document("a", "deal.won"))
    changed = workflow_save(document=document("b", "deal.lost"))
    other = TriggerIndex()  # another process: loaded once, then told of changes
    other.refresh()
    assert other.loads == 1 and matched(other, "deal.won") == {"a"}

    workflow_save(document=document("b", "deal.won", "deal.lost"))
    generation_bump(changed.pk)  # what the commit of the change does
    other.refresh()
    assert (other.loads, other.workflow_reloads) == (1, 1)
    assert matched(other, "deal.won") == {"a", "b"}
    assert matched(other, "deal.lost") == {"b"}

    generation_bump()  # a change logged as "everything"
    other.refresh()
    assert other.loads == 2


def test_a_deleted_workflow_reloads_by_its_id(db: Any, fresh_generation: None) -> None:
    gone = workflow_save(document=document("gone", "deal.won"))
    workflow_save(document=document("stays", "deal.won"))
    other = TriggerIndex()
    other.refresh()
    gone_id = gone.pk
    workflow_delete(workflow=gone)
    generation_bump(gone_id)
    other.refresh()
    assert (other.loads, other.workflow_reloads) == (1, 1)
    assert matched(other, "deal.won") == {"stays"}


def test_a_lost_generation_reloads_everything(db: Any, fresh_generation: None) -> None:
    workflow_save(document=document("a", "deal.won"))
    other = TriggerIndex()
    other.refresh()
    cache.delete_many([EPOCH_KEY, COUNTER_KEY])  # a flushed or evicted cache
    workflow_save(document=document("b", "deal.won"))
    other.refresh()
    assert other.loads == 2
    assert matched(other, "deal.won") == {"a", "b"}


def test_the_editing_process_reloads_only_the_edited_workflow(db: Any) -> None:
    workflow_save(document=document("a", "deal.won"))
    trigger_index.refresh()
    loads = trigger_index.loads
    workflow_save(document=document("b", "deal.won"))  # not committed: no generation move
    trigger_index.refresh()
    assert trigger_index.loads == loads and trigger_index.workflow_reloads >= 1
    assert matched(trigger_index, "deal.won") == {"a", "b"}


def test_patterns_match_by_prefix(db: Any) -> None:
    from automation.catalogue import declare_event

    for event_type in ["deal.stage.changed", *[f"p{i}.x" for i in range(50)]]:
        declare_event(event_type, description="An event of the test.")  # patterns must match
    workflow_save(document=document("deals", "deal.*"))
    workflow_save(document=document("stages", "deal.stage.*"))
    workflow_save(document=document("all", "*"))
    workflow_save(document=document("exact", "deal.created"))
    workflow_save(document=document("others", *[f"p{i}.*" for i in range(50)]))
    index = TriggerIndex()
    index.refresh()
    assert matched(index, "deal.created") == {"deals", "all", "exact"}
    assert matched(index, "deal.stage.changed") == {"deals", "stages", "all"}
    assert matched(index, "dealer.created") == {"all"}
    assert matched(index, "deal") == {"all"}
    assert matched(index, "p7.x") == {"others", "all"}
