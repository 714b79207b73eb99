"""How pages and the admin show numbers people read: durations, shares and moments.

``{% load flowdesk %}`` then:

- ``{{ seconds|duration }}``: ``1 h 30 min``, ``45 s``, ``2 d 3 h``; ``-`` when unknown.
  ``{{ ms|duration_ms }}`` reads milliseconds.
- ``{{ pct|percent }}``: a 0-100 share as ``97.5%``; ``{{ rate|percent:"ratio" }}`` reads a
  0-1 ratio. ``-`` when there is nothing to judge (``None``), never ``None%``.
- ``{{ moment|when }}``: ``in 52 minutes`` or ``3 hours ago`` in a ``<time>`` element whose
  title is the exact local time (shown on hover).

The functions behind them (``duration_text``, ``relative_text``, ``exact_text``) are plain
Python, used by the admin's read-only displays too.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal

from django import template
from django.utils import timezone
from django.utils.dateformat import format as date_format
from django.utils.html import format_html
from django.utils.safestring import SafeString

register = template.Library()

UNKNOWN = "-"
_UNITS = (("d", 86400), ("h", 3600), ("min", 60), ("s", 1))
_WORDS = (("day", 86400), ("hour", 3600), ("minute", 60))


def _seconds(value: object) -> float | None:
    if value is None or value == "":
        return None
    if isinstance(value, timedelta):
        return value.total_seconds()
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None


def duration_text(value: object) -> str:
    """Seconds (a number or a timedelta) as at most two units: ``1 h 30 min``, ``2 d 3 h``,
    ``45 s``; under a second as ``0.25 s``; ``-`` when unknown."""
    seconds = _seconds(value)
    if seconds is None:
        return UNKNOWN
    sign = "-" if seconds < 0 else ""
    seconds = abs(seconds)
    if seconds < 1:
        return f"{sign}{seconds:.2f}".rstrip("0").rstrip(".") + " s" if seconds else "0 s"
    remaining = round(seconds)
    parts: list[str] = []
    for unit, size in _UNITS:
        count, remaining = divmod(remaining, size)
        if count or parts:
            parts.append(f"{count} {unit}" if count else "")
        if len(parts) == 2:
            break
    return sign + " ".join(part for part in parts if part)


def _local(moment: datetime) -> datetime:
    return timezone.localtime(moment) if timezone.is_aware(moment) else moment


def exact_text(moment: datetime | None) -> str:
    """The exact local time, as on hover: ``Tue 1 Dec 2026, 20:58:31 UTC``."""
    if moment is None:
        return UNKNOWN
    return date_format(_local(moment), "D j M Y, H:i:s T")


def relative_text(moment: datetime | None, now: datetime | None = None) -> str:
    """``in 52 minutes``, ``3 hours ago``, ``just now``; past a month, the date."""
    if moment is None:
        return UNKNOWN
    now = now or timezone.now()
    delta = (moment - now).total_seconds()
    distance = abs(delta)
    if distance < 45:
        return "just now"
    if distance >= 30 * 86400:
        return date_format(_local(moment), "j M Y")
    for word, size in _WORDS:
        if distance >= size or word == "minute":
            count = max(1, round(distance / size))
            text = f"{count} {word}{'' if count == 1 else 's'}"
            return f"in {text}" if delta > 0 else f"{text} ago"
    raise AssertionError("unreachable")  # pragma: no cover


def percent_text(value: object, ratio: bool = False) -> str:
    number = _seconds(value)
    if number is None:
        return UNKNOWN
    if ratio:
        number *= 100
    text = f"{number:.1f}".rstrip("0").rstrip(".")
    return f"{text}%"


@register.filter
def duration(value: object) -> str:
    return duration_text(value)


@register.filter
def duration_ms(value: object) -> str:
    ms = _seconds(value)
    return duration_text(None if ms is None else ms / 1000)


@register.filter
def percent(value: object, mode: str = "") -> str:
    return percent_text(value, ratio=mode == "ratio")


@register.filter
def when(value: datetime | None) -> SafeString | str:
    """A moment as relative text in a ``<time>`` element with the exact time as its title."""
    if not isinstance(value, datetime):
        return UNKNOWN
    return format_html(
        '<time datetime="{}" title="{}">{}</time>',
        value.isoformat(),
        exact_text(value),
        relative_text(value),
    )


@register.filter
def number(value: object) -> str:
    """A count or measure without trailing zeros: ``12``, ``0.5``; ``-`` when unknown."""
    if value is None or value == "":
        return UNKNOWN
    if isinstance(value, int | Decimal):
        return str(value)
    measure = _seconds(value)
    if measure is None:
        return str(value)
    return f"{measure:.2f}".rstrip("0").rstrip(".")
