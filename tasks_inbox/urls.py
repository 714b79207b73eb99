"""Inbox pages."""

app_name = "inbox"
urlpatterns: list = []
