"""Conditions and templates read one path grammar: a path one accepts, the other accepts,
and both find the same value."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from automation.conditions import evaluate, resolve_path, validate_condition
from automation.templating import render_value, validate_template

CONTEXT = {
    "lead": {"first-name": "Ada", "owner": {"email": "a@example.com"}, "tags": ["x", "y"]},
    "items": [{"name": "first"}],
    "0": {"name": "zero"},
    "größe": 3,
}

PATHS = [
    "lead.first-name",
    "lead.owner.email",
    "lead.tags.1",
    "items.0.name",
    "0.name",
    "größe",
    "lead.missing",
    "lead..owner",
    "lead.owner.",
    "lead._private",
    "lead[0]",
    "lead owner",
    "lead.e$mail",
    ".".join(["a"] * 33),
]


def condition_accepts(path: str) -> bool:
    return not validate_condition({"field": path, "operator": "exists"})


def template_accepts(path: str) -> bool:
    return not validate_template("{{ " + path + " }}")


@pytest.mark.parametrize("path", PATHS)
def test_conditions_and_templates_accept_the_same_paths(path: str) -> None:
    assert condition_accepts(path) == template_accepts(path)


@pytest.mark.parametrize("path", [p for p in PATHS if condition_accepts(p)])
def test_both_find_the_same_value(path: str) -> None:
    found = resolve_path(CONTEXT, path)
    rendered = render_value("{{ " + path + " }}", CONTEXT).value
    assert rendered == found
    assert evaluate({"field": path, "operator": "eq", "value": found}, CONTEXT) is True


def test_hyphenated_and_unicode_keys_are_paths_in_both() -> None:
    assert condition_accepts("lead.first-name") and template_accepts("lead.first-name")
    assert render_value("{{ lead.first-name }}", CONTEXT).value == "Ada"
    assert render_value("{{ größe }}", CONTEXT).value == 3


@given(st.text(alphabet="ab0-_.$ ", min_size=1, max_size=12))
def test_agreement_on_arbitrary_paths(path: Any) -> None:
    if path.strip() != path or path in ("today", "now") or path.startswith(("today", "now")):
        return  # templates trim the expression and read date tokens; conditions take it as is
    assert condition_accepts(path) == template_accepts(path)
