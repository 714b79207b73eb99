"""Request parsing and pagination for the API.

Kept apart from ``config.api`` (which imports DRF's views): DRF resolves these classes from
settings while its views module is being imported.

Every parsed body goes through :func:`check_input`: no NUL characters or lone surrogates
in any key or text (PostgreSQL cannot store them; they are never meaningful input), and
no nesting deeper than ``MAX_INPUT_DEPTH`` levels. Both answer 400 naming the JSON path.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from rest_framework import exceptions, status
from rest_framework.pagination import PageNumberPagination
from rest_framework.parsers import FormParser, JSONParser, MultiPartParser

from config.errors import ValidationFailed

MAX_INPUT_DEPTH = 100


class PayloadTooLarge(exceptions.APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_detail = "The request body is too large."
    default_code = "PAYLOAD_TOO_LARGE"


class InputTooDeep(ValidationFailed):
    code = "NESTING_TOO_DEEP"
    default_message = f"The input nests deeper than {MAX_INPUT_DEPTH} levels."


def text_problem(text: str) -> str | None:
    """Why ``text`` cannot be taken as input, or None when it can."""
    if "\x00" in text:
        return "must not contain NUL characters"
    if any("\ud800" <= char <= "\udfff" for char in text):
        return "must not contain unpaired surrogate characters"
    return None


def _path(prefix: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{prefix}[{key}]"
    return f"{prefix}.{key}" if prefix else key


def check_input(data: Any, *, root: str = "") -> None:
    """Refuse NUL characters, lone surrogates and nesting over ``MAX_INPUT_DEPTH`` anywhere
    in ``data`` (walked without recursion, so any depth is safe to inspect)."""
    stack: list[tuple[Any, str, int]] = [(data, root, 0)]
    while stack:
        value, path, depth = stack.pop()
        if isinstance(value, str):
            problem = text_problem(value)
            if problem:
                raise ValidationFailed.from_issues([(path or "body", problem)])
            continue
        if not isinstance(value, dict | list | tuple):
            continue
        if depth >= MAX_INPUT_DEPTH:
            raise InputTooDeep(fields={path or "body": [InputTooDeep.default_message]})
        if isinstance(value, dict):
            for key, item in value.items():
                key_text = str(key)
                problem = text_problem(key_text)
                if problem:
                    raise ValidationFailed.from_issues(
                        [(path or "body", f"key {key_text!r}: {problem}")]
                    )
                stack.append((item, _path(path, key_text), depth + 1))
        else:
            stack.extend((item, _path(path, index), depth + 1) for index, item in enumerate(value))


def body_limit() -> int:
    """The one limit on request bodies, every content type (``API_MAX_BODY_BYTES``)."""
    return int(settings.API_MAX_BODY_BYTES)


def declared_length(request: Any) -> int | None:
    length = str(request.META.get("CONTENT_LENGTH") or "").strip()
    return int(length) if length.isascii() and length.isdigit() else None


def check_length(parser_context: Any) -> None:
    request = (parser_context or {}).get("request")
    length = declared_length(request) if request is not None else None
    limit = body_limit()
    if length is not None and length > limit:
        raise PayloadTooLarge(f"The request body is larger than {limit} bytes.")


class LimitedJSONParser(JSONParser):
    """JSON parser: bodies over ``API_MAX_BODY_BYTES`` get 413; see :func:`check_input`."""

    def parse(self, stream: Any, media_type: str | None = None, parser_context: Any = None) -> Any:
        check_length(parser_context)
        try:
            data = super().parse(stream, media_type, parser_context)
        except RecursionError:
            raise InputTooDeep(fields={"body": [InputTooDeep.default_message]}) from None
        check_input(data)
        return data


class LimitedFormParser(FormParser):
    def parse(self, stream: Any, media_type: str | None = None, parser_context: Any = None) -> Any:
        check_length(parser_context)
        data = super().parse(stream, media_type, parser_context)
        check_input({key: data.getlist(key) for key in data})
        return data


class LimitedMultiPartParser(MultiPartParser):
    def parse(self, stream: Any, media_type: str | None = None, parser_context: Any = None) -> Any:
        check_length(parser_context)
        parsed = super().parse(stream, media_type, parser_context)
        check_input({key: parsed.data.getlist(key) for key in parsed.data})
        return parsed


class Pagination(PageNumberPagination):
    page_size_query_param = "page_size"
    max_page_size = 500
