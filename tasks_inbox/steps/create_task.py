"""``create_task``: a human step. Creates a task in the inbox, optionally waiting for it.

Config (string values templated)::

    {"title": "Follow up with {{lead.company_name}}", "description": "...",
     "assignee": "{{lead.owner.email}}",       # a user id, username or email
     "queue": "Sales",                         # a group (name or id); or both
     "routing": "least_busy" | "claim",        # default: the queue's setting
     "priority": "high", "due_date": "{{today+2}}", "task_type": "follow_up",
     "lifecycle": "task", "form": {"fields": [...]},
     "entity_type": "lead", "entity_id": "{{lead.id}}",   # the related object
     "parent": 12, "wait": true}

With ``wait`` the run parks on ``task:<id>`` until the task reaches a final state; then
``steps.<key>`` holds ``state``, ``outcome``, ``result`` (the submitted form data) and
``completed_by``. A cancelled task fails the step (code TASK_CANCELLED).

The task commits in the transaction of the step's ActionRun, and a step runs at most one
task (``Task.origin_action_run`` is unique): a repeated execution finds the task it made.
"""

from __future__ import annotations

from datetime import date, datetime, time
from typing import Any

from django.contrib.auth.models import Group, User
from django.utils import timezone

from automation.actions import (
    StepConfigCode,
    StepContext,
    StepFailed,
    StepResult,
    dry_run_for,
    object_schema,
    step_type,
    templated,
)
from automation.actions.entities import entity, entity_type_issues, is_templated, registration
from automation.events import actor_context
from config.errors import DomainError
from config.issues import Issue, IssueCode
from config.references import group_named, users_named
from tasks_inbox.form_schema import form_issues
from tasks_inbox.lifecycles import BUILTIN_DOCUMENTS, lifecycle_spec
from tasks_inbox.models import PRIORITY_BY_NAME, Task
from tasks_inbox.services import task_create
from workflows.models import Lifecycle

PRIORITIES = list(PRIORITY_BY_NAME)

SCHEMA = object_schema(
    {
        "title": {"type": "string", "minLength": 1, "maxLength": 300},
        "description": {"type": "string", "maxLength": 20000},
        "assignee": {"type": ["string", "integer", "null"]},
        "queue": {"type": ["string", "integer", "null"]},
        "routing": templated({"enum": ["least_busy", "claim"]}),
        "priority": templated({"enum": PRIORITIES}),
        "due_date": {"type": ["string", "null"]},
        "task_type": {"type": "string", "maxLength": 64},
        "lifecycle": {"type": "string", "minLength": 1},
        "form": {"type": "object"},
        "entity_type": {"type": "string", "minLength": 1},
        "entity_id": templated({"type": ["integer", "string"]}),
        "parent": templated({"type": ["integer", "string"]}),
        "wait": templated({"type": "boolean"}),
    },
    required=["title"],
)


def check_config(config: dict[str, Any], path: str) -> list[Issue]:
    """Beyond the schema: someone must get the task, the form must be well-formed, and a
    related object needs both its type and id."""
    issues: list[Issue] = []
    if not config.get("assignee") and not config.get("queue"):
        issues.append(Issue(f"{path}.assignee", IssueCode.REQUIRED, "give an assignee or a queue"))
    form = config.get("form")
    if isinstance(form, dict):
        issues += form_issues(form, path=f"{path}.form")
    if bool(config.get("entity_type")) != bool(config.get("entity_id")):
        issues.append(
            Issue(f"{path}.entity_id", IssueCode.REQUIRED, "entity_type and entity_id go together")
        )
    return issues + _reference_issues(config, path)


def _reference_issues(config: dict[str, Any], path: str) -> list[Issue]:
    """What the config names and is known on save must exist: the assignee, the queue, the
    lifecycle, the related object's type; a due date must parse."""
    issues = entity_type_issues(config, path)[1]
    checks: list[tuple[str, Any, str]] = [
        ("assignee", resolve_user, StepConfigCode.UNKNOWN_USER),
        ("queue", resolve_queue, StepConfigCode.UNKNOWN_QUEUE),
        ("due_date", parse_due, StepConfigCode.INVALID_DATE),
    ]
    for key, resolve, code in checks:
        value = config.get(key)
        if value is None or is_templated(value):
            continue
        try:
            resolve(value)
        except StepFailed as exc:
            issues.append(Issue(f"{path}.{key}", code, exc.message))
    lifecycle = config.get("lifecycle")
    known = (
        not isinstance(lifecycle, str)
        or is_templated(lifecycle)
        or lifecycle in BUILTIN_DOCUMENTS
        or Lifecycle.objects.filter(slug=lifecycle).exists()
    )
    if not known:
        issues.append(
            Issue(
                f"{path}.lifecycle",
                StepConfigCode.UNKNOWN_LIFECYCLE,
                f"unknown lifecycle {lifecycle!r}",
            )
        )
    return issues


def resolve_user(value: Any) -> User | None:
    """The active user an id, username or email names (``config.references``); None
    when empty."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    found = users_named(value, active_only=True)
    if not found:
        raise StepFailed(
            f"no active user {value!r} to assign the task to", code="ASSIGNEE_NOT_FOUND"
        )
    if len(found) > 1:
        raise StepFailed(
            f"{value!r} names several users; give the id or the username",
            code="AMBIGUOUS_ASSIGNEE",
        )
    return found[0]


def resolve_queue(value: object) -> Group | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    found = group_named(value)
    if found is None:
        raise StepFailed(f"no queue (group) {value!r}", code="QUEUE_NOT_FOUND")
    return found


def parse_due(value: Any) -> datetime | None:
    """An ISO date (due at the end of that day, in the project's time zone) or datetime."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    text = str(value).strip()
    try:
        if len(text) == 10:
            day = date.fromisoformat(text)
            end = datetime.combine(day, time(23, 59, 59))
            return timezone.make_aware(end)
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise StepFailed(
            f"due_date {value!r} is not an ISO date or datetime", code="INVALID_DUE_DATE"
        ) from None
    if timezone.is_naive(moment):
        moment = timezone.make_aware(moment)
    return moment


def _flag(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in {"true", "1", "yes", "on"}
    return bool(value)


def _parent(value: Any) -> Task | None:
    if value in (None, ""):
        return None
    try:
        return Task.objects.get(pk=int(value))
    except (Task.DoesNotExist, ValueError, TypeError):
        raise StepFailed(f"parent task {value!r} does not exist", code="PARENT_NOT_FOUND") from None


def _output(task: Task) -> dict[str, Any]:
    return {
        "task_id": task.pk,
        "state": task.state,
        "assignee": task.assignee.get_username() if task.assignee is not None else None,
        "queue": task.queue.name if task.queue is not None else None,
        "url": task.get_absolute_url(),
    }


def _existing(ctx: StepContext) -> Task | None:
    """The task this step already made (a repeated execution), if any."""
    if ctx.action_run is None or ctx.action_run.pk is None:
        return None
    task = Task.objects.select_related("lifecycle").filter(origin_action_run=ctx.action_run).first()
    if task is None or task.is_open:
        return task
    state = lifecycle_spec(task.lifecycle).states.get(task.state)
    if state is not None and state.is_cancellation:
        # A retried step after its task was cancelled: the step makes a new task.
        Task.objects.filter(pk=task.pk).update(origin_action_run=None)
        return None
    return task


@step_type(
    "create_task", schema=SCHEMA, label="Create a task", check=check_config, waits="optional"
)
def create_task(ctx: StepContext) -> StepResult:
    """Create a task in the inbox; with ``wait`` the run parks until the task ends."""
    config = ctx.config
    wait = _flag(config.get("wait", False))
    task = _existing(ctx)
    if task is None:
        related = None
        if config.get("entity_type") and config.get("entity_id") not in (None, ""):
            related = entity(config["entity_type"], config["entity_id"])
        assignee = resolve_user(config.get("assignee"))
        queue = resolve_queue(config.get("queue"))
        if assignee is None and queue is None:
            raise StepFailed(
                "the task has no assignee and no queue (the assignee rendered empty)",
                code="ASSIGNEE_NOT_FOUND",
            )
        try:
            task = task_create(
                title=str(config["title"]),
                description=str(config.get("description") or ""),
                task_type=str(config.get("task_type") or ""),
                assignee=assignee,
                queue=queue,
                routing=config.get("routing") or None,
                priority=config.get("priority") or "medium",
                due_at=parse_due(config.get("due_date")),
                lifecycle=config.get("lifecycle"),
                form=config.get("form") or None,
                related=related,
                parent=_parent(config.get("parent")),
                origin_action_run=ctx.action_run,
                wait=wait,
            )
        except DomainError as exc:
            raise StepFailed(
                exc.message, code=exc.code, output={"fields": exc.fields} if exc.fields else None
            ) from None
    output = _output(task)
    if wait and task.is_open:
        return StepResult(output=output, wait_for=f"task:{task.pk}")
    if wait:  # it ended before this execution looked (a repeated execution)
        output.update(
            {
                "outcome": task.outcome,
                "result": task.result,
                "completed_by": actor_context(task.completed_by),
            }
        )
    return StepResult(output=output)


@dry_run_for("create_task")
def create_task_dry_run(ctx: StepContext) -> dict[str, Any]:
    config = ctx.config
    if config.get("entity_type"):
        registration(config["entity_type"])
    assignee = resolve_user(config.get("assignee"))
    queue = resolve_queue(config.get("queue"))
    due = parse_due(config.get("due_date"))
    routed = assignee.get_username() if assignee else None
    if assignee is None and queue is not None:
        routed = f"routed in queue {queue.name}"
    return {
        "would": "create a task" + (" and wait for it" if _flag(config.get("wait")) else ""),
        "title": config.get("title"),
        "assignee": routed,
        "queue": queue.name if queue else None,
        "priority": config.get("priority") or "medium",
        "due_at": due.isoformat() if due else None,
        "form_fields": [f.get("name") for f in (config.get("form") or {}).get("fields") or []],
    }
