"""What the runtime's modules share: engine settings, the active run statuses, the fields a
step write saves, a version's definition (cached) and queueing a run's advance."""

from __future__ import annotations

import contextlib
import functools
import json
from collections.abc import Iterator, Mapping, Sequence
from contextvars import ContextVar
from datetime import datetime
from typing import Any, Literal, overload

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import DatabaseError, connection, transaction
from django.db.models import (
    CharField,
    DateTimeField,
    Field,
    ForeignKey,
    IntegerField,
    JSONField,
    Model,
    TextField,
)
from django.db.models.fields import AutoFieldMixin

from automation.models import ActionRun, Run
from automation.statuses import RUN_ACTIVE_STATUSES

ACTIVE_RUN = RUN_ACTIVE_STATUSES
INLINE_STEP_BUDGET = 50
# What the step helpers change on an ActionRun (saved with update_fields).
STEP_FIELDS = [
    "status",
    "attempts",
    "input",
    "output",
    "progress",
    "error",
    "error_code",
    "wake_at",
    "waiting_on",
    "started_at",
    "finished_at",
    "updated_at",
]


# What a run's own fields are, as its advances save them.
RUN_FIELDS = ["status", "started_at", "finished_at", "updated_at", "error", "error_code"]
# How long a run's transaction goes on executing its consecutive atomic steps before it
# commits what it did and starts another (a chain of slow steps holds its run no longer).
CHAIN_SECONDS = 1.0
# (attname, column, kind) of the columns a JSON document of rows carries.
JsonKinds = tuple[tuple[str, str, str], ...]


class DeferredWrites:
    """ActionRuns and runs changed in memory in this transaction, written together when it
    is about to commit: one UPDATE for the step rows, one for the runs (``flush``)."""

    def __init__(self) -> None:
        self.steps: dict[int, ActionRun] = {}
        self.runs: dict[int, Run] = {}

    def flush(self) -> None:
        steps, runs = list(self.steps.values()), list(self.runs.values())
        self.steps.clear()
        self.runs.clear()
        if connection.vendor != "postgresql":
            rows_update(steps, STEP_FIELDS)
            rows_update(runs, RUN_FIELDS)
            return
        # Both tables in one statement: the step rows' UPDATE as a data-modifying WITH
        # (PostgreSQL runs it to completion whether or not the outer statement reads it).
        parts = [
            _rows_update_sql(rows, fields)
            for rows, fields in ((steps, STEP_FIELDS), (runs, RUN_FIELDS))
            if rows
        ]
        if not parts:
            return
        (sql, params), *others = parts
        for index, (other_sql, other_params) in enumerate(others):
            sql = f"WITH w{index} AS ({sql} RETURNING 1) {other_sql}"
            params = [*params, *other_params]
        with connection.cursor() as cursor:
            cursor.execute(sql, params)


def rows_update(rows: Sequence[Model], fields: list[str]) -> None:
    """Write ``fields`` of ``rows`` (instances of one model) as they are in memory: on
    PostgreSQL one ``UPDATE ... FROM unnest(...)`` for all of them (Django's
    ``bulk_update`` builds a CASE per field and row, and ``save`` goes through the model's
    machinery, both costing more CPU than the rows' own statement)."""
    if not rows:
        return
    if connection.vendor != "postgresql":
        if len(rows) == 1:
            rows[0].save(update_fields=fields)
        else:
            type(rows[0])._default_manager.bulk_update(rows, fields)
        return
    sql, params = _rows_update_sql(rows, fields)
    with connection.cursor() as cursor:
        cursor.execute(sql, params)


def rows_insert(rows: Sequence[Model]) -> None:
    """Insert ``rows`` (new instances of one model) and set their primary keys: on
    PostgreSQL one ``INSERT ... SELECT ... FROM json_populate_recordset(...) RETURNING``
    for all of them, the rows as one JSON parameter (``bulk_create`` compiles and prepares
    every field of every row, and the driver dumps its arrays element by element); else,
    or when a value would not come back from JSON as it is, ``bulk_create``."""
    if not rows:
        return
    model = type(rows[0])
    found = _json_insert(rows) if connection.vendor == "postgresql" else None
    if found is None:
        model._default_manager.bulk_create(rows)
        return
    sql, params = found
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        keys = [key for (key,) in cursor.fetchall()]
    if len(keys) != len(rows):
        raise DatabaseError(f"{len(rows)} rows inserted, {len(keys)} keys returned")
    for row, key in zip(rows, keys, strict=True):
        row.pk = key
        row._state.adding = False
        row._state.db = connection.alias


@functools.lru_cache(maxsize=64)
def _insert_kinds(model: type[Model]) -> JsonKinds | None:
    """(attname, column, kind) of the columns an insert writes (all but an automatic
    primary key), as ``_json_kinds``; None when one does not come from JSON as it is."""
    meta = model._meta
    fields = tuple(
        field.name
        for field in meta.concrete_fields
        if field is not meta.pk or not isinstance(field, AutoFieldMixin)
    )
    kinds = _json_kinds(model, fields)
    if kinds is None:
        return None
    return kinds[1:] if isinstance(meta.pk, AutoFieldMixin) else kinds


@functools.lru_cache(maxsize=64)
def _insert_sql(model: type[Model]) -> str:
    kinds = _insert_kinds(model)
    assert kinds is not None
    quote = connection.ops.quote_name
    table = quote(model._meta.db_table)
    names = ", ".join(quote(column) for _, column, _ in kinds)
    values = ", ".join(f"v.{quote(column)}" for _, column, _ in kinds)
    pk = quote(str(model._meta.pk.column))
    # In the document's order (``WITH ORDINALITY``): the keys come back in the rows' order.
    return (
        f"INSERT INTO {table} ({names}) SELECT {values} FROM "  # noqa: S608  (no user input)
        f"json_populate_recordset(NULL::{table}, %s) WITH ORDINALITY AS v "
        f"ORDER BY v.ordinality RETURNING {table}.{pk}"
    )


def _json_insert(rows: Sequence[Model]) -> tuple[str, list[Any]] | None:
    model = type(rows[0])
    kinds = _insert_kinds(model)
    if kinds is None:
        return None
    text = _json_rows(rows, kinds)
    return None if text is None else (_insert_sql(model), [text])


def _rows_update_sql(rows: Sequence[Model], fields: list[str]) -> tuple[str, list[Any]]:
    """The statement writing ``fields`` of ``rows`` (PostgreSQL): the rows as one JSON
    document when their values allow (``_json_update``), else an array per column."""
    found = _json_update(rows, fields)
    return found if found is not None else _values_update(rows, fields)


@functools.lru_cache(maxsize=64)
def _columns(model: type[Model], fields: tuple[str, ...]) -> tuple[Field[Any, Any], ...]:
    """The primary key and ``fields`` of ``model`` as concrete columns."""
    meta = model._meta
    columns: list[Field[Any, Any]] = []
    for column in [meta.pk, *(meta.get_field(name) for name in fields)]:
        if not isinstance(column, Field) or not column.column:
            raise ValueError(f"rows_update: {fields} are not all concrete columns of {model}")
        columns.append(column)
    return tuple(columns)


def _update_parts(model: type[Model], fields: tuple[str, ...]) -> tuple[str, str, str]:
    """(table, ``SET`` assignments from ``v``, primary key column) of an ``UPDATE ... FROM``
    of ``fields``, quoted."""
    quote = connection.ops.quote_name
    columns = _columns(model, fields)
    assignments = ", ".join(
        f"{quote(str(column.column))} = v.{quote(str(column.column))}" for column in columns[1:]
    )
    return quote(model._meta.db_table), assignments, quote(str(columns[0].column))


@functools.lru_cache(maxsize=64)
def _values_sql(model: type[Model], fields: tuple[str, ...]) -> str:
    """The rows' values come as one array per column (``unnest``): the statement's text is
    the same for any number of rows, so the driver parses it once (a ``VALUES`` list grows
    with the rows, and its text is parsed again for each statement)."""
    columns = _columns(model, fields)
    quote = connection.ops.quote_name
    arrays = ", ".join(f"%s::{column.db_type(connection)}[]" for column in columns)
    names = ", ".join(quote(str(column.column)) for column in columns)
    table, assignments, pk = _update_parts(model, fields)
    return (
        f"UPDATE {table} SET {assignments} FROM unnest({arrays}) "  # noqa: S608  (no user input)
        f"AS v({names}) WHERE {table}.{pk} = v.{pk}"
    )


@functools.lru_cache(maxsize=64)
def _plain_columns(model: type[Model], fields: tuple[str, ...]) -> tuple[tuple[str, str], ...]:
    """(attname, kind) of the columns whose common values PostgreSQL takes as they are:
    "text" (a ``str`` or ``None``), "datetime" (an aware ``datetime`` or ``None``); kind
    "" for the others (JSON, numbers), which go through the field's own preparation."""
    kinds: list[tuple[str, str]] = []
    for column in _columns(model, fields):
        kind = ""
        if type(column) in (CharField, TextField):
            kind = "text"
        elif type(column) is DateTimeField:
            kind = "datetime"
        kinds.append((column.attname, kind))
    return tuple(kinds)


@functools.lru_cache(maxsize=64)
def _json_kinds(model: type[Model], fields: tuple[str, ...]) -> JsonKinds | None:
    """(attname, column, kind) of the primary key and ``fields`` when every column takes its
    value from JSON as it is (kinds "text", "datetime", "json", "int"); None otherwise."""
    kinds: list[tuple[str, str, str]] = []
    for column in _columns(model, fields):
        if type(column) in (CharField, TextField):
            kind = "text"
        elif type(column) is DateTimeField:
            kind = "datetime"
        elif type(column) is JSONField and column.encoder is None:
            kind = "json"
        elif (
            isinstance(column, IntegerField | AutoFieldMixin)
            or (isinstance(column, ForeignKey) and isinstance(column.target_field, IntegerField))
        ) and not column.choices:
            kind = "int"
        else:
            return None
        kinds.append((column.attname, str(column.column), kind))
    return tuple(kinds)


@functools.lru_cache(maxsize=64)
def _json_sql(model: type[Model], fields: tuple[str, ...]) -> str:
    table, assignments, pk = _update_parts(model, fields)
    # The keys again as an array: the planner counts an array's elements, where it takes
    # a JSON document for 100 rows and may read the whole table to join them.
    return (
        f"UPDATE {table} SET {assignments} FROM "  # noqa: S608  (no user input)
        f"json_populate_recordset(NULL::{table}, %s) AS v WHERE {table}.{pk} = v.{pk} "
        f"AND {table}.{pk} = ANY(%s)"
    )


def _json_update(rows: Sequence[Model], fields: list[str]) -> tuple[str, list[Any]] | None:
    """The ``UPDATE ... FROM json_populate_recordset(...)`` of ``rows``: the rows as one
    JSON array of objects (the driver quotes one string, where an array per column costs
    it a dumper call per element), and their keys; None when a value would not come back
    from JSON as it was (a naive datetime, a number that is not an int, another type)."""
    model = type(rows[0])
    key = tuple(fields)
    kinds = _json_kinds(model, key)
    if kinds is None:
        return None
    text = _json_rows(rows, kinds)
    if text is None:
        return None
    return _json_sql(model, key), [text, [row.pk for row in rows]]


def _json_rows(rows: Sequence[Model], kinds: JsonKinds) -> str | None:
    """``rows`` as a JSON array of objects, a member per column of ``kinds``; None when a
    value would not come back from JSON as it was (a naive datetime, a number that is not
    an int, another type)."""
    documents: list[dict[str, Any]] = []
    for row in rows:
        document: dict[str, Any] = {}
        for attname, column, kind in kinds:
            value = getattr(row, attname)
            if value is None or kind == "json":
                pass
            elif kind == "text":
                if not isinstance(value, str):
                    return None
            elif kind == "datetime":
                if type(value) is not datetime or value.tzinfo is None:
                    return None
                value = value.isoformat()
            elif type(value) is not int:
                return None
            document[column] = value
        documents.append(document)
    try:
        return json.dumps(documents, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError):  # not JSON: the field's own preparation says why
        return None


def _values_update(rows: Sequence[Model], fields: list[str]) -> tuple[str, list[list[Any]]]:
    """The ``UPDATE ... FROM unnest(...)`` of ``rows`` and its parameters (PostgreSQL): one
    array per column, the rows in the same order in each."""
    model = type(rows[0])
    key = tuple(fields)
    columns = list(zip(_columns(model, key), _plain_columns(model, key), strict=True))
    params: list[list[Any]] = []
    for column, (attname, kind) in columns:
        values: list[Any] = []
        append = values.append
        for row in rows:
            value = getattr(row, attname)
            # What the field's preparation would return, without its calls (a step write
            # has some 13 of these per row).
            if value is None and kind:
                append(None)
            elif (kind == "text" and isinstance(value, str)) or (
                kind == "datetime" and type(value) is datetime and value.tzinfo is not None
            ):
                append(value)
            else:
                append(column.get_db_prep_save(value, connection))
        params.append(values)
    return _values_sql(model, key), params


_deferred: ContextVar[DeferredWrites | None] = ContextVar("deferred_writes", default=None)


@contextlib.contextmanager
def deferred_writes() -> Iterator[DeferredWrites]:
    """Collect the step and run writes of the block (``step_save``, ``run_save``) and write
    them with one statement each as it ends; nothing is written if it raises. Call inside
    the transaction that holds the rows' locks; an enclosing block's collector is reused."""
    outer = _deferred.get()
    if outer is not None:
        yield outer
        return
    writes = DeferredWrites()
    token = _deferred.set(writes)
    try:
        yield writes
    finally:
        _deferred.reset(token)
    writes.flush()


def step_save(action_run: ActionRun) -> None:
    """Save what the step helpers change on an ActionRun, now or with the block's other
    rows (inside ``deferred_writes``)."""
    writes = _deferred.get()
    if writes is None:
        action_run.save(update_fields=STEP_FIELDS)
    else:
        writes.steps[action_run.pk] = action_run


def run_save(run: Run) -> None:
    """Save a run's own fields (``RUN_FIELDS``), now or with the block's other runs."""
    writes = _deferred.get()
    if writes is None:
        run.save(update_fields=RUN_FIELDS)
    else:
        writes.runs[run.pk] = run


def steps_flush() -> None:
    """Write the block's pending step and run changes now (before a statement that reads
    or updates those rows in the database)."""
    writes = _deferred.get()
    if writes is not None:
        writes.flush()


CountSetting = Literal[
    "DISPATCH_BATCH_SIZE",
    "MAX_CAUSATION_DEPTH",
    "OUTBOX_GRACE_SECONDS",
    "STALE_RUN_SECONDS",
    "SWEEP_BATCH_SIZE",
]
SecondsSetting = Literal[
    "DISPATCH_COALESCE_SECONDS",
    "DISPATCH_DOORBELL_SECONDS",
    "DISPATCH_INLINE_SECONDS",
    "WAKE_MESSAGE_MAX_SECONDS",
]


@overload
def engine_setting(name: CountSetting) -> int: ...
@overload
def engine_setting(name: SecondsSetting) -> float: ...
def engine_setting(name: CountSetting | SecondsSetting) -> float:
    """One of the engine's numeric settings (``settings.FLOWDESK``)."""
    values: Mapping[str, object] = settings.FLOWDESK
    value = values[name]
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise ImproperlyConfigured(f"FLOWDESK[{name!r}] must be a number, not {value!r}")
    return value


@functools.lru_cache(maxsize=1024)
def version_definition(version_id: int) -> dict[str, Any]:
    """A version's definition, cached: versions are immutable once written."""
    from workflows.models import WorkflowVersion

    return WorkflowVersion.objects.values_list("definition", flat=True).get(pk=version_id)


def versions_existing(ids: set[int]) -> set[int]:
    from workflows.models import WorkflowVersion

    if not ids:
        return set()
    return set(WorkflowVersion.objects.filter(pk__in=ids).values_list("pk", flat=True))


def step_definitions(run: Run) -> list[dict[str, Any]]:
    return version_definition(run.version_id).get("steps") or []


def enqueue_advance(run_id: int) -> None:
    """Advance the run in a worker once the current transaction commits (a broker that is
    down then is logged, and the stale-run sweep advances the run)."""
    from automation.tasks import advance_run, publish

    transaction.on_commit(lambda: publish(advance_run, run_id))


def enqueue_advance_now(run_id: int) -> None:
    """Advance the run in a worker (outside any transaction; never raises)."""
    from automation.tasks import advance_run, publish

    publish(advance_run, run_id)
