"""The event catalogue: every event type the engine can raise or accept, with the shape of
its context (the paths conditions and templates address, their types and choices, and the
related objects they reach).

Where entries come from:

- **model** events of the registered models whose signals are connected
  (``automation.registry``): ``<name>.created``, ``<name>.updated``, ``<name>.deleted``
  and ``<name>.<field>_changed`` per tracked field, shaped like
  ``automation.receivers.model_context`` builds them (related users as their summary,
  masked fields as text);
- **declared** events: host code calls :func:`declare_event` once, from its
  ``AppConfig.ready()``, for each domain event it emits (``kind="domain"``), and apps that
  raise events of their own declare them the same way (the tasks app declares its task
  and SLA events with ``kind="task"``/``"sla"``); a schedule's event type is declared with
  ``kind="schedule"``::

      declare_event("deal.won", schema={"type": "object", "properties": {
          "deal_id": {"type": "integer"}, "amount": {"type": "number"}}},
          description="A deal was closed as won.")

  The schema is JSON Schema: ``properties`` (nested objects too) are the context's fields
  (``type`` with ``"null"`` for nullable, ``enum`` for choices, ``format`` ``date``,
  ``date-time`` or ``user``, ``title`` as the label); ``additionalProperties: true`` says
  the payload may carry more. Without a schema the payload is free-form.
- **schedule** events: the event types of the enabled ``flowdesk.emit_scheduled``
  schedules (django-celery-beat), when not declared;
- **manual**: ``workflow.<slug>.executed``, a workflow run by hand (``execute/``), whose
  payload is whatever the caller gave.

Every context also has ``event.*`` (id, type, occurred_at, source, depth) and ``actor.*``
(the user who caused it, or null). An event type that is neither registered nor declared
is unknown, and validation refuses it (:func:`event_known`).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from django.db import models

from automation.registry import (
    MASKED,
    SENSITIVE_FIELDS,
    ModelRegistration,
    registration_for_model,
    registrations,
)

Kind = Literal["model", "task", "sla", "domain", "schedule", "manual"]
KINDS: tuple[str, ...] = ("model", "task", "sla", "domain", "schedule", "manual")
FIELD_TYPES: tuple[str, ...] = (
    "string",
    "integer",
    "number",
    "boolean",
    "date",
    "datetime",
    "object",
    "array",
    "user",
    "any",
)
MANUAL_TYPE = "workflow.*.executed"

# The condition operators each type of field takes (``changed`` and ``exists`` always).
OPERATORS_BY_TYPE: dict[str, frozenset[str]] = {
    "string": frozenset(
        {"eq", "ne", "gt", "gte", "lt", "lte", "in", "not_in", "contains", "startswith"}
        | {"endswith"}
    ),
    "integer": frozenset({"eq", "ne", "gt", "gte", "lt", "lte", "in", "not_in"}),
    "number": frozenset({"eq", "ne", "gt", "gte", "lt", "lte", "in", "not_in"}),
    "date": frozenset({"eq", "ne", "gt", "gte", "lt", "lte", "in", "not_in"}),
    "datetime": frozenset({"eq", "ne", "gt", "gte", "lt", "lte", "in", "not_in"}),
    "boolean": frozenset({"eq", "ne", "in", "not_in"}),
    "object": frozenset({"eq", "ne"}),
    "user": frozenset({"eq", "ne"}),
    "array": frozenset({"eq", "ne", "contains", "in", "not_in"}),
}
ALWAYS_OPERATORS = frozenset({"exists", "changed"})


@dataclass(frozen=True)
class ContextField:
    """One path of an event's context."""

    path: str
    type: str
    label: str
    choices: tuple[Any, ...] | None = None
    nullable: bool = False
    max_length: int | None = None
    # True when what lies under the path is not listed (a JSON field, a free-form object).
    open: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "type": self.type,
            "choices": list(self.choices) if self.choices is not None else None,
            "nullable": self.nullable,
            "label": self.label,
        }

    def allows(self, operator: str) -> bool:
        """Whether a condition operator can apply to a value of this field's type."""
        if operator in ALWAYS_OPERATORS or self.type == "any":
            return True
        return operator in OPERATORS_BY_TYPE.get(self.type, frozenset())


@dataclass(frozen=True)
class RelatedObject:
    path: str
    entity: str

    def as_dict(self) -> dict[str, Any]:
        return {"path": self.path, "entity": self.entity}


@dataclass(frozen=True)
class EventEntry:
    """An event type and the shape of its context."""

    type: str
    group: str
    kind: str
    label: str
    description: str = ""
    fields: tuple[ContextField, ...] = ()
    related: tuple[RelatedObject, ...] = ()
    # The payload may carry keys beyond ``fields`` (undeclared or free-form).
    open: bool = False
    # Prefixes under which the same fields are reachable too: a model event copies its
    # object's fields to the top level (``status`` as well as ``lead.status``); an emitted
    # payload is at the top level and under ``payload``.
    aliases: tuple[tuple[str, str], ...] = ()
    _index: dict[str, ContextField] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        self._index.update({f.path: f for f in self.fields})

    def as_dict(self) -> dict[str, Any]:
        return {
            "type": self.type,
            "group": self.group,
            "kind": self.kind,
            "label": self.label,
            "description": self.description,
            "fields": [f.as_dict() for f in self.fields],
            "related": [r.as_dict() for r in self.related],
        }

    def _candidates(self, path: str) -> list[str]:
        """``path`` and what it stands for through the aliases."""
        found = [path]
        for alias, target in self.aliases:
            if alias and path != alias and not path.startswith(f"{alias}."):
                continue
            rest = path[len(alias) :].lstrip(".") if alias else path
            found.append(f"{target}.{rest}" if target and rest else target or rest)
        return [candidate for candidate in found if candidate]

    def lookup(self, path: str) -> ContextField | None:
        """The field at ``path`` (through the aliases), or None."""
        for candidate in self._candidates(path):
            if candidate in self._index:
                return self._index[candidate]
        return None

    def has_path(self, path: str) -> bool:
        """Whether a condition or template can find something at ``path``: a listed field,
        an object holding listed fields, anything under an open field, or anything at all
        when the payload is open."""
        if self.open:
            return True
        for candidate in self._candidates(path):
            if not candidate:
                continue
            if candidate in self._index:
                return True
            prefix = f"{candidate}."
            if any(known.startswith(prefix) for known in self._index):
                return True
            parts = candidate.split(".")
            for end in range(len(parts) - 1, 0, -1):
                parent = self._index.get(".".join(parts[:end]))
                if parent is not None:
                    if parent.open:
                        return True
                    break
        return False


# --- the common part of every context ----------------------------------------------

EVENT_SOURCES = ("model", "emit", "api", "schedule", "task", "manual")


def _common_fields() -> list[ContextField]:
    from automation.models import EventSource

    return [
        ContextField("event.id", "integer", "Event id"),
        ContextField("event.type", "string", "Event type"),
        ContextField("event.occurred_at", "datetime", "Occurred at"),
        ContextField("event.source", "string", "Source", choices=tuple(EventSource.values)),
        ContextField("event.depth", "integer", "Causation depth"),
        ContextField("actor", "user", "Actor", nullable=True),
        ContextField("actor.id", "integer", "Actor id", nullable=True),
        ContextField("actor.username", "string", "Actor username", nullable=True),
        ContextField("actor.email", "string", "Actor email", nullable=True),
        ContextField("actor.is_staff", "boolean", "Actor is staff", nullable=True),
    ]


# --- model events ----------------------------------------------------------------------


def field_type(model_field: models.Field) -> str:
    """The catalogue type of a model field's value in a context."""
    if model_field.is_relation:
        return "user" if _is_user_model(model_field.related_model) else "object"
    if isinstance(model_field, models.BooleanField):
        return "boolean"
    if isinstance(model_field, models.AutoField | models.IntegerField):
        return "integer"
    if isinstance(model_field, models.DecimalField | models.FloatField | models.DurationField):
        return "number"
    if isinstance(model_field, models.DateTimeField):
        return "datetime"
    if isinstance(model_field, models.DateField):
        return "date"
    if isinstance(model_field, models.JSONField):
        return "any"
    return "string"


def _is_user_model(model: object) -> bool:
    from django.contrib.auth import get_user_model

    return model is get_user_model()


def _label(model_field: models.Field) -> str:
    text = str(model_field.verbose_name or model_field.name)
    return text[:1].upper() + text[1:]


def _choices(model_field: models.Field) -> tuple[Any, ...] | None:
    if not model_field.choices:
        return None
    return tuple(value for value, _ in model_field.flatchoices)


def _value_field(
    path: str, model_field: models.Field, masked: Iterable[str], *, nullable: bool = False
) -> ContextField:
    if model_field.name in masked:
        return ContextField(path, "string", f"{_label(model_field)} (masked: {MASKED})", None)
    kind = field_type(model_field)
    return ContextField(
        path,
        kind,
        _label(model_field),
        _choices(model_field),
        nullable=nullable or bool(model_field.null),
        max_length=getattr(model_field, "max_length", None),
        open=kind == "any",
    )


def _user_fields(path: str, with_email: bool, label: str) -> list[ContextField]:
    fields = [
        ContextField(f"{path}.id", "integer", f"{label}: id"),
        ContextField(f"{path}.username", "string", f"{label}: username"),
        ContextField(f"{path}.display_name", "string", f"{label}: display name"),
    ]
    if with_email:
        fields.append(ContextField(f"{path}.email", "string", f"{label}: email"))
    return fields


def model_fields(registration: ModelRegistration) -> tuple[list[ContextField], list[RelatedObject]]:
    """The fields of ``registration``'s objects as its events carry them, under its name
    (``lead.status``), with related objects one level deep (``lead.owner.username``)."""
    name = registration.name
    fields: list[ContextField] = []
    related: list[RelatedObject] = []
    for model_field in registration.model._meta.concrete_fields:
        if model_field.name in SENSITIVE_FIELDS:
            continue
        path = f"{name}.{model_field.name}"
        if not model_field.is_relation:
            fields.append(_value_field(path, model_field, registration.masked))
            continue
        label = _label(model_field)
        fields.append(
            ContextField(f"{name}.{model_field.attname}", "integer", f"{label} id", None, True)
        )
        if model_field.name in registration.masked:
            fields.append(ContextField(path, "string", f"{label} (masked: {MASKED})"))
            continue
        target = model_field.related_model
        if not isinstance(target, type):  # resolved once the apps are loaded: a model
            continue
        if _is_user_model(target):
            fields.append(ContextField(path, "user", label, nullable=bool(model_field.null)))
            with_email = model_field.name in registration.user_fields_with_email
            fields += _user_fields(path, with_email, label)
            related.append(RelatedObject(path, "user"))
            continue
        target_registration = registration_for_model(target)
        entity = target_registration.name if target_registration else target._meta.label_lower
        masked = target_registration.masked if target_registration else ()
        fields.append(ContextField(path, "object", label, nullable=bool(model_field.null)))
        for sub in target._meta.concrete_fields:
            if sub.name in SENSITIVE_FIELDS:
                continue
            fields.append(
                _value_field(f"{path}.{sub.attname}", sub, masked, nullable=True)
                if not sub.is_relation
                else ContextField(f"{path}.{sub.attname}", "integer", _label(sub), None, True)
            )
            if sub.is_relation:
                fields.append(
                    ContextField(f"{path}.{sub.name}", "integer", _label(sub), None, True)
                )
        related.append(RelatedObject(path, entity))
    return fields, related


def _model_entries(registration: ModelRegistration) -> list[EventEntry]:
    name = registration.name
    verbose = str(registration.model._meta.verbose_name)
    group_label = verbose[:1].upper() + verbose[1:]
    own, related = model_fields(registration)
    base = [
        *own,
        ContextField("entity_type", "string", "Entity type", choices=(name,)),
        *_common_fields(),
    ]
    changes = ContextField("changes", "object", "Tracked fields that changed", open=True)
    aliases = (("", name),)
    entries = []
    for action, description in (
        ("created", f"A {verbose} was created."),
        ("updated", f"A {verbose} was saved (changes lists the tracked fields that changed)."),
        ("deleted", f"A {verbose} was deleted (the context is the object as it was)."),
    ):
        entries.append(
            EventEntry(
                type=f"{name}.{action}",
                group=name,
                kind="model",
                label=f"{group_label}: {action}",
                description=description,
                fields=tuple(base + ([changes] if action == "updated" else [])),
                related=tuple(related),
                aliases=aliases,
            )
        )
    by_path = {f.path: f for f in own}
    for tracked in registration.track:
        model_field = registration.model._meta.get_field(tracked)
        current = by_path[f"{name}.{tracked}"]
        kind = "integer" if model_field.is_relation else current.type
        label = _label(model_field)  # type: ignore[arg-type]
        old_new = [
            ContextField(f"old_{tracked}", kind, f"{label} before", current.choices, True),
            ContextField(f"new_{tracked}", kind, f"{label} after", current.choices, True),
        ]
        entries.append(
            EventEntry(
                type=f"{name}.{tracked}_changed",
                group=name,
                kind="model",
                label=f"{group_label}: {label.lower()} changed",
                description=f"The {label.lower()} of a {verbose} changed "
                f"(old_{tracked} and new_{tracked} say from what to what).",
                fields=tuple([*base, changes, *old_new]),
                related=tuple(related),
                aliases=aliases,
            )
        )
    return entries


# --- declared events -------------------------------------------------------------------


@dataclass(frozen=True)
class Declaration:
    type: str
    kind: str
    schema: dict[str, Any] | None
    description: str
    label: str


_declared: dict[str, Declaration] = {}
_lock = threading.Lock()


def declare_event(
    event_type: str,
    *,
    schema: Mapping[str, Any] | None = None,
    description: str = "",
    label: str = "",
    kind: str = "domain",
) -> None:
    """Declare an event type the host (or an app) emits, with the JSON Schema of its payload.

    Call it once per type from ``AppConfig.ready()``; declaring a type again replaces its
    declaration. ``kind`` is ``domain`` (the default), ``task``, ``sla`` or ``schedule``.
    """
    if kind not in KINDS or kind in ("model", "manual"):
        raise ValueError(f"declare_event: kind must be domain, task, sla or schedule, not {kind!r}")
    if not event_type or "*" in event_type:
        raise ValueError(f"declare_event: {event_type!r} is not an event type")
    if schema is not None and not isinstance(schema, Mapping):
        raise ValueError("declare_event: schema must be a JSON Schema object")
    with _lock:
        _declared[event_type] = Declaration(
            type=event_type,
            kind=kind,
            schema=json.loads(json.dumps(schema)) if schema is not None else None,
            description=description,
            label=label,
        )


def undeclare_event(event_type: str) -> None:
    """Forget a declaration (for tests and hosts that swap their domain at run time)."""
    with _lock:
        _declared.pop(event_type, None)


def declared_events() -> dict[str, Declaration]:
    with _lock:
        return dict(_declared)


def _schema_type(schema: Mapping[str, Any]) -> tuple[str, bool]:
    raw = schema.get("type", "any")
    names = [raw] if isinstance(raw, str) else list(raw or [])
    nullable = "null" in names
    names = [n for n in names if n != "null"]
    name = names[0] if len(names) == 1 else "any"
    fmt = schema.get("format")
    if fmt == "user":
        return "user", nullable
    if name == "string" and fmt == "date":
        return "date", nullable
    if name == "string" and fmt == "date-time":
        return "datetime", nullable
    if name in ("string", "integer", "number", "boolean", "object", "array"):
        return name, nullable
    return "any", nullable


def schema_fields(schema: Mapping[str, Any] | None, prefix: str = "") -> list[ContextField]:
    """The context fields a JSON Schema of a payload describes (nested objects flattened
    to dot paths)."""
    if not isinstance(schema, Mapping):
        return []
    fields: list[ContextField] = []
    for key, sub in (schema.get("properties") or {}).items():
        if not isinstance(sub, Mapping):
            continue
        path = f"{prefix}{key}"
        kind, nullable = _schema_type(sub)
        properties = sub.get("properties")
        choices = tuple(sub["enum"]) if isinstance(sub.get("enum"), list) else None
        if kind == "user" and not properties:
            fields.append(ContextField(path, "user", str(sub.get("title") or key), None, nullable))
            fields += _user_fields(path, False, str(sub.get("title") or key))
            continue
        is_open = kind in ("any", "array") or (
            kind == "object" and (not properties or sub.get("additionalProperties") is True)
        )
        fields.append(
            ContextField(
                path,
                kind,
                str(sub.get("title") or key.replace("_", " ").capitalize()),
                choices,
                nullable,
                sub.get("maxLength"),
                open=is_open,
            )
        )
        if properties:
            fields += schema_fields(sub, prefix=f"{path}.")
    return fields


def _declared_entry(declaration: Declaration) -> EventEntry:
    group = declaration.type.split(".", 1)[0]
    action = declaration.type.split(".", 1)[1] if "." in declaration.type else declaration.type
    schema = declaration.schema
    own = schema_fields(schema)
    is_open = schema is None or schema.get("additionalProperties") is True
    related = tuple(RelatedObject(f.path, "user") for f in own if f.type == "user")
    # Tasks' events carry the task under ``task`` and at the top level; an emitted payload
    # is at the top level and under ``payload``.
    payload: list[ContextField] = []
    if declaration.kind in ("task", "sla"):
        aliases: tuple[tuple[str, str], ...] = (("", group),)
    else:
        aliases = (("payload", ""),)
        payload = [ContextField("payload", "object", "The payload as sent", open=True)]
    return EventEntry(
        type=declaration.type,
        group=group,
        kind=declaration.kind,
        label=declaration.label
        or f"{group.replace('_', ' ').capitalize()}: {action.replace('_', ' ').replace('.', ' ')}",
        description=declaration.description,
        fields=tuple([*own, *payload, *_common_fields()]),
        related=related,
        open=is_open,
        aliases=aliases,
    )


# --- schedules and manual runs ------------------------------------------------------------


def scheduled_event_types() -> list[str]:
    """The event types of the enabled ``flowdesk.emit_scheduled`` schedules."""
    from django.apps import apps

    if not apps.is_installed("django_celery_beat"):
        return []
    from django_celery_beat.models import PeriodicTask

    found = []
    rows = PeriodicTask.objects.filter(task="flowdesk.emit_scheduled", enabled=True)
    for args, kwargs in rows.values_list("args", "kwargs"):
        try:
            event_type = (json.loads(kwargs or "{}") or {}).get("event_type") or (
                (json.loads(args or "[]") or [None])[0]
            )
        except (ValueError, TypeError, AttributeError, IndexError):
            continue
        if isinstance(event_type, str) and event_type:
            found.append(event_type)
    return sorted(set(found))


def _schedule_entry(event_type: str) -> EventEntry:
    group = event_type.split(".", 1)[0]
    return EventEntry(
        type=event_type,
        group=group,
        kind="schedule",
        label=f"Schedule: {event_type}",
        description="Raised by a schedule (django-celery-beat) with the schedule's payload.",
        fields=tuple(
            [ContextField("payload", "object", "The payload", open=True), *_common_fields()]
        ),
        open=True,
        aliases=(("payload", ""),),
    )


def _manual_entry() -> EventEntry:
    return EventEntry(
        type=MANUAL_TYPE,
        group="workflow",
        kind="manual",
        label="Workflow: run by hand",
        description="A workflow run through execute/ (API or admin), with the payload given.",
        fields=tuple(
            [ContextField("payload", "object", "The payload", open=True), *_common_fields()]
        ),
        open=True,
        aliases=(("payload", ""),),
    )


# --- the catalogue -----------------------------------------------------------------------


def event_catalogue(query: str | None = None) -> list[EventEntry]:
    """Every event type the engine can raise or accept, sorted by type; with ``query``,
    those whose type, group or label contains it (case-insensitive)."""
    from automation.receivers import connected_models

    entries: dict[str, EventEntry] = {}
    connected = connected_models()
    for registration in registrations():
        if registration.model in connected:
            for entry in _model_entries(registration):
                entries[entry.type] = entry
    for declaration in declared_events().values():
        entries[declaration.type] = _declared_entry(declaration)
    for event_type in scheduled_event_types():
        entries.setdefault(event_type, _schedule_entry(event_type))
    entries[MANUAL_TYPE] = _manual_entry()
    found = sorted(entries.values(), key=lambda e: e.type)
    if query:
        needle = query.strip().lower()
        found = [
            e
            for e in found
            if needle in e.type.lower() or needle in e.group.lower() or needle in e.label.lower()
        ]
    return found


def _matches(pattern: str, entry_type: str) -> bool:
    from automation.matcher import type_matches

    if "*" in entry_type and "*" not in pattern:  # the manual entry: workflow.<slug>.executed
        head, _, tail = entry_type.partition("*")
        return (
            pattern.startswith(head) and pattern.endswith(tail) and len(pattern) > len(head + tail)
        )
    return type_matches(pattern, entry_type)


def matching_entries(pattern: str, entries: list[EventEntry] | None = None) -> list[EventEntry]:
    """The catalogue entries a trigger's event type (exact, ``deal.*`` or ``*``) meets."""
    return [
        e
        for e in (entries if entries is not None else event_catalogue())
        if _matches(pattern, e.type)
    ]


def event_known(pattern: str, entries: list[EventEntry] | None = None) -> bool:
    """Whether an event type or pattern names at least one event the engine knows."""
    return bool(matching_entries(pattern, entries))
