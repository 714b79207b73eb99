"""Keyset (cursor) pagination of task lists.

A page is found from the sort key of the last (or first) row shown, never by an offset:
page 500 costs what page 1 costs, and rows inserted or changed between two page loads
neither repeat nor vanish from the rows still ahead. Every sort ends with ``id``, so the
order is total. The cursor is opaque and signed; a garbled or foreign one is refused.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from django.core import signing
from django.db.models import BooleanField, DateTimeField, F, Func, Model, QuerySet
from django.db.models.expressions import Expression, OrderBy
from django.db.models.functions import Coalesce

from config.errors import DomainError

if TYPE_CHECKING:
    from django.db.backends.base.base import BaseDatabaseWrapper
    from django.db.models.sql.compiler import SQLCompiler


class Negated(Func):
    """``-column``: turns a descending column into an ascending one, so every sort is one
    row comparison in one direction (an index range, whatever the page)."""

    template = "(-%(expressions)s)"
    arity = 1


# On SQLite times are text ('YYYY-MM-DD HH:MM:SS.ffffff'): these sort after and before
# every stored one, as PostgreSQL's 'infinity' and '-infinity' do.
SQLITE_BOUNDS = {"infinity": "9999-12-31 23:59:59.999999", "-infinity": "0001-01-01 00:00:00"}


class TimeBound(Expression):
    """The end of time (``infinity``) or its start (``-infinity``), as a constant."""

    output_field = DateTimeField()

    def __init__(self, bound: str) -> None:
        if bound not in SQLITE_BOUNDS:
            raise ValueError(f"TimeBound: {bound!r} is not infinity or -infinity")
        super().__init__()
        self.bound = bound

    def as_sql(
        self, compiler: SQLCompiler, connection: BaseDatabaseWrapper
    ) -> tuple[str, list[Any]]:
        return f"'{self.bound}'::timestamptz", []

    def as_sqlite(
        self, compiler: SQLCompiler, connection: BaseDatabaseWrapper
    ) -> tuple[str, list[Any]]:
        return f"'{SQLITE_BOUNDS[self.bound]}'", []


def _due(empty: str) -> Coalesce:
    """``due_at`` with an empty value sorting last (``infinity``) or first (``-infinity``)."""
    return Coalesce(F("due_at"), TimeBound(empty))


# sort -> its key (each part a column of the row, maybe negated, the due time maybe
# replaced when empty) and whether it runs descending; ``id`` ends every key.
SORT_KEYS: dict[str, tuple[tuple[tuple[str, bool, str], ...], bool]] = {
    # (field, negated, empty due as) ...
    "priority": ((("priority", True, ""), ("due_at", False, "infinity"), ("id", False, "")), False),
    "-priority": (
        (("priority", False, ""), ("due_at", False, "infinity"), ("id", False, "")),
        False,
    ),
    "due": ((("due_at", False, "infinity"), ("priority", True, ""), ("id", False, "")), False),
    "-due": ((("due_at", False, "-infinity"), ("priority", False, ""), ("id", True, "")), True),
    "created": ((("created_at", False, ""), ("id", False, "")), False),
    "-created": ((("created_at", False, ""), ("id", False, "")), True),
}
SORT_COLUMNS = SORT_KEYS
DEFAULT_SORT = "priority"
DATETIMES = frozenset({"due_at", "created_at"})
SALT = "tasks_inbox.keyset"


class InvalidCursor(DomainError):
    code = "INVALID_CURSOR"
    default_message = "The cursor is not valid for this list; start again from the first page."


def key_expressions(sort: str | None) -> list[Any]:
    """The expressions of ``sort``'s key, as its indexes hold them."""
    parts, _ = SORT_KEYS.get(sort or DEFAULT_SORT, SORT_KEYS[DEFAULT_SORT])
    expressions: list[Any] = []
    for field, negated, empty in parts:
        expression: Any = _due(empty) if empty else F(field)
        expressions.append(Negated(expression) if negated else expression)
    return expressions


def sort_ordering(sort: str | None, *, backward: bool = False) -> list[OrderBy]:
    """The ORDER BY of ``sort`` (reversed for a backward page), matching its index."""
    _, descending = SORT_KEYS.get(sort or DEFAULT_SORT, SORT_KEYS[DEFAULT_SORT])
    desc = descending != backward
    return [e.desc() if desc else e.asc() for e in key_expressions(sort)]


class RowCompare(Expression):
    """``ROW(key) > ROW(values)`` (or ``<``): the rows past a cursor, one index range."""

    output_field = BooleanField()

    def __init__(self, expressions: list[Any], values: list[Any], greater: bool) -> None:
        super().__init__()
        self.expressions = expressions
        self.values = values
        self.greater = greater

    def get_source_expressions(self) -> list[Any]:
        return self.expressions

    def set_source_expressions(self, exprs: Sequence[Any]) -> None:
        self.expressions = list(exprs)

    def as_sql(
        self, compiler: SQLCompiler, connection: BaseDatabaseWrapper
    ) -> tuple[str, list[Any]]:
        left: list[str] = []
        params: list[Any] = []
        for expression in self.expressions:
            sql, expression_params = compiler.compile(expression)
            left.append(sql)
            params.extend(expression_params)
        right = []
        sqlite = connection.vendor == "sqlite"
        for value in self.values:
            if isinstance(value, str):  # an empty due time's bound
                right.append("%s" if sqlite else "CAST(%s AS timestamptz)")
                params.append(SQLITE_BOUNDS[value] if sqlite else value)
            elif isinstance(value, datetime):
                right.append("%s" if sqlite else "CAST(%s AS timestamptz)")
                params.append(connection.ops.adapt_datetimefield_value(value) if sqlite else value)
            else:
                right.append("%s")
                params.append(value)
        op = ">" if self.greater else "<"
        row = "({})" if sqlite else "ROW({})"  # SQLite's row values have no ROW keyword
        return f"{row.format(', '.join(left))} {op} {row.format(', '.join(right))}", params


def _key(row: Model, sort: str) -> list[Any]:
    """The key of ``row`` as JSON: empty due times as ``infinity``/``-infinity``."""
    key: list[Any] = []
    for field, negated, empty in SORT_KEYS[sort][0]:
        value = getattr(row, field)
        if value is None:
            value = empty
        elif isinstance(value, datetime):
            value = value.isoformat()
        key.append(-value if negated else value)
    return key


def encode_cursor(sort: str, row: Model, *, backward: bool) -> str:
    return signing.dumps({"s": sort, "k": _key(row, sort), "b": backward}, salt=SALT, compress=True)


def decode_cursor(cursor: str, sort: str) -> tuple[list[Any], bool]:
    """The key and direction of ``cursor``; ``InvalidCursor`` if it is garbled, tampered
    with or made for another sort."""
    try:
        data = signing.loads(cursor, salt=SALT)
        if not isinstance(data, dict) or data.get("s") != sort:
            raise ValueError("another sort")
        parts = SORT_KEYS[sort][0]
        key = list(data["k"])
        if len(key) != len(parts):
            raise ValueError("wrong length")
        values: list[Any] = []
        for (field, _, empty), value in zip(parts, key, strict=True):
            if field in DATETIMES:
                if not isinstance(value, str):
                    raise ValueError("not a time")
                values.append(value if empty and value == empty else datetime.fromisoformat(value))
            elif isinstance(value, int) and not isinstance(value, bool):
                values.append(value)
            else:
                raise ValueError("not a number")
        return values, bool(data["b"])
    except (signing.BadSignature, ValueError, TypeError, KeyError) as exc:
        raise InvalidCursor(fields={"cursor": [InvalidCursor.default_message]}) from exc


def past_cursor(queryset: QuerySet[Any], sort: str, values: list[Any], backward: bool) -> Any:
    """``queryset`` narrowed to the rows after (``backward``: before) the key ``values``."""
    _, descending = SORT_KEYS[sort]
    return queryset.filter(RowCompare(key_expressions(sort), values, descending == backward))


@dataclass
class KeysetPage:
    rows: list[Any]
    next_cursor: str | None
    previous_cursor: str | None


def keyset_page(
    queryset: QuerySet[Any], *, sort: str | None, cursor: str | None, size: int
) -> KeysetPage:
    """One page of ``queryset`` in the order of ``sort`` from ``cursor`` (none: the first
    page). Two cursors come back: to the page after and to the page before (or none)."""
    sort = sort if sort in SORT_COLUMNS else DEFAULT_SORT
    backward = False
    if cursor:
        values, backward = decode_cursor(cursor, sort)
        queryset = past_cursor(queryset, sort, values, backward)
    rows = list(queryset.order_by(*sort_ordering(sort, backward=backward))[: size + 1])
    more = len(rows) > size
    rows = rows[:size]
    if backward:
        rows.reverse()
    has_next = True if backward else more
    has_previous = more if backward else bool(cursor)
    return KeysetPage(
        rows=rows,
        next_cursor=encode_cursor(sort, rows[-1], backward=False) if rows and has_next else None,
        previous_cursor=encode_cursor(sort, rows[0], backward=True)
        if rows and has_previous
        else None,
    )


def bounded_count(queryset: QuerySet[Any], limit: int = 1000) -> tuple[int, bool]:
    """How many rows, counting no further than ``limit``: (count, more than ``limit``)."""
    counted = queryset.order_by()[: limit + 1].count()
    return min(counted, limit), counted > limit
