"""Looking up registered objects by the names steps use (``entity_type`` + ``entity_id``)."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ObjectDoesNotExist
from django.db import connection, models

from automation.actions import StepConfigCode, StepFailed
from automation.registry import ModelRegistration, registration_for_name, registrations
from config.issues import Issue


def registration(entity_type: str) -> ModelRegistration:
    found = registration_for_name(str(entity_type))
    if found is None:
        known = ", ".join(sorted(r.name for r in registrations()))
        raise StepFailed(
            f"unknown entity_type '{entity_type}' (registered: {known})", code="UNKNOWN_ENTITY_TYPE"
        )
    return found


def entity(entity_type: str, entity_id: object, *, lock: bool = False) -> models.Model:
    reg = registration(entity_type)
    manager = reg.model._default_manager
    queryset = manager.select_for_update() if lock else manager.all()
    try:
        return queryset.get(pk=entity_id)
    except (ObjectDoesNotExist, ValueError, TypeError):
        raise StepFailed(
            f"{entity_type} {entity_id!r} does not exist", code="ENTITY_NOT_FOUND"
        ) from None


def entity_key(entity_type: str, entity_id: object) -> tuple[type[models.Model], object]:
    """The model and primary key of an object that must exist (as :func:`entity` checks
    it), without loading the row: one ``SELECT id``."""
    reg = registration(entity_type)
    manager = reg.model._default_manager
    try:
        if type(manager) is models.Manager and connection.vendor == "postgresql":
            # A plain manager (no filtering queryset): the statement without the ORM's
            # query building, the id prepared by the field as ``filter(pk=...)`` does it.
            pk = reg.model._meta.pk
            assert pk is not None
            table, column = connection.ops.quote_name(reg.model._meta.db_table), pk.column
            with connection.cursor() as cursor:
                cursor.execute(
                    f"SELECT {connection.ops.quote_name(str(column))} FROM {table} "  # noqa: S608
                    f"WHERE {connection.ops.quote_name(str(column))} = %s LIMIT 1",
                    [pk.get_db_prep_value(pk.get_prep_value(entity_id), connection)],
                )
                found = [row[0] for row in cursor.fetchall()]
        else:
            found = list(manager.filter(pk=entity_id).order_by().values_list("pk", flat=True)[:1])
    except (ValueError, TypeError):
        found = []
    if not found:
        raise StepFailed(f"{entity_type} {entity_id!r} does not exist", code="ENTITY_NOT_FOUND")
    return reg.model, found[0]


def entity_types_schema() -> dict[str, Any]:
    return {"type": "string", "minLength": 1}


def is_templated(value: object) -> bool:
    """A value only known at run time (a string holding a ``{{ template }}``)."""
    return isinstance(value, str) and "{{" in value


def entity_type_issues(
    config: dict[str, Any], path: str
) -> tuple[ModelRegistration | None, list[Issue]]:
    """The registration ``config["entity_type"]`` names, or an ``UNKNOWN_ENTITY_TYPE`` issue
    (nothing to say when the key is absent: the schema says whether it is required)."""
    name = config.get("entity_type")
    if not isinstance(name, str) or not name or is_templated(name):
        return None, []  # absent, or known only when the step runs
    found = registration_for_name(name)
    if found is not None:
        return found, []
    known = ", ".join(sorted(r.name for r in registrations()))
    return None, [
        Issue(
            f"{path}.entity_type",
            StepConfigCode.UNKNOWN_ENTITY_TYPE,
            f"unknown entity type {name!r} (registered: {known})",
        )
    ]
