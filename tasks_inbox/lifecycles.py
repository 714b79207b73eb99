"""Lifecycles as data: their document, its validation, saving, and the compiled form.

A lifecycle is edited as one JSON document (API, admin), the same shape the rows hold::

    {"slug": "approval", "name": "Approval", "description": "",
     "states": [{"key": "draft", "label": "Draft", "is_initial": true, "is_final": false,
                 "is_enabled": true, "is_cancellation": false, "pauses_sla": false,
                 "description": "Being written"}, ...],
     "transitions": [{"action": "submit", "label": "Submit", "from_states": ["draft"],
                      "to_state": "submitted", "guard": null,
                      "allowed": ["assignee", "creator"], "required_input": [],
                      "unassign": false, "is_enabled": true,
                      "on_claim": false, "on_complete": false,
                      "description": "Send it for approval"}, ...]}

A disabled state cannot be entered; a disabled transition (action) is not offered and is
refused with ``ACTION_DISABLED``.

What a state or a transition means to the engine is declared here too, never read from its
key: a state with ``pauses_sla`` stops the SLA clock while a task is in it (when the SLA
config pauses); a claim fires the ``on_claim`` transition that leaves the task's state (if
any); completing fires the ``on_complete`` one that leaves it, else the first transition into
a final, non-cancelling state; ``is_final`` and ``is_cancellation`` say which states end a
task and which of those abandon it. ``claim`` itself is an operation, not an action name.

``lifecycle_issues`` reports every problem as a ``config.issues.Issue``, e.g.
``Issue("transitions[2].to_state", "UNKNOWN_STATE", "unknown state 'aproved'")``.
``lifecycle_spec`` compiles a stored lifecycle (guards included) once per change and
caches it in the process.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass, field
from typing import Any

from django.db import IntegrityError, transaction

from automation.conditions import CompiledCondition, compile_condition, validate_condition
from config.errors import Conflict, ValidationFailed
from config.issues import Issue, IssueCode
from tasks_inbox.issue_codes import TaskIssueCode
from workflows.models import Lifecycle, LifecycleState, LifecycleTransition

# Who may fire a transition (``allowed``). A workflow step (no actor) may fire any.
ROLES = ("assignee", "queue_member", "manager", "creator", "staff", "anyone")
DEFAULT_ALLOWED = ["assignee", "manager", "staff"]
KEY = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
SLUG = re.compile(r"^[a-z0-9][a-z0-9_-]{0,99}$")
TOP_KEYS = {"slug", "name", "description", "states", "transitions", "id"}
STATE_KEYS = {
    "key",
    "label",
    "is_initial",
    "is_final",
    "is_enabled",
    "is_cancellation",
    "pauses_sla",
    "description",
}
TRANSITION_KEYS = {
    "action",
    "label",
    "from_states",
    "to_state",
    "guard",
    "allowed",
    "required_input",
    "unassign",
    "is_enabled",
    "on_claim",
    "on_complete",
    "description",
}
# The operation a claim is (its history rows carry it); no transition may take its name.
CLAIM_OPERATION = "claim"
MAX_DESCRIPTION = 2000
MAX_STATES = 50
MAX_TRANSITIONS = 200

DEFAULT_TASK_LIFECYCLE = "task"
PLAN_LIFECYCLE = "plan"

# The lifecycles seeded by workflows/migrations/0003_seed_lifecycles.py; recreated from
# here if they were removed (a flushed test database, an admin deleting them).
BUILTIN_DOCUMENTS: dict[str, dict[str, Any]] = {
    DEFAULT_TASK_LIFECYCLE: {
        "slug": "task",
        "name": "Task",
        "description": "The default lifecycle of a task: new, in progress, blocked, "
        "completed, cancelled.",
        "states": [
            {"key": "new", "label": "New", "is_initial": True},
            {"key": "in_progress", "label": "In progress"},
            {"key": "blocked", "label": "Blocked", "pauses_sla": True},
            {"key": "completed", "label": "Completed", "is_final": True},
            {"key": "cancelled", "label": "Cancelled", "is_final": True, "is_cancellation": True},
        ],
        "transitions": [
            {
                "action": "start",
                "label": "Start",
                "from_states": ["new"],
                "to_state": "in_progress",
                "on_claim": True,
            },
            {
                "action": "complete",
                "label": "Complete",
                "from_states": ["in_progress"],
                "to_state": "completed",
                "on_complete": True,
            },
            {
                "action": "block",
                "label": "Block",
                "from_states": ["new", "in_progress"],
                "to_state": "blocked",
                "required_input": ["reason"],
            },
            {
                "action": "resume",
                "label": "Resume",
                "from_states": ["blocked"],
                "to_state": "in_progress",
            },
            {
                "action": "release",
                "label": "Release",
                "from_states": ["in_progress"],
                "to_state": "new",
                "unassign": True,
            },
            {
                "action": "cancel",
                "label": "Cancel",
                "from_states": ["new", "in_progress", "blocked"],
                "to_state": "cancelled",
            },
        ],
    },
    PLAN_LIFECYCLE: {
        "slug": "plan",
        "name": "Plan",
        "description": "A plan groups tasks (their parent): draft, active, archived.",
        "states": [
            {"key": "draft", "label": "Draft", "is_initial": True},
            {"key": "active", "label": "Active"},
            {"key": "archived", "label": "Archived", "is_final": True},
        ],
        "transitions": [
            {
                "action": "activate",
                "label": "Activate",
                "from_states": ["draft"],
                "to_state": "active",
            },
            {
                "action": "archive",
                "label": "Archive",
                "from_states": ["draft", "active"],
                "to_state": "archived",
            },
        ],
    },
}


class LifecycleInvalid(ValidationFailed):
    """A lifecycle document failed validation; ``fields`` maps JSON paths to messages."""


class LifecycleInUse(Conflict):
    code = "LIFECYCLE_IN_USE"
    default_message = "Tasks use this lifecycle."


# --- the document -----------------------------------------------------------------------


def _bool_issue(value: object, path: str) -> list[Issue]:
    if value is not None and not isinstance(value, bool):
        return [Issue(path, IssueCode.INVALID_VALUE, "must be true or false")]
    return []


def _description_issue(value: object, path: str) -> list[Issue]:
    if value is not None and (not isinstance(value, str) or len(value) > MAX_DESCRIPTION):
        return [
            Issue(
                path,
                IssueCode.INVALID_VALUE,
                f"must be a string of at most {MAX_DESCRIPTION} characters",
            )
        ]
    return []


def _key_list_issues(value: object, path: str, what: str) -> list[Issue]:
    if not isinstance(value, list):
        return [Issue(path, IssueCode.INVALID_VALUE, f"must be a list of {what}")]
    issues: list[Issue] = []
    for index, item in enumerate(value):
        if not isinstance(item, str) or not KEY.match(item):
            issues.append(
                Issue(
                    f"{path}[{index}]",
                    IssueCode.INVALID_VALUE,
                    f"must be a {what[:-1]} key (lowercase letters, digits, '_')",
                )
            )
    return issues


def lifecycle_issues(document: object) -> list[Issue]:
    """Every problem of a lifecycle document, each with the JSON path it is at."""
    if not isinstance(document, dict):
        return [Issue("", IssueCode.INVALID_VALUE, "a lifecycle must be a JSON object")]
    issues: list[Issue] = [
        Issue(key, IssueCode.UNKNOWN_KEY, f"unknown key '{key}'")
        for key in sorted(set(document) - TOP_KEYS)
    ]
    slug = document.get("slug")
    if not isinstance(slug, str) or not SLUG.match(slug):
        issues.append(
            Issue(
                "slug",
                IssueCode.INVALID_VALUE,
                "must be lowercase letters, digits, '-' or '_' (max 100)",
            )
        )
    name = document.get("name")
    if not isinstance(name, str) or not name.strip() or len(name) > 200:
        issues.append(
            Issue(
                "name",
                IssueCode.INVALID_VALUE,
                "must be a non-empty string of at most 200 characters",
            )
        )
    if document.get("description") is not None and not isinstance(document["description"], str):
        issues.append(Issue("description", IssueCode.INVALID_VALUE, "must be a string"))

    states = document.get("states")
    if not isinstance(states, list) or not states:
        issues.append(
            Issue("states", IssueCode.INVALID_VALUE, "must be a non-empty list of states")
        )
        states = []
    elif len(states) > MAX_STATES:
        issues.append(Issue("states", IssueCode.TOO_LONG, f"at most {MAX_STATES} states"))
    final: set[str] = set()
    keys: set[str] = set()
    initial: list[str] = []
    for index, state in enumerate(states):
        path = f"states[{index}]"
        if not isinstance(state, dict):
            issues.append(Issue(path, IssueCode.INVALID_VALUE, "a state must be an object"))
            continue
        issues += [
            Issue(f"{path}.{k}", IssueCode.UNKNOWN_KEY, f"unknown key '{k}'")
            for k in sorted(set(state) - STATE_KEYS)
        ]
        key = state.get("key")
        if not isinstance(key, str) or not KEY.match(key):
            issues.append(
                Issue(
                    f"{path}.key",
                    IssueCode.INVALID_VALUE,
                    "must be lowercase letters, digits and '_', starting with a letter (max 64)",
                )
            )
            continue
        if key in keys:
            issues.append(Issue(f"{path}.key", IssueCode.DUPLICATE, f"duplicate state key '{key}'"))
        keys.add(key)
        if state.get("label") is not None and not isinstance(state["label"], str):
            issues.append(Issue(f"{path}.label", IssueCode.INVALID_VALUE, "must be a string"))
        for flag in ("is_initial", "is_final", "is_enabled", "is_cancellation", "pauses_sla"):
            issues += _bool_issue(state.get(flag), f"{path}.{flag}")
        issues += _description_issue(state.get("description"), f"{path}.description")
        if state.get("is_initial") is True:
            initial.append(key)
            if state.get("is_final") is True:
                issues.append(
                    Issue(
                        f"{path}.is_final",
                        IssueCode.INVALID_VALUE,
                        f"the initial state '{key}' cannot be final",
                    )
                )
            if state.get("is_enabled") is False:
                issues.append(
                    Issue(
                        f"{path}.is_enabled",
                        IssueCode.INVALID_VALUE,
                        f"the initial state '{key}' cannot be disabled",
                    )
                )
        if state.get("is_final") is True:
            final.add(key)
        if state.get("is_cancellation") is True and state.get("is_final") is not True:
            issues.append(
                Issue(
                    f"{path}.is_cancellation",
                    IssueCode.INVALID_VALUE,
                    f"only a final state can be a cancellation ('{key}' is not final)",
                )
            )
    if states and len(initial) != 1:
        found = f"found {len(initial)}" + (f": {', '.join(initial)}" if initial else "")
        issues.append(
            Issue("states", IssueCode.INVALID_VALUE, f"exactly one state must be initial ({found})")
        )
    if states and not final:
        issues.append(Issue("states", IssueCode.INVALID_VALUE, "at least one state must be final"))

    transitions = document.get("transitions")
    if transitions is None:
        transitions = []
    if not isinstance(transitions, list):
        issues.append(
            Issue("transitions", IssueCode.INVALID_VALUE, "must be a list of transitions")
        )
        transitions = []
    elif len(transitions) > MAX_TRANSITIONS:
        issues.append(
            Issue("transitions", IssueCode.TOO_LONG, f"at most {MAX_TRANSITIONS} transitions")
        )
    actions: set[str] = set()
    for index, transition in enumerate(transitions):
        issues += _transition_issues(transition, f"transitions[{index}]", keys, final, actions)
    cancelling = {
        s.get("key") for s in states if isinstance(s, dict) and s.get("is_cancellation") is True
    }
    issues += _meaning_issues(transitions, final - cancelling)
    return issues


def _meaning_issues(transitions: list[Any], completing: set[str]) -> list[Issue]:
    """``on_complete`` enters a final, non-cancelling state; from each state at most one
    transition is fired by a claim and at most one by completing."""
    issues: list[Issue] = []
    for flag, what in (("on_claim", "a claim"), ("on_complete", "completing")):
        fired_from: dict[str, str] = {}
        for index, transition in enumerate(transitions):
            if not isinstance(transition, dict) or transition.get(flag) is not True:
                continue
            path = f"transitions[{index}].{flag}"
            action = transition.get("action")
            if flag == "on_complete" and transition.get("to_state") not in completing:
                issues.append(
                    Issue(
                        path,
                        IssueCode.INVALID_VALUE,
                        "only a transition into a final, non-cancelling state",
                    )
                )
            sources = transition.get("from_states")
            for source in sources if isinstance(sources, list) else []:
                if not isinstance(source, str):
                    continue
                if source in fired_from:
                    issues.append(
                        Issue(
                            path,
                            IssueCode.DUPLICATE,
                            f"{what} from '{source}' already fires '{fired_from[source]}'",
                        )
                    )
                else:
                    fired_from[source] = str(action)
    return issues


def _transition_issues(
    transition: object, path: str, keys: set[str], final: set[str], actions: set[str]
) -> list[Issue]:
    if not isinstance(transition, dict):
        return [Issue(path, IssueCode.INVALID_VALUE, "a transition must be an object")]
    issues: list[Issue] = [
        Issue(f"{path}.{k}", IssueCode.UNKNOWN_KEY, f"unknown key '{k}'")
        for k in sorted(set(transition) - TRANSITION_KEYS)
    ]
    action = transition.get("action")
    if not isinstance(action, str) or not KEY.match(action):
        issues.append(
            Issue(
                f"{path}.action",
                IssueCode.INVALID_VALUE,
                "must be lowercase letters, digits and '_', starting with a letter (max 64)",
            )
        )
    elif action == CLAIM_OPERATION:
        issues.append(
            Issue(
                f"{path}.action",
                IssueCode.INVALID_VALUE,
                "'claim' is an operation of its own, not a transition "
                "(it fires the transition marked on_claim)",
            )
        )
    elif action in actions:
        issues.append(Issue(f"{path}.action", IssueCode.DUPLICATE, f"duplicate action '{action}'"))
    else:
        actions.add(action)
    if transition.get("label") is not None and not isinstance(transition["label"], str):
        issues.append(Issue(f"{path}.label", IssueCode.INVALID_VALUE, "must be a string"))
    sources = transition.get("from_states")
    issues += _key_list_issues(sources, f"{path}.from_states", "states")
    if isinstance(sources, list):
        if not sources:
            issues.append(
                Issue(f"{path}.from_states", IssueCode.REQUIRED, "must name at least one state")
            )
        for i, source in enumerate(sources):
            if isinstance(source, str) and KEY.match(source):
                if source not in keys:
                    issues.append(
                        Issue(
                            f"{path}.from_states[{i}]",
                            TaskIssueCode.UNKNOWN_STATE,
                            f"unknown state '{source}'",
                        )
                    )
                elif source in final:
                    issues.append(
                        Issue(
                            f"{path}.from_states[{i}]",
                            IssueCode.INVALID_VALUE,
                            f"no transition may leave the final state '{source}'",
                        )
                    )
    target = transition.get("to_state")
    if not isinstance(target, str) or not target:
        issues.append(Issue(f"{path}.to_state", IssueCode.INVALID_VALUE, "must be a state key"))
    elif target not in keys:
        issues.append(
            Issue(f"{path}.to_state", TaskIssueCode.UNKNOWN_STATE, f"unknown state '{target}'")
        )
    guard = transition.get("guard")
    if guard is not None:
        if not isinstance(guard, dict):
            issues.append(
                Issue(
                    f"{path}.guard", IssueCode.INVALID_VALUE, "must be a condition object or null"
                )
            )
        else:
            issues += validate_condition(guard, path=f"{path}.guard")
    allowed = transition.get("allowed")
    if allowed is not None:
        if not isinstance(allowed, list):
            issues.append(
                Issue(
                    f"{path}.allowed",
                    IssueCode.INVALID_VALUE,
                    f"must be a list of: {', '.join(ROLES)}",
                )
            )
        else:
            for i, role in enumerate(allowed):
                if role not in ROLES:
                    issues.append(
                        Issue(
                            f"{path}.allowed[{i}]",
                            IssueCode.INVALID_VALUE,
                            f"unknown role {role!r} (known: {', '.join(ROLES)})",
                        )
                    )
    required = transition.get("required_input")
    if required is not None:
        if not isinstance(required, list):
            issues.append(
                Issue(
                    f"{path}.required_input",
                    IssueCode.INVALID_VALUE,
                    "must be a list of input field names",
                )
            )
        else:
            for i, name in enumerate(required):
                if not isinstance(name, str) or not KEY.match(name):
                    issues.append(
                        Issue(
                            f"{path}.required_input[{i}]",
                            IssueCode.INVALID_VALUE,
                            "must be a field name (lowercase letters, digits, '_')",
                        )
                    )
    issues += _bool_issue(transition.get("unassign"), f"{path}.unassign")
    issues += _bool_issue(transition.get("is_enabled"), f"{path}.is_enabled")
    issues += _bool_issue(transition.get("on_claim"), f"{path}.on_claim")
    issues += _bool_issue(transition.get("on_complete"), f"{path}.on_complete")
    issues += _description_issue(transition.get("description"), f"{path}.description")
    return issues


def lifecycle_normalise(document: dict[str, Any]) -> dict[str, Any]:
    """Defaults filled in and key order fixed (the document must be valid)."""
    return {
        "slug": document["slug"],
        "name": document["name"],
        "description": document.get("description") or "",
        "states": [
            {
                "key": s["key"],
                "label": s.get("label") or s["key"].replace("_", " ").capitalize(),
                "is_initial": bool(s.get("is_initial", False)),
                "is_final": bool(s.get("is_final", False)),
                "is_enabled": bool(s.get("is_enabled", True)),
                "is_cancellation": bool(s.get("is_cancellation", False)),
                "pauses_sla": bool(s.get("pauses_sla", False)),
                "description": s.get("description") or "",
            }
            for s in document["states"]
        ],
        "transitions": [
            {
                "action": t["action"],
                "label": t.get("label") or t["action"].replace("_", " ").capitalize(),
                "from_states": list(t["from_states"]),
                "to_state": t["to_state"],
                "guard": t.get("guard") or None,
                "allowed": list(t["allowed"])
                if t.get("allowed") is not None
                else list(DEFAULT_ALLOWED),
                "required_input": list(t.get("required_input") or []),
                "unassign": bool(t.get("unassign", False)),
                "is_enabled": bool(t.get("is_enabled", True)),
                "on_claim": bool(t.get("on_claim", False)),
                "on_complete": bool(t.get("on_complete", False)),
                "description": t.get("description") or "",
            }
            for t in document.get("transitions") or []
        ],
    }


def lifecycle_document(lifecycle: Lifecycle) -> dict[str, Any]:
    """The lifecycle's document, built from its rows."""
    return {
        "id": lifecycle.pk,
        "slug": lifecycle.slug,
        "name": lifecycle.name,
        "description": lifecycle.description,
        "states": [
            {
                "key": s.key,
                "label": s.label,
                "is_initial": s.is_initial,
                "is_final": s.is_final,
                "is_enabled": s.is_enabled,
                "is_cancellation": s.is_cancellation,
                "pauses_sla": s.pauses_sla,
                "description": s.description,
            }
            for s in lifecycle.states.all()
        ],
        "transitions": [
            {
                "action": t.action,
                "label": t.label,
                "from_states": list(t.from_states),
                "to_state": t.to_state,
                "guard": t.guard,
                "allowed": list(t.allowed),
                "required_input": list(t.required_input),
                "unassign": t.unassign,
                "is_enabled": t.is_enabled,
                "on_claim": t.on_claim,
                "on_complete": t.on_complete,
                "description": t.description,
            }
            for t in lifecycle.transitions.all()
        ],
    }


# --- writes -----------------------------------------------------------------------------


@transaction.atomic
def lifecycle_save(*, document: dict[str, Any], lifecycle: Lifecycle | None = None) -> Lifecycle:
    """Create or replace a lifecycle from its document, validated whole.

    A state that tasks are in cannot be removed (the tasks would be stranded).
    """
    issues = lifecycle_issues(document)
    if issues:
        raise LifecycleInvalid.from_issues(issues)
    data = lifecycle_normalise(document)
    clash = Lifecycle.objects.filter(slug=data["slug"])
    if lifecycle is not None:
        clash = clash.exclude(pk=lifecycle.pk)
    if clash.exists():
        raise LifecycleInvalid.from_issues(
            [Issue("slug", IssueCode.DUPLICATE, f"a lifecycle '{data['slug']}' exists")]
        )
    if lifecycle is None:
        lifecycle = Lifecycle()
    else:
        lifecycle = Lifecycle.objects.select_for_update().get(pk=lifecycle.pk)
        kept = {s["key"] for s in data["states"]}
        stranded = (
            lifecycle.tasks.exclude(state__in=kept)
            .values_list("state", flat=True)
            .distinct()
            .order_by("state")
        )
        stranded_states = list(stranded[:20])
        if stranded_states:
            raise LifecycleInvalid.from_issues(
                [
                    Issue(
                        "states",
                        IssueCode.INVALID_VALUE,
                        f"state '{key}' cannot be removed: tasks are in it",
                    )
                    for key in stranded_states
                ]
            )
    lifecycle.slug = data["slug"]
    lifecycle.name = data["name"]
    lifecycle.description = data["description"]
    lifecycle.save()
    lifecycle.states.all().delete()
    lifecycle.transitions.all().delete()
    LifecycleState.objects.bulk_create(
        [
            LifecycleState(lifecycle=lifecycle, position=position, **state)
            for position, state in enumerate(data["states"])
        ]
    )
    LifecycleTransition.objects.bulk_create(
        [
            LifecycleTransition(lifecycle=lifecycle, position=position, **transition)
            for position, transition in enumerate(data["transitions"])
        ]
    )
    return lifecycle


@transaction.atomic
def lifecycle_delete(*, lifecycle: Lifecycle) -> None:
    if lifecycle.tasks.exists():
        raise LifecycleInUse(f"Tasks use the lifecycle '{lifecycle.slug}'; it cannot be deleted.")
    lifecycle.delete()


def lifecycle_get(slug: str | None = None) -> Lifecycle:
    """The lifecycle named ``slug`` (default: the task lifecycle).

    The built-in ones are recreated from ``BUILTIN_DOCUMENTS`` if they are missing.
    """
    slug = slug or DEFAULT_TASK_LIFECYCLE
    found = Lifecycle.objects.filter(slug=slug).first()
    if found is not None:
        return found
    if slug in BUILTIN_DOCUMENTS:
        try:
            with transaction.atomic():
                return lifecycle_save(document=BUILTIN_DOCUMENTS[slug])
        except (LifecycleInvalid, IntegrityError):  # created meanwhile by another process
            return Lifecycle.objects.get(slug=slug)
    raise LifecycleInvalid.from_issues(
        [Issue("lifecycle", IssueCode.INVALID_VALUE, f"unknown lifecycle '{slug}'")]
    )


# --- the compiled form ------------------------------------------------------------------


@dataclass(frozen=True)
class StateSpec:
    key: str
    label: str
    is_initial: bool
    is_final: bool
    is_enabled: bool
    is_cancellation: bool
    description: str = ""
    pauses_sla: bool = False


@dataclass(frozen=True)
class TransitionSpec:
    action: str
    label: str
    from_states: tuple[str, ...]
    to_state: str
    allowed: tuple[str, ...]
    required_input: tuple[str, ...]
    unassign: bool
    guard: CompiledCondition | None = None
    is_enabled: bool = True
    description: str = ""
    on_claim: bool = False
    on_complete: bool = False


@dataclass(frozen=True)
class LifecycleSpec:
    id: int
    slug: str
    states: dict[str, StateSpec]
    transitions: dict[str, TransitionSpec] = field(default_factory=dict)

    @property
    def initial(self) -> StateSpec:
        return next(s for s in self.states.values() if s.is_initial)

    def leaving(self, state: str) -> list[TransitionSpec]:
        """Enabled transitions out of ``state`` into an enabled state, in their defined
        order."""
        return [
            t
            for t in self.transitions.values()
            if state in t.from_states and t.is_enabled and self.states[t.to_state].is_enabled
        ]

    def disabled_leaving(self, state: str) -> list[TransitionSpec]:
        """Transitions out of ``state`` that are switched off (listed as unavailable)."""
        return [t for t in self.transitions.values() if state in t.from_states and not t.is_enabled]

    def is_completing(self, transition: TransitionSpec) -> bool:
        target = self.states[transition.to_state]
        return target.is_final and not target.is_cancellation

    def pauses_sla(self, state: str) -> bool:
        """The SLA clock stops while a task is in ``state``."""
        found = self.states.get(state)
        return found is not None and found.pauses_sla

    def claim_transition(self, state: str) -> TransitionSpec | None:
        """The transition a claim fires from ``state`` (None: a claim only assigns)."""
        return next((t for t in self.leaving(state) if t.on_claim), None)

    def completion(self, state: str) -> TransitionSpec | None:
        """The transition completing fires from ``state``: the ``on_complete`` one, else the
        first into a final, non-cancelling state (None: it cannot be completed here)."""
        candidates = [t for t in self.leaving(state) if self.is_completing(t)]
        return next((t for t in candidates if t.on_complete), candidates[0] if candidates else None)

    def disabled_completion(self, state: str) -> TransitionSpec | None:
        """A completing transition out of ``state`` that is switched off."""
        return next((t for t in self.disabled_leaving(state) if self.is_completing(t)), None)


_specs: dict[tuple[int, str], LifecycleSpec] = {}
_specs_lock = threading.Lock()


def lifecycle_spec(lifecycle: Lifecycle) -> LifecycleSpec:
    """The compiled lifecycle, cached per process until the lifecycle row changes."""
    key = (lifecycle.pk, lifecycle.updated_at.isoformat())
    spec = _specs.get(key)
    if spec is not None:
        return spec
    states = {
        s.key: StateSpec(
            s.key,
            s.label or s.key,
            s.is_initial,
            s.is_final,
            s.is_enabled,
            s.is_cancellation,
            s.description,
            s.pauses_sla,
        )
        for s in LifecycleState.objects.filter(lifecycle=lifecycle).order_by("position", "id")
    }
    transitions = {}
    for t in LifecycleTransition.objects.filter(lifecycle=lifecycle).order_by("position", "id"):
        guard = compile_condition(t.guard, path="guard") if t.guard else None
        transitions[t.action] = TransitionSpec(
            action=t.action,
            label=t.label or t.action,
            from_states=tuple(t.from_states),
            to_state=t.to_state,
            allowed=tuple(t.allowed),
            required_input=tuple(t.required_input),
            unassign=t.unassign,
            guard=guard,
            is_enabled=t.is_enabled,
            description=t.description,
            on_claim=t.on_claim,
            on_complete=t.on_complete,
        )
    spec = LifecycleSpec(
        id=lifecycle.pk, slug=lifecycle.slug, states=states, transitions=transitions
    )
    with _specs_lock:
        for stale in [k for k in _specs if k[0] == lifecycle.pk]:
            _specs.pop(stale, None)
        _specs[key] = spec
    return spec
