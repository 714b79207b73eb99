"""The builder's pages."""

from django.urls import path

from workflows import views

urlpatterns = [
    path("workflows/new/", views.builder_new, name="workflow-builder-new"),
    path("workflows/<int:pk>/builder/", views.builder, name="workflow-builder"),
]
