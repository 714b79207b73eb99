"""The one error type of the domain.

Services raise a ``DomainError`` subclass; the API's exception handler, the admin and the
pages all render it from the same attributes. Callers branch on ``code``, never on text.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from config.issues import Issue, IssueCode, error_issues, warning_issues


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
    """The input broke rules; ``fields`` maps JSON paths to messages, ``issues`` holds
    the same problems with their stable codes, and ``warnings`` what only informs."""

    code = "VALIDATION_ERROR"
    status = 400
    default_message = "The input is not valid."

    def __init__(
        self,
        message: str | None = None,
        *,
        issues: list[Issue] | None = None,
        warnings: list[Issue] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(message, **kwargs)
        self.issues = list(issues or [])
        self.warnings = list(warnings or [])

    @classmethod
    def from_issues(
        cls, issues: Iterable[Issue | tuple[str, str]], message: str | None = None
    ) -> ValidationFailed:
        """Build from :class:`~config.issues.Issue` values (a bare ``(json_path, message)``
        pair counts as an error with the code ``INVALID``). Warnings are carried along and
        never counted as errors."""
        found = [
            item if isinstance(item, Issue) else Issue(item[0], IssueCode.INVALID, item[1])
            for item in issues
        ]
        errors = error_issues(found)
        fields: dict[str, list[str]] = {}
        for issue in errors:
            fields.setdefault(issue.path, []).append(issue.message)
        first = f"{errors[0].path}: {errors[0].message}" if errors else None
        return cls(message or first, fields=fields, issues=errors, warnings=warning_issues(found))

    def as_dict(self) -> dict[str, Any]:
        body = super().as_dict()
        if self.issues:
            body["issues"] = [issue.as_dict() for issue in self.issues]
        if self.warnings:
            body["warnings"] = [issue.as_dict() for issue in self.warnings]
        return body


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
