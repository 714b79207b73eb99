"""Models registered with the engine.

One call per model says the name its events use, the fields whose changes raise
``<name>.<field>_changed`` events, the fields workflows may write (``update_field``), the
fields exports may read, and who may see which rows in an export::

    register_model(Lead, name="lead", track=["status"], writable=["status"],
                   exportable=["id", "company_name", "status"],
                   visibility=lambda user: Q(owner=user) if user else Q(pk__in=[]))

Privacy of contexts (:func:`serialize_instance`): a related user (a foreign key to the
user model) is never copied whole; it becomes ``{"id", "username", "display_name"}``, and
gets its ``email`` only when the relation is named in ``user_fields_with_email``. Fields
named in ``masked`` keep their key but their value is ``MASKED`` ("***") in every event
context, and so in runs, step inputs, simulations and exports (a related registered
object is serialised with its own registration's ``masked``); a masked field cannot also
be tracked, since its change events would carry the value::

    register_model(Lead, name="lead", user_fields_with_email=["owner"],
                   masked=["annual_revenue"])

Visibility (:func:`visible_rows`): active staff see every row; anyone else, and "no user"
(an event without an actor), sees the rows the registration's ``visibility(user)`` hook
returns a ``Q`` for; a registration without a hook shows nothing to non-staff users.

The model's ``post_save``/``post_delete`` signals then write events to the outbox.
``QuerySet.update()``, ``bulk_create()`` and raw SQL bypass signals and raise no events;
host code that changes rows that way calls ``automation.emit()`` itself.
"""

from __future__ import annotations

import datetime as dt
import decimal
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from django.db import models
from django.db.models import Q

# Never copied into an event context, whatever model they are on.
SENSITIVE_FIELDS = frozenset({"password", "secret", "token", "api_key", "value_encrypted"})
# What a masked field's value is replaced by.
MASKED = "***"


@dataclass(frozen=True)
class ModelRegistration:
    model: type[models.Model]
    name: str
    track: tuple[str, ...] = ()
    writable: tuple[str, ...] = ()
    exportable: tuple[str, ...] = ()
    extra: dict[str, Any] = field(default_factory=dict)
    # (user or None) -> Q of the rows that user may see; see visible_rows().
    visibility: Callable[[Any], Q] | None = None
    # Relations to the user model whose email may appear in contexts.
    user_fields_with_email: tuple[str, ...] = ()
    # Fields whose value is MASKED in contexts, simulations and exports.
    masked: tuple[str, ...] = ()


_by_name: dict[str, ModelRegistration] = {}
_by_model: dict[type[models.Model], ModelRegistration] = {}


def register_model(
    model: type[models.Model],
    *,
    name: str | None = None,
    track: list[str] | tuple[str, ...] = (),
    writable: list[str] | tuple[str, ...] = (),
    exportable: list[str] | tuple[str, ...] = (),
    visibility: Callable[[Any], Q] | None = None,
    user_fields_with_email: list[str] | tuple[str, ...] = (),
    masked: list[str] | tuple[str, ...] = (),
) -> ModelRegistration:
    """Register ``model`` with the engine (call from ``AppConfig.ready``)."""
    name = name or model._meta.model_name or model.__name__.lower()
    concrete = {f.name for f in model._meta.concrete_fields}
    for group, names in (
        ("track", track),
        ("writable", writable),
        ("exportable", exportable),
        ("masked", masked),
        ("user_fields_with_email", user_fields_with_email),
    ):
        unknown = set(names) - concrete
        if unknown:
            raise ValueError(f"{model.__name__}: unknown {group} fields {sorted(unknown)}")
    if set(masked) & set(track):
        raise ValueError(
            f"{model.__name__}: masked fields {sorted(set(masked) & set(track))} "
            "cannot be tracked (their change events would carry the value)"
        )
    not_users = [
        n
        for n in user_fields_with_email
        if not _is_user_model(model._meta.get_field(n).related_model)
    ]
    if not_users:
        raise ValueError(
            f"{model.__name__}: user_fields_with_email {sorted(not_users)} "
            "are not relations to the user model"
        )
    registration = ModelRegistration(
        model=model,
        name=name,
        track=tuple(track),
        writable=tuple(writable),
        exportable=tuple(exportable),
        visibility=visibility,
        user_fields_with_email=tuple(user_fields_with_email),
        masked=tuple(masked),
    )
    _by_name[name] = registration
    _by_model[model] = registration
    from automation.receivers import connect_model

    connect_model(model)
    return registration


def unregister_model(model: type[models.Model]) -> None:
    from automation.receivers import disconnect_model

    disconnect_model(model)
    registration = _by_model.pop(model, None)
    if registration:
        _by_name.pop(registration.name, None)


def registration_for_model(model: type[models.Model]) -> ModelRegistration | None:
    return _by_model.get(model)


def registration_for_name(name: str) -> ModelRegistration | None:
    return _by_name.get(name)


def registrations() -> list[ModelRegistration]:
    return list(_by_name.values())


def visible_rows(registration: ModelRegistration, user: Any) -> models.QuerySet:
    """The rows of a registered model ``user`` may see (``None``: no user, e.g. a schedule).

    Active staff see all rows. Otherwise the registration's ``visibility`` hook decides
    (it receives ``None`` for no user or an inactive one); without a hook, nothing.
    """
    queryset = registration.model._default_manager.all()
    if user is not None and not getattr(user, "is_active", False):
        user = None
    if user is not None and getattr(user, "is_staff", False):
        return queryset
    if registration.visibility is None:
        return queryset.none()
    condition = registration.visibility(user)
    if not isinstance(condition, Q):
        raise TypeError(f"visibility hook of '{registration.name}' must return a Q object")
    return queryset.filter(condition)


def json_value(value: Any) -> Any:
    """A JSON-safe, lossless form: Decimals as strings, dates and datetimes as ISO strings."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, decimal.Decimal):
        return str(value)
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, dict):
        return {str(k): json_value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [json_value(v) for v in value]
    return str(value)


def _is_user_model(model: Any) -> bool:
    from django.contrib.auth import get_user_model
    from django.contrib.auth.base_user import AbstractBaseUser

    return isinstance(model, type) and (
        issubclass(model, AbstractBaseUser) or model is get_user_model()
    )


def field_values(
    instance: models.Model, masked: tuple[str, ...] | frozenset[str] = ()
) -> dict[str, Any]:
    """The instance's own concrete fields (foreign keys as ``<name>_id`` and ``<name>``=id);
    fields named in ``masked`` have the value :data:`MASKED`."""
    data: dict[str, Any] = {}
    for f in instance._meta.concrete_fields:
        if f.name in SENSITIVE_FIELDS:
            continue
        value = getattr(instance, f.attname)
        if isinstance(f, models.DecimalField) and isinstance(value, decimal.Decimal):
            # As stored, whether the instance was loaded or just built in memory.
            value = value.quantize(decimal.Decimal(1).scaleb(-f.decimal_places))
        value = MASKED if f.name in masked and value is not None else json_value(value)
        data[f.attname] = value
        if f.is_relation:
            data[f.name] = value
    return data


def user_summary(user: Any, *, with_email: bool = False) -> dict[str, Any]:
    """A user as contexts show it: id, username and display name (and email if asked)."""
    full_name = user.get_full_name() if hasattr(user, "get_full_name") else ""
    summary: dict[str, Any] = {
        "id": user.pk,
        "username": user.get_username(),
        "display_name": full_name.strip() or user.get_username(),
    }
    if with_email:
        summary["email"] = getattr(user, "email", "") or ""
    return summary


def serialize_instance(instance: models.Model) -> dict[str, Any]:
    """Fields, plus related objects one level deep: a related user as :func:`user_summary`,
    a related registered object with its registration's masked fields, others as their
    fields. The registration's ``masked`` fields of ``instance`` are masked, relations
    included."""
    registration = _by_model.get(type(instance))
    masked = registration.masked if registration else ()
    with_email = registration.user_fields_with_email if registration else ()
    data = field_values(instance, masked)
    for f in instance._meta.concrete_fields:
        if not f.is_relation or f.name in masked or getattr(instance, f.attname) is None:
            continue
        try:
            related = getattr(instance, f.name)
        except models.ObjectDoesNotExist:
            continue
        if related is None:
            continue
        if _is_user_model(type(related)):
            data[f.name] = user_summary(related, with_email=f.name in with_email)
        else:
            related_registration = _by_model.get(type(related))
            data[f.name] = field_values(
                related, related_registration.masked if related_registration else ()
            )
    return data


def tracked_values(instance: models.Model, registration: ModelRegistration) -> dict[str, Any]:
    """Current values of the tracked fields; deferred (not loaded) fields are left out."""
    values = {}
    loaded = instance.__dict__
    for name in registration.track:
        attname = instance._meta.get_field(name).attname  # type: ignore[union-attr]
        if attname in loaded:
            values[name] = json_value(loaded[attname])
    return values
