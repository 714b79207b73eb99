"""API plumbing shared by every app: the error shape, the exception handler, and the
token endpoint for API clients.

Every error, ours and the framework's, is rendered as::

    {"error": {"code": "VALIDATION_ERROR", "message": "...", "fields": {"steps[1].key": ["..."]}}}
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import DatabaseError, InterfaceError, OperationalError
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from drf_spectacular.utils import OpenApiResponse, extend_schema, inline_serializer
from rest_framework import exceptions, serializers, status
from rest_framework.authtoken.models import Token
from rest_framework.authtoken.views import ObtainAuthToken
from rest_framework.permissions import AllowAny, IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.throttling import ScopedRateThrottle
from rest_framework.views import set_rollback

from config.errors import DomainError
from config.requests import request_user

logger = logging.getLogger(__name__)
# Seconds a client is asked to wait when the database cannot be reached (503).
DATABASE_RETRY_AFTER = 5

CODES: dict[type[exceptions.APIException], str] = {
    exceptions.ParseError: "PARSE_ERROR",
    exceptions.ValidationError: "VALIDATION_ERROR",
    exceptions.NotAuthenticated: "NOT_AUTHENTICATED",
    exceptions.AuthenticationFailed: "AUTHENTICATION_FAILED",
    exceptions.PermissionDenied: "PERMISSION_DENIED",
    exceptions.NotFound: "NOT_FOUND",
    exceptions.MethodNotAllowed: "METHOD_NOT_ALLOWED",
    exceptions.NotAcceptable: "NOT_ACCEPTABLE",
    exceptions.UnsupportedMediaType: "UNSUPPORTED_MEDIA_TYPE",
    exceptions.Throttled: "RATE_LIMITED",
}


def json_path(prefix: str, key: str | int) -> str:
    if isinstance(key, int) or (isinstance(key, str) and key.isdigit()):
        return f"{prefix}[{key}]"
    return f"{prefix}.{key}" if prefix else str(key)


def flatten_detail(detail: object, prefix: str = "") -> dict[str, list[str]]:
    """Turn DRF's nested error detail into ``{json_path: [messages]}``."""
    out: dict[str, list[str]] = {}
    if isinstance(detail, dict):
        for key, value in detail.items():
            if key in ("non_field_errors", "__all__"):
                path = prefix or "non_field_errors"
            else:
                path = json_path(prefix, key)
            for sub, messages in flatten_detail(value, path).items():
                out.setdefault(sub, []).extend(messages)
    elif isinstance(detail, list):
        if all(not isinstance(item, (dict, list)) for item in detail):
            out[prefix or "non_field_errors"] = [str(item) for item in detail]
        else:
            for index, item in enumerate(detail):
                if item:
                    for sub, messages in flatten_detail(item, json_path(prefix, index)).items():
                        out.setdefault(sub, []).extend(messages)
    elif detail not in (None, ""):
        out[prefix or "non_field_errors"] = [str(detail)]
    return out


def error_body(
    code: str, message: str, fields: dict[str, list[str]] | None = None, **data: object
) -> dict[str, Any]:
    body: dict[str, Any] = {"code": code, "message": message}
    if fields:
        body["fields"] = fields
    body.update(data)
    return {"error": body}


def _validation_message(fields: dict[str, list[str]]) -> str:
    if not fields:
        return "The input is not valid."
    path, messages = next(iter(fields.items()))
    return f"{path}: {messages[0]}" if path != "non_field_errors" else messages[0]


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """Render every error in the one shape and roll back the request's transaction."""
    headers: dict[str, str] = {}
    if isinstance(exc, OperationalError | InterfaceError):
        # The database is down or restarting (a failover, a restart): nothing was done
        # that will not be rolled back, so the client may retry.
        logger.warning("database unavailable during %s", context.get("request"), exc_info=True)
        with contextlib.suppress(DatabaseError):  # the connection went with its transaction
            set_rollback()
        body = error_body("DATABASE_UNAVAILABLE", "The database is unavailable; retry shortly.")
        return Response(body, status=503, headers={"Retry-After": str(DATABASE_RETRY_AFTER)})
    if isinstance(exc, DomainError):
        set_rollback()
        return Response({"error": exc.as_dict()}, status=exc.status)
    if isinstance(exc, DjangoValidationError):
        exc = exceptions.ValidationError(
            exc.message_dict if hasattr(exc, "error_dict") else exc.messages
        )
    elif isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied()
    if not isinstance(exc, exceptions.APIException):
        return None
    if getattr(exc, "auth_header", None):
        headers["WWW-Authenticate"] = exc.auth_header  # type: ignore[attr-defined]
    if getattr(exc, "wait", None):
        headers["Retry-After"] = str(int(exc.wait))  # type: ignore[attr-defined]
    if isinstance(exc, exceptions.ValidationError):
        fields = flatten_detail(exc.detail)
        body = error_body("VALIDATION_ERROR", _validation_message(fields), fields)
    else:
        code = next((c for cls, c in CODES.items() if isinstance(exc, cls)), None)
        if code is None:
            code = str(exc.default_code).upper()
        body = error_body(code, str(exc.detail))
    set_rollback()
    return Response(body, status=exc.status_code, headers=headers)


def api_not_found(request: HttpRequest, *args: object, **kwargs: object) -> JsonResponse:
    """Unknown URLs under ``/api/`` answer in the error shape, not Django's HTML page."""
    return JsonResponse(error_body("NOT_FOUND", f"No API endpoint at {request.path}."), status=404)


def api_server_error(request: HttpRequest) -> JsonResponse:
    return JsonResponse(error_body("INTERNAL_ERROR", "Internal server error."), status=500)


def csrf_failure(request: HttpRequest, reason: str = "") -> HttpResponse:
    """A refused CSRF check: under ``/api/`` in the error shape (a POST to a URL no view
    answers, so no view exempts it), elsewhere Django's page."""
    if request.path.startswith("/api/"):
        return JsonResponse(
            error_body("PERMISSION_DENIED", "CSRF check failed; send an API token."), status=403
        )
    from django.views.csrf import csrf_failure as django_csrf_failure

    return django_csrf_failure(request, reason=reason)


class TokenView(ObtainAuthToken):
    """``POST`` a username and password to get the user's API token (the same token on
    every call until it is revoked); send it as ``Authorization: Token <key>``. ``DELETE``
    (authenticated) revokes the caller's token. Wrong credentials: 400 VALIDATION_ERROR.
    Rate-limited like the login page."""

    throttle_classes = [ScopedRateThrottle]
    throttle_scope = "login"

    def get_permissions(self) -> list[Any]:
        return [IsAuthenticated()] if self.request.method == "DELETE" else [AllowAny()]

    @extend_schema(responses=inline_serializer("Token", {"token": serializers.CharField()}))
    def post(self, request: Request, *args: object, **kwargs: object) -> Response:
        return super().post(request, *args, **kwargs)

    @extend_schema(request=None, responses={204: OpenApiResponse(description="Revoked.")})
    def delete(self, request: Request, *args: object, **kwargs: object) -> Response:
        Token.objects.filter(user=request_user(request)).delete()
        return Response(status=status.HTTP_204_NO_CONTENT)
