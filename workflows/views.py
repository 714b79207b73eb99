"""The builder page: a workflow's draft composed in the browser, over the authoring API."""

from __future__ import annotations

from django import forms
from django.contrib.admin.views.decorators import staff_member_required
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.text import slugify

from config.errors import DomainError
from config.requests import request_user
from workflows import services
from workflows.builder import builder_lookups
from workflows.models import Workflow


def _require(request: HttpRequest, *perms: str) -> None:
    if not request.user.has_perms([f"workflows.{p}_workflow" for p in perms]):
        raise PermissionDenied("You need the workflow permissions to author workflows.")


@staff_member_required
def builder(request: HttpRequest, pk: int) -> HttpResponse:
    """The page; everything it edits it reads and writes through ``/api/v1/workflows/``."""
    _require(request, "view", "change")
    workflow = get_object_or_404(Workflow, pk=pk)
    return render(
        request,
        "workflows/builder.html",
        {"workflow": workflow, "lookups": builder_lookups()},
    )


_SLUG_TAKEN = "a workflow with this slug exists"


class NewWorkflowForm(forms.Form):
    name = forms.CharField(max_length=200)
    slug = forms.SlugField(
        max_length=100, required=False, help_text="Lowercase; from the name when left empty."
    )


@staff_member_required
def builder_new(request: HttpRequest) -> HttpResponse:
    """Name a new workflow; it is saved as an empty draft and opened in the builder."""
    _require(request, "view", "add", "change")
    form = NewWorkflowForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        name = form.cleaned_data["name"]
        slug = form.cleaned_data["slug"] or slugify(name)[:100]
        document = {"slug": slug, "name": name, "triggers": [], "steps": []}
        if Workflow.objects.filter(slug=slug).exists():
            form.add_error("slug" if form.cleaned_data["slug"] else "name", _SLUG_TAKEN)
            return render(request, "workflows/builder_new.html", {"form": form})
        try:
            workflow = services.draft_save(document=document, user=request_user(request))
        except DomainError as exc:
            for path, problems in exc.fields.items():
                field = path if path in form.fields else None
                for problem in problems:
                    form.add_error(field, problem)
            if not exc.fields:
                form.add_error(None, exc.message)
        else:
            return redirect("workflow-builder", pk=workflow.pk)
    return render(request, "workflows/builder_new.html", {"form": form})
