"""The OpenAPI schema's view of errors: every operation documents the error answers it
can give, in the one error shape (``config.api``).

drf-spectacular documents only the successful answer of an operation. The error answers
come from places every view shares (the request limits middleware, authentication,
permissions, lookups, the domain's rules, throttling), so they are added here once, from
what the operation is: any operation may answer 400 (a parameter that cannot be taken),
401 and 403; one naming an object by its path 404, and so does a paginated list (a page
past the last one, a cursor that names no page); a write 409 (the object's state says
no) and, with a body, 413 and 415; a throttled one 429. An operation that documents one
of these itself (``@extend_schema(responses=...)``) keeps its own description; an error
it documents without a body gets the error shape too, so every error of the schema is
the ``Error`` component; a success it describes only in words is still documented as a
JSON object, so its content type is checked.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular import openapi
from drf_spectacular.utils import OpenApiResponse
from rest_framework import serializers
from rest_framework.permissions import AllowAny

WRITES = ("POST", "PUT", "PATCH", "DELETE")


class ErrorDetailSerializer(serializers.Serializer):
    """The error: a stable code, a message, and for invalid input the messages per JSON
    path; some codes add their own data (e.g. ``allowed_actions``)."""

    code = serializers.CharField(help_text="Stable: callers branch on it, never on text.")
    message = serializers.CharField()
    fields = serializers.DictField(  # type: ignore[assignment]  # a declared field, not .fields
        child=serializers.ListField(child=serializers.CharField()),
        required=False,
        help_text="Messages per JSON path of the input, e.g. 'steps[1].key'.",
    )


class ErrorSerializer(serializers.Serializer):
    error = ErrorDetailSerializer()


ERROR_DESCRIPTIONS = {
    "400": "VALIDATION_ERROR (with fields), PARSE_ERROR, NESTING_TOO_DEEP or a rule of "
    "the operation (e.g. INVALID_TRANSITION).",
    "401": "NOT_AUTHENTICATED or AUTHENTICATION_FAILED.",
    "403": "PERMISSION_DENIED.",
    "404": "NOT_FOUND: no such object among those the caller may see.",
    "404-page": "NOT_FOUND: no such page (past the last one, or a cursor that names none).",
    "404-object-page": "NOT_FOUND: no such object among those the caller may see, or no "
    "such page of it (past the last one).",
    "409": "CONFLICT or the object's state forbids it (e.g. INVALID_RUN_STATE).",
    "413": "PAYLOAD_TOO_LARGE.",
    "415": "UNSUPPORTED_MEDIA_TYPE.",
    "429": "RATE_LIMITED (with Retry-After).",
}


def error_response(status: str, description: str | None = None) -> OpenApiResponse:
    if description is None:
        description = ERROR_DESCRIPTIONS.get(status, "")
    return OpenApiResponse(ErrorSerializer, description=description)


def is_error(status: str) -> bool:
    return status[:1] in ("4", "5")


class AutoSchema(openapi.AutoSchema):
    def error_statuses(self) -> list[str]:
        """The error answers this operation can give (see the module's docstring)."""
        statuses = ["400", "401"]
        if not all(isinstance(p, AllowAny) for p in self.view.get_permissions()):
            statuses.append("403")
        if "{" in self.path or self.is_paginated():
            statuses.append("404")
        if self.method in WRITES:
            statuses.append("409")
            statuses.append("413")
        if self.method in ("POST", "PUT", "PATCH"):
            statuses.append("415")
        if getattr(self.view, "throttle_scope", None):
            statuses.append("429")
        return statuses

    def get_filter_backends(self) -> list[Any]:
        """A viewset's filters and ordering apply to its list; an action on one object
        that answers a list of its own (a task's history, a workflow's runs) takes none."""
        if getattr(self.view, "detail", False):
            return []
        return list(super().get_filter_backends())

    def is_paginated(self) -> bool:
        """A list answered a page at a time: a page that does not exist answers 404."""
        return self.method == "GET" and self._get_paginator() is not None and self._is_list_view()

    def error_description(self, status: str) -> str:
        if status == "404" and self.is_paginated():
            if "{" in self.path:
                return ERROR_DESCRIPTIONS["404-object-page"]
            return ERROR_DESCRIPTIONS["404-page"]
        return ERROR_DESCRIPTIONS.get(status, "")

    def _get_response_bodies(self, direction: Any = "response") -> dict[str, Any]:
        responses = super()._get_response_bodies(direction)
        for status, response in responses.items():
            if is_error(status) and "content" not in response:
                described = response.get("description") or self.error_description(status)
                responses[status] = self._get_response_for_code(
                    error_response(status, described), status, direction=direction
                )
        for status, response in responses.items():
            if status[:1] == "2" and status != "204" and "content" not in response:
                # Described in words only: still a JSON object, as every view answers.
                response["content"] = {
                    "application/json": {"schema": {"type": "object", "additionalProperties": {}}}
                }
        for status in self.error_statuses():
            if status not in responses:
                responses[status] = self._get_response_for_code(
                    error_response(status, self.error_description(status)),
                    status,
                    direction=direction,
                )
        return responses
