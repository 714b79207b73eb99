"""Percentiles, one way for every figure (run durations, SLA clock times, time in a state).

A percentile is the continuous one (``percentile_cont``: linear interpolation between the
two nearest values): computed by PostgreSQL as an aggregate, and on other databases in
Python from a bounded sample of the most recent rows, with the same interpolation.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.db import connections
from django.db.models import (
    Aggregate,
    DurationField,
    ExpressionWrapper,
    F,
    FloatField,
    Func,
    QuerySet,
)


class PercentileCont(Aggregate):
    """``percentile_cont(fraction) WITHIN GROUP (ORDER BY expression)`` (PostgreSQL)."""

    function = "percentile_cont"
    template = "%(function)s(%(fraction)s) WITHIN GROUP (ORDER BY %(expressions)s)"
    output_field = FloatField()

    def __init__(self, expression: Any, fraction: float, **extra: Any) -> None:
        super().__init__(expression, fraction=float(fraction), **extra)


class EpochSeconds(Func):
    """The seconds of an interval (``EXTRACT(EPOCH FROM ...)``, PostgreSQL)."""

    template = "EXTRACT(EPOCH FROM (%(expressions)s))"
    output_field = FloatField()


def seconds_between(start: str, end: str) -> EpochSeconds:
    """The seconds from the ``start`` column to the ``end`` one (PostgreSQL)."""
    return EpochSeconds(ExpressionWrapper(F(end) - F(start), output_field=DurationField()))


def percentile_cont_sql(expression_sql: str, fraction: float) -> str:
    """The same aggregate as SQL text, for a query Django cannot aggregate itself (over a
    window function): ``expression_sql`` is trusted SQL, ``fraction`` a number."""
    return f"percentile_cont({float(fraction)}) WITHIN GROUP (ORDER BY {expression_sql})"


def percentile(values: Sequence[float], fraction: float) -> float | None:
    """The continuous percentile of ``values`` (as ``percentile_cont``); None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    position = fraction * (len(ordered) - 1)
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return float(ordered[low] + (ordered[high] - ordered[low]) * (position - low))


def grouped_percentiles(
    queryset: QuerySet[Any],
    *,
    group: str,
    fractions: Sequence[float],
    field: str | None = None,
    between: tuple[str, str] | None = None,
    sample: int,
    recent_first: str = "-pk",
) -> dict[Any, list[float | None]]:
    """Per value of ``group``: the percentiles (one per fraction, in order) of ``field``
    (a number column) or of the seconds ``between`` two datetime columns.

    On PostgreSQL over every row; elsewhere over the ``sample`` rows first in
    ``recent_first`` order.
    """
    if (field is None) == (between is None):
        raise TypeError("give either field or between")
    if between is not None:
        start, end = between
        queryset = queryset.filter(**{f"{start}__isnull": False, f"{end}__isnull": False})
    if connections[queryset.db].vendor == "postgresql":
        value = F(field) if field is not None else seconds_between(*between)  # type: ignore[misc]
        names = {f"p{index}": PercentileCont(value, q) for index, q in enumerate(fractions)}
        rows = queryset.values(group).annotate(**names).order_by()
        return {row[group]: [row[name] for name in names] for row in rows}
    samples: dict[Any, list[float]] = {}
    if field is not None:
        recent = queryset.values_list(group, field).order_by(recent_first)[:sample]
        for key, number in recent:
            samples.setdefault(key, []).append(number)
    else:
        recent = queryset.values_list(group, *between).order_by(recent_first)[:sample]  # type: ignore[misc]
        for key, started, ended in recent:
            samples.setdefault(key, []).append((ended - started).total_seconds())
    return {key: [percentile(values, q) for q in fractions] for key, values in samples.items()}
