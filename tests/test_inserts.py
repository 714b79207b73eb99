"""``config.inserts.model_insert``: a new row written as ``save(force_insert=True)`` writes it,
and ``save`` itself whenever the shortcut could differ."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.contenttypes.models import ContentType
from django.db import IntegrityError, transaction
from django.db.models.signals import post_save

from automation.models import Event, Note
from config.inserts import model_insert
from crm.models import Deal, Lead


def test_a_row_is_written_with_its_defaults_and_gets_its_key(db: Any) -> None:
    lead = Lead.objects.create(company_name="Acme")
    note = Note(
        content_type=ContentType.objects.get_for_model(Lead), object_id=str(lead.pk), note="hi"
    )
    model_insert(note)
    assert note.pk is not None and not note._state.adding
    stored = Note.objects.get(pk=note.pk)
    assert (stored.note, stored.object_id, stored.visibility) == ("hi", str(lead.pk), "internal")
    assert stored.created_at is not None  # auto_now_add, as save() sets it
    assert stored.created_at == note.created_at


def test_a_model_with_a_post_save_receiver_is_saved_by_save(db: Any) -> None:
    """Deal is registered: its post_save receiver writes a ``deal.created`` event, which the
    shortcut would skip."""
    before = Event.objects.filter(type="deal.created").count()
    deal = Deal(name="Big")
    model_insert(deal)
    assert deal.pk is not None
    assert Event.objects.filter(type="deal.created").count() == before + 1


def test_a_receiver_connected_later_is_honoured(db: Any) -> None:
    seen: list[int] = []

    def receiver(sender: Any, instance: Note, created: bool, **kwargs: Any) -> None:
        seen.append(instance.pk)

    post_save.connect(receiver, sender=Note, weak=False)
    try:
        note = Note(content_type=ContentType.objects.get_for_model(Lead), object_id="1", note="x")
        model_insert(note)
    finally:
        post_save.disconnect(receiver, sender=Note)
    assert seen == [note.pk]


def test_an_error_marks_the_transaction_for_rollback(db: Any) -> None:
    """As save() does: the block the failed INSERT ran in rolls back when it ends."""
    note = Note(content_type=ContentType.objects.get_for_model(Lead), object_id="1", note=None)
    with transaction.atomic():
        with pytest.raises(IntegrityError):
            model_insert(note)  # the note's text is NOT NULL
        assert transaction.get_rollback()
    assert not Note.objects.filter(object_id="1").exists()
