"""API permissions."""

from __future__ import annotations

from typing import Any

from django.db.models import Model
from rest_framework.generics import GenericAPIView
from rest_framework.permissions import SAFE_METHODS, BasePermission, DjangoModelPermissions


def _plain_queryset_model(view: object) -> type[Model] | None:
    """The model of ``view.queryset`` when the view keeps GenericAPIView's own
    ``get_queryset`` (which only copies it), else None. DRF's check calls ``get_queryset()``
    for the model alone: a queryset clone on every request (most of the check's cost)."""
    queryset = getattr(view, "queryset", None)
    own = getattr(type(view), "get_queryset", None)
    if queryset is None or own is not GenericAPIView.get_queryset:
        return None
    return getattr(queryset, "model", None)


class StaffModelPermissions(DjangoModelPermissions):
    """Authoring and operations: staff users holding the model's permissions.

    Reads need ``view_<model>`` too; custom actions (POST) need ``change_<model>``.
    """

    perms_map = {
        "GET": ["%(app_label)s.view_%(model_name)s"],
        "OPTIONS": [],
        "HEAD": ["%(app_label)s.view_%(model_name)s"],
        "POST": ["%(app_label)s.add_%(model_name)s"],
        "PUT": ["%(app_label)s.change_%(model_name)s"],
        "PATCH": ["%(app_label)s.change_%(model_name)s"],
        "DELETE": ["%(app_label)s.delete_%(model_name)s"],
    }

    def has_permission(self, request: Any, view: Any) -> bool:
        if not (request.user and request.user.is_authenticated and request.user.is_staff):
            return False
        if getattr(view, "action", None) in getattr(view, "change_actions", ()):
            model = view.get_queryset().model
            return request.user.has_perm(f"{model._meta.app_label}.change_{model._meta.model_name}")
        model = _plain_queryset_model(view)
        if model is None:
            return super().has_permission(request, view)
        if getattr(view, "_ignore_model_permissions", False):
            return True
        return request.user.has_perms(self.get_required_permissions(request.method, model))


class ScopedReadOrStaffModelPermissions(StaffModelPermissions):
    """Reads for every signed-in user, over what the view's queryset lets them see (e.g.
    the lifecycles of the tasks they can see); writes as ``StaffModelPermissions``.
    Staff are always held to the model permissions."""

    def has_permission(self, request: Any, view: Any) -> bool:
        user = request.user
        if request.method in SAFE_METHODS and user and user.is_authenticated and not user.is_staff:
            return True
        return super().has_permission(request, view)


MONITORING_PERMISSION = "automation.view_monitoring"


class CanViewMonitoring(BasePermission):
    """Monitoring figures: users holding ``automation.view_monitoring`` (superusers hold
    every permission); being staff is not enough."""

    def has_permission(self, request: Any, view: Any) -> bool:
        user = request.user
        return bool(user and user.is_authenticated and user.has_perm(MONITORING_PERMISSION))
