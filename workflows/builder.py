"""What the builder page needs beyond the API: the choices its step forms offer.

Queues, lifecycles, secrets (names only) and the event catalogue come from their API
endpoints; the registered models with their writable fields, the active users and the
email templates have no endpoint of their own and are handed to the page here.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.db import models

from automation.models import EmailTemplate
from automation.registry import registrations

MAX_USERS = 500


def _field_type(field: models.Field) -> str:
    if field.is_relation:
        return "reference"
    if isinstance(field, models.BooleanField):
        return "boolean"
    if isinstance(field, (models.IntegerField, models.DecimalField, models.FloatField)):
        return "number"
    if isinstance(field, models.DateTimeField):
        return "datetime"
    if isinstance(field, models.DateField):
        return "date"
    return "string"


def entity_types() -> list[dict[str, Any]]:
    """Registered models, each with the fields ``update_field`` may write (type, choices)."""
    out = []
    for reg in sorted(registrations(), key=lambda r: r.name):
        writable = []
        for name in reg.writable:
            field = reg.model._meta.get_field(name)
            if not isinstance(field, models.Field):
                continue  # a reverse relation or a generic key is never writable
            choices = [
                {"value": value, "label": str(label)} for value, label in (field.choices or [])
            ]
            if field.is_relation:
                kind = "user" if field.related_model is get_user_model() else "reference"
            else:
                kind = _field_type(field)
            writable.append(
                {
                    "name": name,
                    "label": str(field.verbose_name).capitalize(),
                    "type": kind,
                    "choices": choices or None,
                }
            )
        out.append(
            {
                "name": reg.name,
                "label": str(reg.model._meta.verbose_name).capitalize(),
                "writable": writable,
                "exportable": list(reg.exportable),
            }
        )
    return out


def builder_lookups() -> dict[str, Any]:
    users = (
        get_user_model()
        .objects.filter(is_active=True)
        .order_by("username")
        .values("id", "username", "email")[:MAX_USERS]
    )
    return {
        "entity_types": entity_types(),
        "users": list(users),
        "email_templates": list(EmailTemplate.objects.order_by("name").values("name", "subject")),
    }
