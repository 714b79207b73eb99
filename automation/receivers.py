"""Signal receivers that turn model changes into events (thin: they call ``event_emit``).

Connected per registered model by ``register_model``. Original values of tracked fields are
remembered when an instance is loaded, so an update can say what changed without a query.
"""

from __future__ import annotations

from typing import Any

from django.db import models
from django.db.models.signals import post_delete, post_init, post_save

from automation.models import EventSource
from automation.registry import (
    ModelRegistration,
    registration_for_model,
    serialize_instance,
    tracked_values,
)

ORIGINAL_ATTR = "_flowdesk_original"
# Models whose signals raise events now (the event catalogue lists their model events).
_connected: set[type[models.Model]] = set()


def remember_original(sender: type[models.Model], instance: models.Model, **kwargs: object) -> None:
    registration = registration_for_model(sender)
    # Instances loaded from the database still say "adding" here; a pk tells them apart.
    if registration is None or instance.pk is None:
        return
    setattr(instance, ORIGINAL_ATTR, tracked_values(instance, registration))


def model_context(
    registration: ModelRegistration, instance: models.Model, changes: dict[str, Any] | None = None
) -> dict[str, Any]:
    data = serialize_instance(instance)
    context = {**data, registration.name: data, "entity_type": registration.name}
    context["changes"] = changes or {}
    return context


def on_save(
    sender: type[models.Model],
    instance: models.Model,
    created: bool,
    raw: bool = False,
    **kwargs: object,
) -> None:
    from automation.events import event_emit

    registration = registration_for_model(sender)
    if registration is None or raw:
        return
    name = registration.name
    if created:
        context = model_context(registration, instance)
        event_emit(
            f"{name}.created",
            context=context,
            source=EventSource.MODEL,
            entity_type=name,
            entity_id=instance.pk,
        )
    else:
        original = getattr(instance, ORIGINAL_ATTR, None) or {}
        current = tracked_values(instance, registration)
        changes = {
            field: {"old": original.get(field), "new": value}
            for field, value in current.items()
            if field in original and original[field] != value
        }
        context = model_context(registration, instance, changes)
        event_emit(
            f"{name}.updated",
            context=context,
            source=EventSource.MODEL,
            entity_type=name,
            entity_id=instance.pk,
        )
        for field, change in changes.items():
            event_emit(
                f"{name}.{field}_changed",
                context={**context, f"old_{field}": change["old"], f"new_{field}": change["new"]},
                source=EventSource.MODEL,
                entity_type=name,
                entity_id=instance.pk,
            )
    setattr(instance, ORIGINAL_ATTR, tracked_values(instance, registration))


def on_delete(sender: type[models.Model], instance: models.Model, **kwargs: object) -> None:
    from automation.events import event_emit

    registration = registration_for_model(sender)
    if registration is None:
        return
    event_emit(
        f"{registration.name}.deleted",
        context=model_context(registration, instance),
        source=EventSource.MODEL,
        entity_type=registration.name,
        entity_id=instance.pk,
    )


def connect_model(model: type[models.Model]) -> None:
    uid = f"flowdesk:{model._meta.label_lower}"
    post_init.connect(remember_original, sender=model, dispatch_uid=f"{uid}:init")
    post_save.connect(on_save, sender=model, dispatch_uid=f"{uid}:save")
    post_delete.connect(on_delete, sender=model, dispatch_uid=f"{uid}:delete")
    _connected.add(model)


def disconnect_model(model: type[models.Model]) -> None:
    uid = f"flowdesk:{model._meta.label_lower}"
    post_init.disconnect(sender=model, dispatch_uid=f"{uid}:init")
    post_save.disconnect(sender=model, dispatch_uid=f"{uid}:save")
    post_delete.disconnect(sender=model, dispatch_uid=f"{uid}:delete")
    _connected.discard(model)


def connected_models() -> frozenset[type[models.Model]]:
    """The models whose saves and deletes raise events."""
    return frozenset(_connected)
