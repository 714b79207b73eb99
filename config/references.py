"""Naming a user or a queue in input: one rule for the API, filters, SLA and step configs.

A reference is an id, a username or an email address. It is compared with every key at
once: a whole number with the id and the username, any text with the username and (when it
holds an ``@``) the email, ignoring case. It must name exactly one user; a caller that finds
several says the reference is ambiguous, never picks one.
"""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, User
from django.db.models import Q


def reference_text(value: object) -> str | None:
    """The reference as text, or None when it cannot name anything (not an id or a name)."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str) and 0 < len(value.strip()) <= 254 and "\x00" not in value:
        return value.strip()
    return None


def whole_number(text: str) -> int | None:
    return int(text) if text.isascii() and text.isdigit() and len(text) <= 18 else None


def users_named(value: object, *, active_only: bool = False) -> list[User]:
    """The users ``value`` names, by id: none, one, or two (then it is ambiguous)."""
    text = reference_text(value)
    if text is None:
        return []
    model = get_user_model()
    match = Q(**{model.USERNAME_FIELD: text})
    if "@" in text:
        match |= Q(**{f"{model.get_email_field_name()}__iexact": text})
    number = whole_number(text)
    if number is not None:
        match |= Q(pk=number)
    users = model._default_manager.filter(match)
    if active_only:
        users = users.filter(is_active=True)
    return list(users.order_by("pk")[:2])


def group_named(value: object) -> Group | None:
    """The queue (group) ``value`` names: by its name first, then by id; None when none does."""
    if isinstance(value, Group):
        return value
    text = reference_text(value)
    if text is None:
        return None
    found = Group.objects.filter(name=text).first()
    number = whole_number(text)
    if found is None and number is not None:
        found = Group.objects.filter(pk=number).first()
    return found
