"""Request parsing and pagination for the API.

Kept apart from ``config.api`` (which imports DRF's views): DRF resolves these classes from
settings while its views module is being imported.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from rest_framework import exceptions, status
from rest_framework.pagination import PageNumberPagination
from rest_framework.parsers import JSONParser


class PayloadTooLarge(exceptions.APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_detail = "The request body is too large."
    default_code = "PAYLOAD_TOO_LARGE"


class LimitedJSONParser(JSONParser):
    """JSON parser that refuses bodies over ``API_MAX_BODY_BYTES`` with 413."""

    def parse(self, stream: Any, media_type: str | None = None, parser_context: Any = None) -> Any:
        limit = settings.API_MAX_BODY_BYTES
        request = (parser_context or {}).get("request")
        length = request.META.get("CONTENT_LENGTH") if request is not None else None
        if length and str(length).isdigit() and int(length) > limit:
            raise PayloadTooLarge(f"The request body is larger than {limit} bytes.")
        return super().parse(stream, media_type, parser_context)


class Pagination(PageNumberPagination):
    page_size_query_param = "page_size"
    max_page_size = 500
