"""The task list's pages: keyset (cursor) pagination, no total count."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from django.http import QueryDict
from rest_framework.pagination import BasePagination
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.utils.urls import replace_query_param

from tasks_inbox.filters import ORDERING_ALIASES
from tasks_inbox.keyset import DEFAULT_SORT, KeysetPage, keyset_page


def requested_sort(params: QueryDict) -> str:
    """The sort a list request asks for (``sort``, or its alias ``ordering``)."""
    return params.get("sort") or ORDERING_ALIASES.get(params.get("ordering", ""), DEFAULT_SORT)


class TaskCursorPagination(BasePagination):
    """``?cursor=`` from the ``next``/``previous`` links of the answer; ``page_size`` up to
    500 (default 50). The sort and filters stay in the links."""

    page_size = 50
    max_page_size = 500
    cursor_query_param = "cursor"

    def paginate_queryset(
        self, queryset: QuerySet[Any], request: Request, view: Any = None
    ) -> list[Any]:
        self.request = request
        try:
            size = int(request.query_params.get("page_size") or self.page_size)
        except ValueError:
            size = self.page_size
        size = max(1, min(size, self.max_page_size))
        self.page: KeysetPage = keyset_page(
            queryset,
            sort=requested_sort(request.query_params),
            cursor=request.query_params.get(self.cursor_query_param),
            size=size,
        )
        return self.page.rows

    def _link(self, cursor: str | None) -> str | None:
        if cursor is None:
            return None
        url = self.request.build_absolute_uri()
        return replace_query_param(url, self.cursor_query_param, cursor)

    def get_paginated_response(self, data: Any) -> Response:
        return Response(
            {
                "next": self._link(self.page.next_cursor),
                "previous": self._link(self.page.previous_cursor),
                "results": data,
            }
        )

    def get_paginated_response_schema(self, schema: dict[str, Any]) -> dict[str, Any]:
        link = {"type": "string", "nullable": True, "format": "uri"}
        return {
            "type": "object",
            "required": ["results"],
            "properties": {"next": link, "previous": link, "results": schema},
        }

    def get_schema_operation_parameters(self, view: Any) -> list[dict[str, Any]]:
        return [
            {
                "name": self.cursor_query_param,
                "required": False,
                "in": "query",
                "description": "The page: the cursor of a next or previous link.",
                "schema": {"type": "string"},
            },
            {
                "name": "page_size",
                "required": False,
                "in": "query",
                "description": f"Tasks per page (at most {self.max_page_size}).",
                "schema": {"type": "integer"},
            },
        ]
