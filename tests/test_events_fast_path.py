"""The events endpoint's shortcuts give what the long way gives: the body check without
the serializer, and the event's INSERT without ``Model.save``."""

from __future__ import annotations

from typing import Any

import pytest
from django.db.models.signals import pre_save
from django.forms.models import model_to_dict

from automation.api.serializers import EventCreateSerializer, event_create_input
from automation.events import event_emit
from automation.models import Event, EventSource

BODIES: list[Any] = [
    {"type": "deal.won"},
    {"type": "deal.won", "payload": {"amount": 5, "nested": {"a": [1, 2.5, None, True]}}},
    {"type": "a_b.c_d.e9", "payload": {}},
    {"type": "deal.won", "payload": {"x": 1}, "extra": "ignored"},
    {"type": " deal.won "},  # trimmed by the serializer
    {"type": "deal.won\n"},
    {"type": "deal"},
    {"type": "Deal.Won"},
    {"type": "deal..won"},
    {"type": ""},
    {"type": None},
    {"type": 5},
    {"type": True},
    {"type": ["deal.won"]},
    {"type": "a." + "b" * 148},  # 150 characters
    {"type": "a." + "b" * 149},  # 151
    {"type": "déal.won"},
    {"type": "deal.won", "payload": None},
    {"type": "deal.won", "payload": []},
    {"type": "deal.won", "payload": "text"},
    {"type": "deal.won", "payload": 3},
    {"payload": {}},
    {},
    [],
    ["deal.won"],
    "deal.won",
    None,
]


@pytest.mark.parametrize("body", BODIES)
def test_the_body_check_agrees_with_the_serializer(body: Any) -> None:
    serializer = EventCreateSerializer(data=body)
    valid = serializer.is_valid()
    found = event_create_input(body)
    if found is not None:
        assert valid
        assert found == (
            serializer.validated_data["type"],
            serializer.validated_data.get("payload") or {},
        )
    elif valid:  # left to the serializer: only what it changes (trims) or defaults
        assert serializer.validated_data["type"] != body.get("type")


@pytest.mark.django_db
def test_the_insert_stores_what_save_stores(make_user: Any) -> None:
    actor = make_user(staff=True)
    fast = event_emit("deal.won", {"amount": 5}, actor=actor, source=EventSource.API)
    assert fast.pk is not None and not fast._state.adding and fast._state.db == "default"

    saved: list[Event] = []

    def listener(sender: Any, instance: Event, **kwargs: Any) -> None:
        saved.append(instance)

    pre_save.connect(listener, sender=Event, dispatch_uid="test-events-fast-path")
    try:
        slow = event_emit("deal.won", {"amount": 5}, actor=actor, source=EventSource.API)
    finally:
        pre_save.disconnect(dispatch_uid="test-events-fast-path", sender=Event)
    assert saved == [slow]  # with a receiver listening, the ordinary save() ran

    rows = {
        event.pk: model_to_dict(event, exclude=["id", "occurred_at"])
        for event in Event.objects.filter(pk__in=[fast.pk, slow.pk])
    }
    assert rows[fast.pk] == rows[slow.pk]
    assert rows[fast.pk]["source"] == EventSource.API
    assert rows[fast.pk]["payload"]["actor"]["id"] == actor.pk
    assert Event.objects.get(pk=fast.pk).occurred_at == fast.occurred_at
