"""Filter fields shared by the API's filter sets."""

from __future__ import annotations

import datetime as dt
from typing import Any

import django_filters
from django import forms
from django_filters.fields import IsoDateTimeField


class UTCDateTimeField(IsoDateTimeField):
    """An ISO 8601 datetime, normalised to UTC; out-of-range moments are a validation error
    (PostgreSQL refuses offsets beyond +-15:59 and years before 1 once shifted)."""

    def clean(self, value: Any) -> dt.datetime | None:
        moment = super().clean(value)
        if moment is None:
            return None
        try:
            return moment.astimezone(dt.UTC)
        except (OverflowError, ValueError):
            raise forms.ValidationError("datetime out of range", code="invalid") from None


class DateTimeFilter(django_filters.IsoDateTimeFilter):
    field_class = UTCDateTimeField
