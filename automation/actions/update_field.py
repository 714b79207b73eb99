"""``update_field``: set one writable field of a registered object, through the model.

Only fields the model's registration lists as ``writable`` may be set. The object is saved
with ``save(update_fields=[field])`` so its own signals (and so its events) fire.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.core.exceptions import ObjectDoesNotExist, ValidationError
from django.db import models

from automation.actions import (
    StepConfigCode,
    StepContext,
    StepFailed,
    StepResult,
    dry_run_for,
    object_schema,
    step_type,
    templated,
)
from automation.actions.entities import entity, entity_type_issues, is_templated, registration
from automation.registry import json_value
from config.issues import Issue
from config.references import users_named

SCHEMA = object_schema(
    {
        "entity_type": {"type": "string", "minLength": 1},
        "entity_id": templated({"type": ["integer", "string"]}),
        "field": {"type": "string", "minLength": 1},
        "value": {},
    },
    required=["entity_type", "entity_id", "field", "value"],
)


def _writable_field(entity_type: str, name: str) -> models.Field:
    reg = registration(entity_type)
    if name not in reg.writable:
        raise StepFailed(
            f"field '{name}' of {entity_type} is not writable by workflows "
            f"(writable: {', '.join(reg.writable) or 'none'})",
            code="FIELD_NOT_WRITABLE",
        )
    field = reg.model._meta.get_field(name)
    if not isinstance(field, models.Field):  # a reverse relation or a generic key
        raise StepFailed(
            f"field '{name}' of {entity_type} is not writable", code="FIELD_NOT_WRITABLE"
        )
    return field


def _coerce(field: models.Field, value: object, instance: models.Model) -> Any:
    if field.is_relation:
        if value in (None, ""):
            return None
        related = field.related_model
        if not isinstance(related, type):  # resolved once the apps are loaded
            raise StepFailed(f"field '{field.name}' has no related model", code="INVALID_VALUE")
        if related is get_user_model() and isinstance(value, str) and not value.isdigit():
            users = users_named(value)
            if not users:
                raise StepFailed(f"no user '{value}'", code="INVALID_VALUE")
            if len(users) > 1:
                raise StepFailed(
                    f"'{value}' names several users; give the id or the username",
                    code="INVALID_VALUE",
                )
            return users[0]
        try:
            return related._default_manager.get(pk=value)
        except (ObjectDoesNotExist, ValueError, TypeError):
            raise StepFailed(
                f"{field.name}: {value!r} does not exist", code="INVALID_VALUE"
            ) from None
    try:
        return field.clean(value, instance)
    except ValidationError as exc:
        raise StepFailed(f"{field.name}: {'; '.join(exc.messages)}", code="INVALID_VALUE") from None


# Django's validation error codes, as the step's config issues name them.
_FIELD_ERROR_CODES = {
    "invalid_choice": StepConfigCode.NOT_A_CHOICE,
    "max_length": StepConfigCode.TOO_LONG,
}


def check_config(config: dict[str, Any], path: str) -> list[Issue]:
    """The entity type is registered, the field exists and is writable, and a value known
    on save is one the model field accepts (its type, choices, max length; a related
    object or user that exists)."""
    reg, issues = entity_type_issues(config, path)
    name = config.get("field")
    if reg is None or not isinstance(name, str):
        return issues
    concrete = {f.name: f for f in reg.model._meta.concrete_fields}
    if name not in concrete:
        known = ", ".join(sorted(reg.writable)) or "none"
        return [
            Issue(
                f"{path}.field",
                StepConfigCode.UNKNOWN_FIELD,
                f"{reg.name} has no field {name!r} (writable: {known})",
            )
        ]
    if name not in reg.writable:
        return [
            Issue(
                f"{path}.field",
                StepConfigCode.FIELD_NOT_WRITABLE,
                f"field '{name}' of {reg.name} is not writable by workflows "
                f"(writable: {', '.join(reg.writable) or 'none'})",
            )
        ]
    if "value" not in config or is_templated(config["value"]):
        return []
    return _value_issues(concrete[name], config["value"], f"{path}.value")


def _value_issues(field: models.Field, value: object, path: str) -> list[Issue]:
    if field.is_relation:
        try:
            _coerce(field, value, None)  # type: ignore[arg-type]
        except StepFailed as exc:
            code = (
                StepConfigCode.UNKNOWN_USER
                if field.related_model is get_user_model()
                else StepConfigCode.INVALID_FIELD_VALUE
            )
            return [Issue(path, code, exc.message)]
        return []
    try:
        field.clean(value, None)
    except ValidationError as exc:
        return [
            Issue(
                path,
                _FIELD_ERROR_CODES.get(error.code or "", StepConfigCode.INVALID_FIELD_VALUE),
                f"{field.name}: {'; '.join(error.messages)}",
            )
            for error in exc.error_list
        ]
    return []


@step_type("update_field", schema=SCHEMA, label="Update a field", check=check_config)
def update_field(ctx: StepContext) -> StepResult:
    """Set the field and save through the model (its events fire); no-op if unchanged."""
    config = ctx.config
    field = _writable_field(config["entity_type"], config["field"])
    instance = entity(config["entity_type"], config["entity_id"], lock=True)
    value = _coerce(field, config["value"], instance)
    old = getattr(instance, field.attname)
    new = value.pk if isinstance(value, models.Model) else value
    if old == new:
        return StepResult(output={"changed": False, "value": json_value(new)})
    setattr(instance, field.name, value)
    instance.save(update_fields=[field.name])
    return StepResult(output={"changed": True, "old": json_value(old), "value": json_value(new)})


@dry_run_for("update_field")
def update_field_dry_run(ctx: StepContext) -> dict[str, Any]:
    field = _writable_field(ctx.config["entity_type"], ctx.config["field"])
    # Read only: the object must exist and the value be one the field takes.
    instance = entity(ctx.config["entity_type"], ctx.config["entity_id"])
    _coerce(field, ctx.config["value"], instance)
    return {
        "would": "update a field",
        "entity_type": ctx.config["entity_type"],
        "entity_id": ctx.config["entity_id"],
        "field": field.name,
        "value": ctx.config["value"],
    }
