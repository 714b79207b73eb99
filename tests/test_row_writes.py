"""The engine's bulk row writes (``automation.services.common``): rows written as they are in
memory, one statement per table, that find their rows by key however large the table."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import connection

from automation.services.common import _rows_update_sql as rows_update_sql
from automation.services.common import rows_update
from crm.models import Lead


def test_rows_are_written_as_they_are_in_memory(db: Any) -> None:
    leads = Lead.objects.bulk_create([Lead(company_name=f"L{i}") for i in range(5)])
    for lead in leads[:3]:
        lead.company_name = f"{lead.company_name} (renamed)"
        lead.contact_name = "Ana"
    rows_update(leads[:3], ["company_name", "contact_name"])
    found = dict(Lead.objects.order_by("pk").values_list("company_name", "contact_name"))
    assert found == {
        "L0 (renamed)": "Ana",
        "L1 (renamed)": "Ana",
        "L2 (renamed)": "Ana",
        "L3": "",
        "L4": "",
    }


@pytest.mark.postgres
def test_a_few_rows_are_found_by_key_not_by_reading_the_table(db: Any) -> None:
    """The rows' document is a function the planner takes for 100 rows; the keys, as an
    array, tell it how many there are, so two rows of 5,000 are not joined by reading all
    5,000 (which a JSON document alone gets on a table without fresh statistics)."""
    leads = Lead.objects.bulk_create([Lead(company_name=f"L{i}") for i in range(5000)])
    sql, params = rows_update_sql(leads[:2], ["company_name"])
    with connection.cursor() as cursor:
        cursor.execute(f"EXPLAIN {sql}", params)
        plan = "\n".join(row[0] for row in cursor.fetchall())
    assert "Seq Scan on crm_lead" not in plan, plan
