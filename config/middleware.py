"""Request checks made once, before any view: the body size limit for the API and the
text rules for URL and query parameters.

- A body larger than ``API_MAX_BODY_BYTES`` sent to ``/api/`` (any content type: JSON,
  form, multipart) answers 413 ``PAYLOAD_TOO_LARGE`` in the API's error shape before
  anything reads it.
- A NUL character or an unpaired surrogate in the path or in a query parameter's name or
  value answers 400 ``VALIDATION_ERROR`` naming the parameter (JSON under ``/api/``, a
  plain 400 page elsewhere).
"""

from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest, JsonResponse

from config.parsers import body_limit, declared_length, text_problem


def _api_error(
    status: int, code: str, message: str, fields: dict[str, list[str]] | None = None
) -> JsonResponse:
    body: dict[str, object] = {"code": code, "message": message}
    if fields:
        body["fields"] = fields
    return JsonResponse({"error": body}, status=status)


def parameter_problem(request: HttpRequest) -> tuple[str, str] | None:
    """``(where, why)`` for the first path or query text that cannot be taken, else None."""
    problem = text_problem(request.path_info)
    if problem:
        return "path", problem
    for name, values in request.GET.lists():
        problem = text_problem(name)
        if problem:
            return "query", f"parameter name {name!r}: {problem}"
        for value in values:
            problem = text_problem(value)
            if problem:
                return f"query.{name}", problem
    return None


class RequestLimitsMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        is_api = request.path_info.startswith("/api/")
        if is_api:
            limit = body_limit()
            length = declared_length(request)
            if length is not None and length > limit:
                return _api_error(
                    413, "PAYLOAD_TOO_LARGE", f"The request body is larger than {limit} bytes."
                )
        found = parameter_problem(request)
        if found is not None:
            where, why = found
            if is_api:
                return _api_error(400, "VALIDATION_ERROR", f"{where}: {why}", {where: [why]})
            return HttpResponseBadRequest(f"{where}: {why}\n", content_type="text/plain")
        return self.get_response(request)
