"""The project's URLs plus ``/bench/trivial/``: a DRF view answering ``{"ok": true}`` with
no authentication, permission, throttle or database access, the floor of what DRF on
daphne serves on this machine (the API benchmark's baseline)."""

from __future__ import annotations

from typing import Any

from django.urls import path
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from config.urls import urlpatterns as project_urlpatterns


class TrivialView(APIView):
    authentication_classes: list[Any] = []
    permission_classes = [AllowAny]
    throttle_classes: list[Any] = []

    def get(self, request: Request) -> Response:
        return Response({"ok": True})


urlpatterns = [path("bench/trivial/", TrivialView.as_view()), *project_urlpatterns]
