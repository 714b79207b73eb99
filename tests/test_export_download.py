"""The mailed export link: only the user whose visibility chose the rows (or staff)."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import Permission
from django.core.files.base import ContentFile
from django.test import Client

from automation.models import Export

pytestmark = pytest.mark.django_db


def test_export_download_is_checked(client: Client, make_user: Any) -> None:
    owner, other, staff = make_user("ann"), make_user("bob"), make_user("sue", staff=True)
    staff.user_permissions.add(Permission.objects.get(codename="view_export"))
    bare_staff = make_user("sam", staff=True)  # staff without the export permission
    export = Export.objects.create(entity_type="lead", requested_by=owner, row_count=1)
    export.file.save("exports/test-download.csv", ContentFile(b"id,name\n1,Acme\n"))
    url = f"/exports/{export.pk}/download/"
    assert client.get(url).status_code == 302  # to the login page
    for user in (other, bare_staff):
        client.force_login(user)
        assert client.get(url).status_code == 404
    for user in (owner, staff):
        client.force_login(user)
        response = client.get(url)
        assert response.status_code == 200
        assert b"".join(response.streaming_content) == b"id,name\n1,Acme\n"
        assert "attachment" in response["Content-Disposition"]
    export.file.delete()
