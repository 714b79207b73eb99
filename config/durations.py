"""The one duration grammar: delays, SLA targets, warnings and escalation steps all read
durations with :func:`parse_duration`.

Accepted forms:

- a number of seconds (``90``, ``1.5``) or a ``timedelta``;
- one or more amounts with units, ``"90m"``, ``"1h 30m"``, ``"2 days"``, ``"1.5 hours"``,
  ``"1w"``: ``s``/``sec``/``second(s)``, ``m``/``min``/``minute(s)``, ``h``/``hour(s)``,
  ``d``/``day(s)``, ``w``/``week(s)``;
- ISO 8601 (``"PT90M"``, ``"P1DT2H"``) and Django's ``"[D ]HH:MM[:SS]"`` (``"1:30:00"``).
"""

from __future__ import annotations

import re
from datetime import timedelta

from django.utils.dateparse import parse_duration as parse_django_duration

UNITS = {
    **dict.fromkeys(("s", "sec", "secs", "second", "seconds"), 1),
    **dict.fromkeys(("m", "min", "mins", "minute", "minutes"), 60),
    **dict.fromkeys(("h", "hr", "hrs", "hour", "hours"), 3600),
    **dict.fromkeys(("d", "day", "days"), 86400),
    **dict.fromkeys(("w", "week", "weeks"), 604800),
}
_AMOUNT = r"(\d+(?:\.\d+)?)\s*([a-z]+)"
_AMOUNTS = re.compile(rf"^\s*{_AMOUNT}(?:\s*,?\s*{_AMOUNT})*\s*$")
_EACH = re.compile(_AMOUNT)
EXAMPLES = '"90m", "2 days", "1h 30m", "PT90M", "1:30:00" or a number of seconds'


class DurationInvalid(ValueError):
    """The value is not a duration in the grammar above."""


def parse_duration(value: object) -> timedelta:
    """The duration ``value`` stands for; :class:`DurationInvalid` when it is none."""
    if isinstance(value, timedelta):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        try:
            return timedelta(seconds=value)
        except OverflowError:
            raise DurationInvalid(f"{value!r} is too long a duration") from None
    if not isinstance(value, str):
        raise DurationInvalid(f"{value!r} is not a duration such as {EXAMPLES}")
    text = value.strip().lower()
    if _AMOUNTS.match(text):
        seconds = 0.0
        for amount, unit in _EACH.findall(text):
            if unit not in UNITS:
                raise DurationInvalid(f"unknown unit {unit!r} in {value!r} (use s, m, h, d, w)")
            seconds += float(amount) * UNITS[unit]
        try:
            return timedelta(seconds=seconds)
        except OverflowError:
            raise DurationInvalid(f"{value!r} is too long a duration") from None
    try:
        parsed = parse_django_duration(value.strip())
    except (OverflowError, ValueError):
        parsed = None
    if parsed is None or not any(char.isdigit() for char in text):
        raise DurationInvalid(f"{value!r} is not a duration such as {EXAMPLES}")
    return parsed
