"""Which renderer answers an API request.

The schema documents JSON, and API clients (a token in ``Authorization``) always get
JSON, whatever ``Accept``, ``?format=`` or a format suffix asks for. The browsable API
(HTML) is for people in a browser, on the login session: a request without
``Authorization`` negotiates as DRF does (``Accept: text/html`` or ``?format=api`` gets
the page, anything else JSON).
"""

from __future__ import annotations

from typing import Any

from django.http import Http404
from rest_framework import exceptions
from rest_framework.negotiation import DefaultContentNegotiation


def is_html(renderer: Any) -> bool:
    return str(getattr(renderer, "media_type", "")).startswith("text/html")


class ApiContentNegotiation(DefaultContentNegotiation):
    def select_renderer(
        self, request: Any, renderers: Any, format_suffix: str | None = None
    ) -> tuple[Any, str]:
        if request.META.get("HTTP_AUTHORIZATION"):
            data_renderers = [renderer for renderer in renderers if not is_html(renderer)]
            if data_renderers:
                try:
                    return super().select_renderer(request, data_renderers, format_suffix)
                except (exceptions.NotAcceptable, Http404):
                    return data_renderers[0], data_renderers[0].media_type
        return super().select_renderer(request, renderers, format_suffix)
