"""Filter fields shared by the API's filter sets, and the backend that answers a bad filter
value with 400 VALIDATION_ERROR naming the parameter."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import django_filters
from django import forms
from django.db.models import Q, QuerySet
from django_filters.fields import IsoDateTimeField
from django_filters.rest_framework import DjangoFilterBackend

from config.errors import DomainError, ValidationFailed


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


class FilterBackend(DjangoFilterBackend):
    """django-filter's backend, with a bad filter value answered in the one error shape:
    400 VALIDATION_ERROR, ``fields`` naming each parameter and ``codes`` giving each one's
    stable reason (the form's ``invalid_choice``, ``UNKNOWN_USER``, ``UNKNOWN_WORKFLOW``...)."""

    def filter_queryset(self, request: Any, queryset: QuerySet, view: Any) -> QuerySet:
        filterset = self.get_filterset(request, queryset, view)
        if filterset is None:
            return queryset
        if not filterset.is_valid():
            errors = filterset.form.errors.as_data()
            issues = [
                (name, message)
                for name, found in errors.items()
                for error in found
                for message in error.messages
            ]
            codes = {name: found[0].code or "invalid" for name, found in errors.items()}
            error = ValidationFailed.from_issues(issues)
            error.data = {**error.data, "codes": codes}
            raise error
        return filterset.qs


class ReferenceField(forms.CharField):
    """A filter value naming one object through ``resolve``, which returns it or raises a
    form ``ValidationError`` or a ``DomainError`` (an unknown user...): either becomes the
    parameter's error, with its code."""

    def __init__(self, *args: Any, resolve: Callable[[str], Any], **kwargs: Any) -> None:
        self.resolve = resolve
        super().__init__(*args, **kwargs)

    def clean(self, value: Any) -> Any:
        text = super().clean(value)
        if text in (None, ""):
            return None
        try:
            return self.resolve(text)
        except DomainError as exc:
            messages = [m for found in exc.fields.values() for m in found] or [exc.message]
            reasons = list((exc.data.get("codes") or {}).values())
            raise forms.ValidationError(
                messages[0], code=reasons[0] if reasons else exc.code
            ) from None


class ReferenceFilter(django_filters.Filter):
    """``?param=<reference>``: the rows whose ``field_name`` is the object the reference
    names (``resolve=`` finds it or says why not)."""

    field_class = ReferenceField

    def filter(self, queryset: QuerySet, value: Any) -> QuerySet:
        if value is None:
            return queryset
        return queryset.filter(**{self.field_name: value})


def id_or_slug(
    queryset: QuerySet, *, slug_field: str | None = "slug", noun: str
) -> Callable[[str], Any]:
    """A ``resolve`` for ``ReferenceFilter``: the row whose id or ``slug_field`` is the
    value (the way its detail URL names it). None: ``UNKNOWN_<NOUN>``; the id of one and
    the slug of another: ``AMBIGUOUS_<NOUN>``."""

    def resolve(value: str) -> Any:
        match = Q(**{slug_field: value}) if slug_field else Q(pk__in=[])
        if value.isascii() and value.isdigit() and len(value) <= 18:
            match |= Q(pk=int(value))
        found = list(queryset.filter(match).order_by("pk")[:2])
        if not found:
            raise forms.ValidationError(f"no {noun} {value!r}", code=f"UNKNOWN_{noun.upper()}")
        if len(found) > 1:
            raise forms.ValidationError(
                f"{value!r} is the id of one {noun} and the {slug_field} of another; "
                f"give the {slug_field}",
                code=f"AMBIGUOUS_{noun.upper()}",
            )
        return found[0]

    return resolve
