"""Writing one new row as ``save(force_insert=True)`` does, without its per-call work.

``Model.save`` compiles its INSERT again on every call and walks parents, signals and
related fields; on the engine's hot paths (an event per business change, a note per step)
that costs more CPU than the statement's round trip. ``model_insert`` runs the same
statement, compiled once per model and database vendor, with each field preparing its
own value, and falls back to ``save`` whenever the shortcut could differ from it: a
``pre_save``/``post_save`` receiver listens for the model, the model has parents, a value
is an expression, or the database cannot return the new key from the INSERT.
"""

from __future__ import annotations

from django.db import connections, router, transaction
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import Field, Model
from django.db.models.signals import post_save, pre_save
from django.db.models.sql import InsertQuery

# (vendor, model) -> (statement, fields in its column order).
_statements: dict[tuple[str, type[Model]], tuple[str, list[Field]]] = {}


def _statement(
    model: type[Model], connection: BaseDatabaseWrapper
) -> tuple[str, list[Field]] | None:
    """The INSERT ``save(force_insert=True)`` runs for ``model``, as Django's compiler writes
    it (columns, placeholders, ``RETURNING`` the key), built once; None on databases other
    than PostgreSQL and SQLite (where the key may come back otherwise)."""
    if connection.vendor not in ("postgresql", "sqlite"):
        return None
    if not connection.features.can_return_columns_from_insert:
        return None
    key = (connection.vendor, model)
    found = _statements.get(key)
    if found is None:
        meta = model._meta
        fields = [f for f in meta.local_concrete_fields if f is not meta.auto_field]
        query = InsertQuery(model)
        query.insert_values(fields, [model()])
        compiler = query.get_compiler(connection=connection)
        compiler.returning_fields = [meta.pk]
        ((statement, _),) = compiler.as_sql()
        found = _statements.setdefault(key, (statement, fields))
    return found


def model_insert(instance: Model) -> None:
    """Write the new ``instance`` as ``instance.save(force_insert=True)`` does: the same
    statement, each field preparing its own value, the new key set, and the transaction
    marked for rollback on an error."""
    model = type(instance)
    using = router.db_for_write(model, instance=instance)
    connection = connections[using]
    compiled = None
    if not (model._meta.parents or pre_save.has_listeners(model) or post_save.has_listeners(model)):
        compiled = _statement(model, connection)
    if compiled is None:
        instance.save(force_insert=True, using=using)
        return
    statement, fields = compiled
    params = []
    for field in fields:
        value = field.pre_save(instance, True)
        if hasattr(value, "resolve_expression"):  # an expression: the compiler's business
            instance.save(force_insert=True, using=using)
            return
        params.append(field.get_db_prep_save(value, connection=connection))
    with transaction.mark_for_rollback_on_error(using), connection.cursor() as cursor:
        cursor.execute(statement, params)
        (instance.pk,) = cursor.fetchone()
    instance._state.adding = False
    instance._state.db = using
