"""Query parameters that pages and API views read the same way."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from django.utils import timezone
from django.utils.dateparse import parse_datetime


def datetime_params(
    params: Any, keys: Iterable[str]
) -> tuple[dict[str, datetime], list[tuple[str, str]]]:
    """The ISO 8601 date-times given under ``keys`` (naive ones in the project's time zone),
    and a ``(key, message)`` issue for each one that does not parse; absent or empty keys
    are left out."""
    moments: dict[str, datetime] = {}
    issues: list[tuple[str, str]] = []
    for key in keys:
        text = params.get(key)
        if text in (None, ""):
            continue
        try:
            moment = parse_datetime(str(text))
        except ValueError:
            moment = None
        if moment is None:
            issues.append((key, "must be an ISO 8601 date and time"))
            continue
        moments[key] = timezone.make_aware(moment) if timezone.is_naive(moment) else moment
    return moments, issues
