"""The one error type of the domain.

Services raise a ``DomainError`` subclass; the API's exception handler, the admin and the
pages all render it from the same attributes. Callers branch on ``code``, never on text.
"""

from __future__ import annotations

from typing import Any


class DomainError(Exception):
    """A business rule said no. Carries a stable ``code``, an HTTP status and data."""

    code: str = "DOMAIN_ERROR"
    status: int = 400
    default_message: str = "The request could not be carried out."

    def __init__(
        self,
        message: str | None = None,
        *,
        code: str | None = None,
        fields: dict[str, list[str]] | None = None,
        data: dict[str, Any] | None = None,
    ) -> None:
        self.message = message or self.default_message
        if code:
            self.code = code
        self.fields = fields or {}
        self.data = data or {}
        super().__init__(self.message)

    def as_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.fields:
            body["fields"] = self.fields
        body.update(self.data)
        return body


class ValidationFailed(DomainError):
    code = "VALIDATION_ERROR"
    status = 400
    default_message = "The input is not valid."

    @classmethod
    def from_issues(
        cls, issues: list[tuple[str, str]], message: str | None = None
    ) -> ValidationFailed:
        """Build from ``(json_path, message)`` pairs."""
        fields: dict[str, list[str]] = {}
        for path, text in issues:
            fields.setdefault(path, []).append(text)
        first = f"{issues[0][0]}: {issues[0][1]}" if issues else None
        return cls(message or first, fields=fields)


class NotFound(DomainError):
    code = "NOT_FOUND"
    status = 404
    default_message = "Not found."


class PermissionDenied(DomainError):
    code = "PERMISSION_DENIED"
    status = 403
    default_message = "You do not have permission to do this."


class Conflict(DomainError):
    code = "CONFLICT"
    status = 409
    default_message = "The resource changed under you; reload and try again."


class Unprocessable(DomainError):
    code = "UNPROCESSABLE"
    status = 422
    default_message = "The request is well-formed but cannot be processed."
