"""Importing lifecycles: this project's document, or the plain state-machine shape.

The plain shape, as dedicated state-machine services write it::

    {"name": "Approval",
     "states": [{"id": "draft", "name": "Draft", "is_initial": true, "is_final": false,
                 "enabled": true, "description": "Being written"}, ...],
     "actions": [{"id": "submit", "name": "Submit", "enabled": true,
                  "from_states": ["draft"], "to_state": "submitted",
                  "description": "Send it for approval"}, ...]}

It may also carry a ``slug`` and a ``description`` (without a slug, one is made from the
name), and this project's extras: ``is_cancellation`` on a state; ``allowed``, ``guard``,
``required_input`` and ``unassign`` on an action. It is translated into a lifecycle document
and validated by ``lifecycle_issues``, so the rules and the messages are the same; each
problem is reported at its path in the file as written (``actions[1].id: duplicate action
'submit'``, ``[2].states: exactly one state must be initial (found 2: a, b)`` in a list).

A file holds one document or a list of them, in either shape. ``lifecycles_import`` saves
them all in one transaction, or none: a lifecycle whose slug exists is replaced (its tasks'
states must remain), the others are created.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Any

from django.db import transaction
from django.utils.text import slugify

from config.issues import Issue, IssueCode
from tasks_inbox.lifecycles import LifecycleInvalid, lifecycle_issues, lifecycle_save
from workflows.models import Lifecycle

MAX_DOCUMENTS = 100

PLAIN_TOP_KEYS = {"name", "slug", "description", "states", "actions"}
# plain key -> this project's key
PLAIN_STATE_KEYS = {
    "id": "key",
    "name": "label",
    "is_initial": "is_initial",
    "is_final": "is_final",
    "enabled": "is_enabled",
    "description": "description",
    "is_cancellation": "is_cancellation",
}
PLAIN_ACTION_KEYS = {
    "id": "action",
    "name": "label",
    "enabled": "is_enabled",
    "from_states": "from_states",
    "to_state": "to_state",
    "description": "description",
    "allowed": "allowed",
    "guard": "guard",
    "required_input": "required_input",
    "unassign": "unassign",
}
_STATE_BACK = {ours: plain for plain, ours in PLAIN_STATE_KEYS.items()}
_ACTION_BACK = {ours: plain for plain, ours in PLAIN_ACTION_KEYS.items()}
_ITEM_PATH = re.compile(r"^(states|transitions)\[(\d+)\](?:\.([a-z_]+))?(.*)$")


@dataclass(frozen=True)
class LifecycleImported:
    lifecycle: Lifecycle
    created: bool


def is_plain_document(document: Any) -> bool:
    """A plain state-machine document: it has ``actions``, or states named by ``id``."""
    if not isinstance(document, dict):
        return False
    if "actions" in document:
        return True
    states = document.get("states")
    return (
        "transitions" not in document
        and isinstance(states, list)
        and any(isinstance(s, dict) and "id" in s and "key" not in s for s in states)
    )


def _renamed(item: Any, keys: dict[str, str], path: str) -> tuple[Any, list[Issue]]:
    if not isinstance(item, dict):
        return item, []
    issues = [
        Issue(f"{path}.{k}", IssueCode.UNKNOWN_KEY, f"unknown key '{k}'")
        for k in sorted(set(item) - set(keys))
    ]
    return {keys[k]: v for k, v in item.items() if k in keys}, issues


def plain_document(plain: dict[str, Any]) -> tuple[dict[str, Any], list[Issue]]:
    """The lifecycle document of a plain one, and the plain shape's own problems (unknown
    keys); everything else is left to ``lifecycle_issues``."""
    issues: list[Issue] = [
        Issue(k, IssueCode.UNKNOWN_KEY, f"unknown key '{k}'")
        for k in sorted(set(plain) - PLAIN_TOP_KEYS)
    ]
    document: dict[str, Any] = {
        "slug": plain["slug"] if "slug" in plain else _slug_from(plain.get("name")),
        "name": plain.get("name"),
        "description": plain.get("description"),
    }
    for source, target, keys in (
        ("states", "states", PLAIN_STATE_KEYS),
        ("actions", "transitions", PLAIN_ACTION_KEYS),
    ):
        items = plain.get(source)
        if not isinstance(items, list):
            document[target] = items  # refused with its path by the document's validation
            continue
        document[target] = []
        for index, item in enumerate(items):
            renamed, found = _renamed(item, keys, f"{source}[{index}]")
            document[target].append(renamed)
            issues += found
    return document, issues


def _slug_from(name: Any) -> Any:
    return slugify(name)[:100] if isinstance(name, str) else None


def plain_path(path: str) -> str:
    """A path in the translated document -> the same place in the plain one."""
    if path == "transitions":
        return "actions"
    match = _ITEM_PATH.match(path)
    if match is None:
        return path
    kind, index, key, rest = match.groups()
    back = _STATE_BACK if kind == "states" else _ACTION_BACK
    where = f"{'states' if kind == 'states' else 'actions'}[{index}]"
    if key is None:
        return where + rest
    return f"{where}.{back.get(key, key)}{rest}"


def import_document(document: Any) -> tuple[dict[str, Any] | None, list[Issue]]:
    """One document of a file, in either shape: this project's document (to save) and its
    problems, each at its path in the document as written."""
    if not is_plain_document(document):
        issues = lifecycle_issues(document)
        return (document if not issues else None), issues
    translated, issues = plain_document(document)
    for issue in lifecycle_issues(translated):
        if issue.path == "slug" and "slug" not in document:  # the slug was made from the name
            name = document.get("name")
            if isinstance(name, str) and name.strip():  # else the name's own issue says it
                issues.append(
                    Issue("name", IssueCode.REQUIRED, "gives no usable slug: add a 'slug'")
                )
            continue
        issues.append(replace(issue, path=plain_path(issue.path)))
    return (translated if not issues else None), issues


def _at(prefix: str, path: str) -> str:
    if not prefix:
        return path
    return f"{prefix}.{path}" if path else prefix


@transaction.atomic
def lifecycles_import(*, data: Any) -> list[LifecycleImported]:
    """Validate every document of ``data`` (one, or a list), then create or replace them
    all in this transaction; any problem and nothing is saved (``LifecycleInvalid`` lists
    every problem, each at its path in ``data``)."""
    many = isinstance(data, list)
    documents = data if many else [data]
    if many and not documents:
        raise LifecycleInvalid.from_issues(
            [Issue("", IssueCode.INVALID_VALUE, "the file holds no lifecycle")]
        )
    if len(documents) > MAX_DOCUMENTS:
        raise LifecycleInvalid.from_issues(
            [Issue("", IssueCode.TOO_LONG, f"at most {MAX_DOCUMENTS} lifecycles in one import")]
        )
    issues: list[Issue] = []
    valid: list[tuple[str, dict[str, Any]]] = []
    seen: dict[str, str] = {}
    for index, document in enumerate(documents):
        prefix = f"[{index}]" if many else ""
        translated, found = import_document(document)
        issues += [replace(issue, path=_at(prefix, issue.path)) for issue in found]
        if translated is None:
            continue
        slug = translated["slug"]
        if slug in seen:
            where = "slug" if "slug" in document else "name"
            issues.append(
                Issue(
                    _at(prefix, where),
                    IssueCode.INVALID_VALUE,
                    f"the lifecycle '{slug}' is also at {seen[slug] or 'the top'}",
                )
            )
            continue
        seen[slug] = prefix
        valid.append((prefix, translated))
    if issues:
        raise LifecycleInvalid.from_issues(issues)
    imported = []
    for prefix, document in valid:
        existing = Lifecycle.objects.filter(slug=document["slug"]).first()
        try:
            with transaction.atomic():
                lifecycle = lifecycle_save(document=document, lifecycle=existing)
        except LifecycleInvalid as exc:  # e.g. a state that tasks are in would go
            issues += [replace(issue, path=_at(prefix, issue.path)) for issue in exc.issues]
            continue
        imported.append(LifecycleImported(lifecycle=lifecycle, created=existing is None))
    if issues:
        raise LifecycleInvalid.from_issues(issues)
    return imported
