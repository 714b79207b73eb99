"""Serializers of the task and lifecycle API. Writes validate input here and call a service."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.contrib.auth.models import AnonymousUser, Group
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from tasks_inbox.lifecycles import lifecycle_spec
from tasks_inbox.models import PRIORITY_BY_NAME, Notification, Task, TaskHistory
from tasks_inbox.selectors import (
    REFERENCE_RULE,
    queue_lookup,
    related_entity_type,
    task_available_transitions,
    tasks_visible_to,
    transition_as_dict,
    user_lookup,
)

if TYPE_CHECKING:
    from workflows.models import Lifecycle


@extend_schema_field(OpenApiTypes.STR)
class UserReferenceField(serializers.Field):
    """A user given by id, username or email; unknown or ambiguous references answer
    UNKNOWN_USER / AMBIGUOUS_USER naming this field."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("help_text", "A user id, username or email. " + REFERENCE_RULE)
        super().__init__(**kwargs)

    def to_internal_value(self, data: Any) -> Any:
        return user_lookup(data, field=self.field_name or "")

    def to_representation(self, value: Any) -> Any:
        return value.get_username()


@extend_schema_field(OpenApiTypes.STR)
class QueueReferenceField(serializers.Field):
    """A queue (group) given by id or name; UNKNOWN_QUEUE / AMBIGUOUS_QUEUE otherwise."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("help_text", "A queue id or name. " + REFERENCE_RULE)
        super().__init__(**kwargs)

    def to_internal_value(self, data: Any) -> Group:
        return queue_lookup(data, field=self.field_name or "")

    def to_representation(self, value: Group) -> str:
        return value.name


class UserRefSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    username = serializers.CharField()
    email = serializers.EmailField()


def _user(user: Any) -> dict[str, Any] | None:
    if user is None:
        return None
    return {"id": user.pk, "username": user.get_username(), "email": user.email}


class TaskSerializer(serializers.ModelSerializer):
    """A task as lists show it (no extra query per row)."""

    priority = serializers.SerializerMethodField()
    assignee = serializers.SerializerMethodField()
    queue = serializers.SerializerMethodField()
    lifecycle: serializers.SlugRelatedField[Lifecycle] = serializers.SlugRelatedField(
        slug_field="slug", read_only=True
    )
    is_overdue = serializers.BooleanField(read_only=True)
    related = serializers.SerializerMethodField()

    class Meta:
        model = Task
        fields = [
            "id",
            "title",
            "task_type",
            "priority",
            "state",
            "is_open",
            "outcome",
            "assignee",
            "queue",
            "lifecycle",
            "due_at",
            "sla_due_at",
            "sla_config",
            "sla_started_at",
            "sla_paused_at",
            "sla_warning_at",
            "is_overdue",
            "related",
            "parent",
            "origin_run",
            "created_at",
            "updated_at",
            "closed_at",
        ]
        read_only_fields = fields

    def get_priority(self, task: Task) -> str:
        return task.priority_name

    @extend_schema_field(UserRefSerializer(allow_null=True))
    def get_assignee(self, task: Task) -> dict[str, Any] | None:
        return _user(task.assignee) if task.assignee_id else None

    def get_queue(self, task: Task) -> dict[str, Any] | None:
        return {"id": task.queue_id, "name": task.queue.name} if task.queue else None

    def get_related(self, task: Task) -> dict[str, Any] | None:
        if not task.content_type_id:
            return None
        return {"entity_type": related_entity_type(task), "entity_id": task.object_id}


class CurrentStateSerializer(serializers.Serializer):
    key = serializers.CharField()
    label = serializers.CharField()  # type: ignore[assignment]  # a declared field, not Field.label
    description = serializers.CharField(allow_blank=True)
    is_final = serializers.BooleanField()


class AvailableActionSerializer(serializers.Serializer):
    action = serializers.CharField()
    label = serializers.CharField()  # type: ignore[assignment]  # a declared field, not Field.label
    description = serializers.CharField(allow_blank=True)
    to_state = serializers.CharField()
    required_input = serializers.ListField(child=serializers.CharField())
    completes = serializers.BooleanField()
    cancels = serializers.BooleanField()


class UnavailableActionSerializer(serializers.Serializer):
    action = serializers.CharField()
    label = serializers.CharField()  # type: ignore[assignment]  # a declared field, not Field.label
    description = serializers.CharField(allow_blank=True)
    reason = serializers.ChoiceField(choices=["disabled"])


class TaskActionsSerializer(serializers.Serializer):
    """What the caller can do with a task now (``available-actions/`` and the detail)."""

    state = serializers.CharField(help_text="The current state's key.")
    current_state = CurrentStateSerializer()
    actions = AvailableActionSerializer(many=True)
    unavailable_actions = UnavailableActionSerializer(
        many=True, help_text="Actions out of the current state that are disabled."
    )
    can_claim = serializers.BooleanField()


def task_current_state(task: Task) -> dict[str, Any]:
    state = lifecycle_spec(task.lifecycle).states.get(task.state)
    return {
        "key": task.state,
        "label": state.label if state else task.state,
        "description": state.description if state else "",
        "is_final": state.is_final if state else not task.is_open,
    }


def task_available_actions(task: Task, user: Any) -> list[dict[str, Any]]:
    spec = lifecycle_spec(task.lifecycle)
    return [transition_as_dict(spec, t) for t in task_available_transitions(task, user, spec)]


def task_unavailable_actions(task: Task) -> list[dict[str, Any]]:
    """The disabled actions out of the task's state: listed, never offered."""
    return [
        {"action": t.action, "label": t.label, "description": t.description, "reason": "disabled"}
        for t in lifecycle_spec(task.lifecycle).disabled_leaving(task.state)
    ]


def task_actions(task: Task, user: Any) -> dict[str, Any]:
    """The task's current state and the actions ``user`` may fire now; the disabled actions
    out of the state are listed apart, as unavailable."""
    return {
        "state": task.state,
        "current_state": task_current_state(task),
        "actions": task_available_actions(task, user),
        "unavailable_actions": task_unavailable_actions(task),
        "can_claim": task.is_open and task.assignee_id is None,
    }


class TaskDetailSerializer(TaskSerializer):
    """One task: its description, form, result, who made and ended it, where it came from,
    and its lifecycle now: the current state and the actions the caller may take (the
    request's user, from the serializer context)."""

    created_by = serializers.SerializerMethodField()
    completed_by = serializers.SerializerMethodField()
    origin_step = serializers.SerializerMethodField()
    current_state = serializers.SerializerMethodField()
    available_actions = serializers.SerializerMethodField()
    unavailable_actions = serializers.SerializerMethodField()

    class Meta(TaskSerializer.Meta):
        fields = [
            *TaskSerializer.Meta.fields,
            "description",
            "form",
            "result",
            "created_by",
            "completed_by",
            "origin_step",
            "wait",
            "current_state",
            "available_actions",
            "unavailable_actions",
        ]
        read_only_fields = fields

    @extend_schema_field(CurrentStateSerializer())
    def get_current_state(self, task: Task) -> dict[str, Any]:
        return task_current_state(task)

    @extend_schema_field(AvailableActionSerializer(many=True))
    def get_available_actions(self, task: Task) -> list[dict[str, Any]]:
        """For the request's user; without a request (no one to act), none."""
        request = self.context.get("request")
        return task_available_actions(task, request.user if request else AnonymousUser())

    @extend_schema_field(UnavailableActionSerializer(many=True))
    def get_unavailable_actions(self, task: Task) -> list[dict[str, Any]]:
        return task_unavailable_actions(task)

    def get_created_by(self, task: Task) -> dict[str, Any] | None:
        return _user(task.created_by) if task.created_by_id else None

    def get_completed_by(self, task: Task) -> dict[str, Any] | None:
        return _user(task.completed_by) if task.completed_by_id else None

    def get_origin_step(self, task: Task) -> str | None:
        return task.origin_action_run.step_key if task.origin_action_run is not None else None

    def get_related(self, task: Task) -> dict[str, Any] | None:
        data = super().get_related(task)
        if data is not None:
            target = task.related
            data["label"] = str(target) if target is not None else None
        return data


@extend_schema_field(OpenApiTypes.INT)
class VisibleTaskField(serializers.PrimaryKeyRelatedField):
    """A task id, looked up among the tasks the caller may see (``context["request"]``):
    a task out of sight and a missing one get the same answer, so the field tells nothing
    about tasks the caller cannot see."""

    default_error_messages = {
        "does_not_exist": "No task {pk_value} among the tasks you can see.",
        "incorrect_type": "Expected a task id, got {data_type}.",
    }

    def get_queryset(self) -> Any:
        request = self.context.get("request")
        user = getattr(request, "user", None) or AnonymousUser()
        return tasks_visible_to(user)


class TaskCreateSerializer(serializers.Serializer):
    title = serializers.CharField(max_length=300)
    description = serializers.CharField(required=False, allow_blank=True, default="")
    task_type = serializers.CharField(required=False, allow_blank=True, max_length=64, default="")
    assignee = UserReferenceField(required=False, allow_null=True)
    queue = QueueReferenceField(required=False, allow_null=True)
    routing = serializers.ChoiceField(choices=["least_busy", "claim"], required=False)
    priority = serializers.ChoiceField(choices=list(PRIORITY_BY_NAME), default="medium")
    due_at = serializers.DateTimeField(required=False, allow_null=True)
    lifecycle = serializers.SlugField(required=False, help_text="Default: 'task'.")
    form = serializers.JSONField(required=False)
    parent = VisibleTaskField(  # type: ignore[assignment]  # a declared field, not Field.parent
        required=False, allow_null=True, help_text="A task id among the tasks the caller may see."
    )


class TransitionSerializer(serializers.Serializer):
    action = serializers.CharField(max_length=64)
    input = serializers.JSONField(required=False, default=dict)
    outcome = serializers.CharField(required=False, max_length=64, allow_blank=True)


class CompleteSerializer(serializers.Serializer):
    data = serializers.JSONField(  # type: ignore[assignment]  # a declared field, not .data
        required=False, default=dict, help_text="The form's field values."
    )
    outcome = serializers.CharField(required=False, max_length=64, allow_blank=True)


class ReassignSerializer(serializers.Serializer):
    assignee = UserReferenceField(required=False, allow_null=True)
    queue = QueueReferenceField(required=False, allow_null=True)
    reason = serializers.CharField(required=False, allow_blank=True, default="", max_length=1000)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if not attrs.get("assignee") and not attrs.get("queue"):
            raise serializers.ValidationError({"assignee": ["give an assignee or a queue"]})
        return attrs


class EscalateSerializer(serializers.Serializer):
    reason = serializers.CharField(required=False, allow_blank=True, default="", max_length=1000)
    priority = serializers.ChoiceField(
        choices=list(PRIORITY_BY_NAME), required=False, help_text="Default: one level up."
    )
    assignee = UserReferenceField(required=False, allow_null=True)
    queue = QueueReferenceField(required=False, allow_null=True)


class HistorySerializer(serializers.ModelSerializer):
    actor = serializers.SerializerMethodField()
    at = serializers.DateTimeField(source="created_at")

    class Meta:
        model = TaskHistory
        fields = ["id", "action", "from_state", "to_state", "actor", "input", "at"]

    def get_actor(self, row: TaskHistory) -> dict[str, Any] | None:
        return _user(row.actor) if row.actor_id else None


class LifecycleDocumentSerializer(serializers.Serializer):
    """A lifecycle document; the content is validated whole by the lifecycle service,
    which names every JSON path at fault."""

    slug = serializers.CharField(required=False)
    name = serializers.CharField(required=False)
    description = serializers.CharField(required=False, allow_blank=True)
    states = serializers.JSONField(required=False)
    transitions = serializers.JSONField(required=False)


class ClaimSerializer(serializers.Serializer):
    """Claiming takes no input: the caller becomes the assignee."""


class QueueSerializer(serializers.Serializer):
    """A queue the caller works in or manages, with counts of its open tasks."""

    id = serializers.IntegerField(read_only=True)
    name = serializers.CharField(read_only=True)
    routing = serializers.SerializerMethodField()
    description = serializers.SerializerMethodField()
    is_member = serializers.SerializerMethodField()
    is_manager = serializers.SerializerMethodField()
    member_count = serializers.IntegerField(read_only=True)
    open_count = serializers.IntegerField(read_only=True)
    claimable_count = serializers.IntegerField(read_only=True)
    overdue_count = serializers.IntegerField(read_only=True)

    def _settings(self, group: Group) -> Any:
        return getattr(group, "queue_settings", None)

    def get_routing(self, group: Group) -> str:
        queue = self._settings(group)
        return queue.routing if queue is not None else "least_busy"

    def get_description(self, group: Group) -> str:
        queue = self._settings(group)
        return queue.description if queue is not None else ""

    def get_is_member(self, group: Group) -> bool:
        return group.pk in self.context.get("member_ids", ())

    def get_is_manager(self, group: Group) -> bool:
        return group.pk in self.context.get("managed_ids", ())


class NotificationSerializer(serializers.ModelSerializer):
    is_read = serializers.BooleanField(read_only=True)

    class Meta:
        model = Notification
        fields = ["id", "message", "link", "is_read", "read_at", "created_at"]
        read_only_fields = fields


class NotificationReadSerializer(serializers.Serializer):
    """Marking read takes no input."""


class MarkedReadSerializer(serializers.Serializer):
    marked = serializers.IntegerField(help_text="How many notifications were unread.")
    unread = serializers.IntegerField(help_text="Unread notifications left.")


class UnreadCountSerializer(serializers.Serializer):
    unread = serializers.IntegerField()


class TaskOutOfSightSerializer(serializers.Serializer):
    """What a reassign or escalate answers when it carried the task out of the caller's
    sight: it happened (committed), and the caller no longer sees the task."""

    id = serializers.IntegerField()
    reassigned = serializers.BooleanField(required=False)
    escalated = serializers.BooleanField(required=False)
    visible = serializers.BooleanField(help_text="Always false: the task is out of your sight.")
