"""export_workflows / import_workflows round-trip the JSON documents."""

from __future__ import annotations

import json
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from crm.demo import DEAL_NEGOTIATION, QUALIFY_HIGH_VALUE_LEADS
from workflows.models import Workflow
from workflows.services import workflow_save

pytestmark = pytest.mark.django_db


def test_export_then_import_elsewhere(tmp_path: Path) -> None:
    workflow_save(document=QUALIFY_HIGH_VALUE_LEADS)
    workflow_save(document=DEAL_NEGOTIATION)
    out = tmp_path / "workflows.json"
    call_command("export_workflows", "--output", str(out))
    documents = json.loads(out.read_text())
    assert [d["slug"] for d in documents] == ["deal-negotiation-note", "qualify-high-value-leads"]
    Workflow.objects.all().delete()
    stdout = StringIO()
    call_command("import_workflows", str(out), "--publish", stdout=stdout)
    assert "qualify-high-value-leads: version 1" in stdout.getvalue()
    assert Workflow.objects.count() == 2
    # Importing the same documents again creates no new versions.
    call_command("import_workflows", str(out), "--publish", stdout=StringIO())
    assert all(w.versions.count() == 1 for w in Workflow.objects.all())


def test_import_is_all_or_nothing(tmp_path: Path) -> None:
    bad = json.loads(json.dumps(DEAL_NEGOTIATION))
    bad["triggers"][0]["conditions"]["operator"] = "equals"
    path = tmp_path / "in.json"
    path.write_text(json.dumps([QUALIFY_HIGH_VALUE_LEADS, bad]))
    with pytest.raises(CommandError) as info:
        call_command("import_workflows", str(path), stdout=StringIO())
    assert "triggers[0].conditions.operator: unknown operator 'equals'" in str(info.value)
    assert Workflow.objects.count() == 0
