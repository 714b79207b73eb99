"""Keyset (cursor) pagination of task lists.

A page is found from the sort key of the last (or first) row shown, never by an offset:
page 500 costs what page 1 costs, and rows inserted or changed between two page loads
neither repeat nor vanish from the rows still ahead. Every sort ends with ``id``, so the
order is total. The cursor is opaque and signed; a garbled or foreign one is refused.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.core import signing
from django.db.models import F, Model, Q, QuerySet
from django.db.models.expressions import OrderBy

from config.errors import DomainError

# sort -> its columns, each (field, descending); ``due_at`` (the one nullable column) sorts
# its empty values last in either direction.
SORT_COLUMNS: dict[str, tuple[tuple[str, bool], ...]] = {
    "priority": (("priority", True), ("due_at", False), ("id", False)),
    "-priority": (("priority", False), ("due_at", False), ("id", False)),
    "due": (("due_at", False), ("priority", True), ("id", False)),
    "-due": (("due_at", True), ("priority", True), ("id", False)),
    "created": (("created_at", False), ("id", False)),
    "-created": (("created_at", True), ("id", True)),
}
DEFAULT_SORT = "priority"
NULLABLE = frozenset({"due_at"})
DATETIMES = frozenset({"due_at", "created_at"})
SALT = "tasks_inbox.keyset"


class InvalidCursor(DomainError):
    code = "INVALID_CURSOR"
    default_message = "The cursor is not valid for this list; start again from the first page."


def sort_ordering(sort: str | None, *, backward: bool = False) -> list[OrderBy]:
    """The ORDER BY of ``sort`` (reversed for a backward page), matching its index."""
    ordering = []
    for field, descending in SORT_COLUMNS.get(sort or DEFAULT_SORT, SORT_COLUMNS[DEFAULT_SORT]):
        desc = descending != backward
        nulls = {"nulls_first": True} if backward else {"nulls_last": True}
        extra = nulls if field in NULLABLE else {}
        ordering.append(F(field).desc(**extra) if desc else F(field).asc(**extra))
    return ordering


def _beyond(columns: tuple[tuple[str, bool], ...], values: list[Any], *, backward: bool) -> Q:
    """Rows strictly after (``backward``: before) ``values`` in the order of ``columns``."""
    (field, descending), *rest = columns
    value, *rest_values = values
    nullable = field in NULLABLE
    tail = _beyond(tuple(rest), rest_values, backward=backward) if rest else None
    if value is None:  # only a nullable column: empty values come last
        if backward:
            before = Q(**{f"{field}__isnull": False})
            return before | (Q(**{f"{field}__isnull": True}) & tail) if tail else before
        return Q(**{f"{field}__isnull": True}) & tail if tail else Q(pk__in=[])
    greater = descending == backward
    strict = Q(**{f"{field}__{'gt' if greater else 'lt'}": value})
    if nullable and not backward:
        strict |= Q(**{f"{field}__isnull": True})
    return strict | (Q(**{field: value}) & tail) if tail else strict


def _bound(columns: tuple[tuple[str, bool], ...], values: list[Any], *, backward: bool) -> Q:
    """The same condition on the leading column alone, so the index scan starts there."""
    field, descending = columns[0]
    value = values[0]
    if value is None:
        return Q() if backward else Q(**{f"{field}__isnull": True})
    greater = descending == backward
    bound = Q(**{f"{field}__{'gte' if greater else 'lte'}": value})
    if field in NULLABLE and not backward:
        bound |= Q(**{f"{field}__isnull": True})
    return bound


def _key(row: Model, sort: str) -> list[Any]:
    key = []
    for field, _ in SORT_COLUMNS[sort]:
        value = getattr(row, field)
        key.append(value.isoformat() if isinstance(value, datetime) else value)
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
        columns = SORT_COLUMNS[sort]
        key = list(data["k"])
        if len(key) != len(columns):
            raise ValueError("wrong length")
        values = []
        for (field, _), value in zip(columns, key, strict=True):
            if value is None and field not in NULLABLE:
                raise ValueError("empty key")
            if value is not None and field in DATETIMES:
                value = datetime.fromisoformat(value)
            elif value is not None and not isinstance(value, int):
                raise ValueError("not a number")
            values.append(value)
        return values, bool(data["b"])
    except (signing.BadSignature, ValueError, TypeError, KeyError) as exc:
        raise InvalidCursor(fields={"cursor": [InvalidCursor.default_message]}) from exc


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
        columns = SORT_COLUMNS[sort]
        queryset = queryset.filter(
            _bound(columns, values, backward=backward), _beyond(columns, values, backward=backward)
        )
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
