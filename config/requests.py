"""Requests, typed: the signed-in user (one narrowing for the views, the API and the admin)
and the htmx details the middleware adds.

``request.user`` is a ``User`` or an ``AnonymousUser``; the services that act for someone
take a ``User``. Views reach them only behind a login or permission check, so an anonymous
user here is refused (403) rather than passed on.
"""

from __future__ import annotations

from django.contrib.auth.models import User
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest
from django_htmx.middleware import HtmxDetails
from rest_framework.request import Request


def request_user(request: HttpRequest | Request) -> User:
    """The request's signed-in user; ``PermissionDenied`` when nobody is signed in."""
    user = request.user
    if not isinstance(user, User) or not user.is_authenticated:
        raise PermissionDenied("sign in first")
    return user


class HtmxHttpRequest(HttpRequest):
    """A request through ``django_htmx``'s middleware, which sets ``htmx``."""

    htmx: HtmxDetails
