"""``enqueue_export``: a CSV of a registered model's exportable fields, stored and mailed.

Config: ``entity_type`` (a registered model), ``export_type`` (``csv``), ``filters``
(``{"created_at__gte": "{{today-30}}", "status": "qualified"}``: only on the model's
``exportable`` fields and only with the lookups in ``SAFE_LOOKUPS``), ``fields`` (a subset
of the exportable fields; default all of them), ``email_to`` (who gets the link) and
``run_as`` (see below).

Who the rows are chosen for, decided when the export runs (not when it was configured):

- the run's actor (the user of the event that started it: ``Run.event.actor``);
- with no actor (a schedule, a system event), the active user named by ``run_as``, if
  the step sets it; an actor always wins over ``run_as``, so a workflow started by a
  person never exports more than that person may see;
- otherwise nobody, and "nobody" sees only what the registration's visibility hook
  allows for no user (for the CRM models: nothing).

Active staff see every row; other users what ``automation.registry.visible_rows`` allows.

Execution: rows are streamed (``iterator(chunk_size=BATCH_SIZE)``, in key order), so memory
does not grow with the export; every full batch is stored as a part in Django's default
storage, and the ActionRun's ``progress`` (rows written / total, the parts, the last key
written) is written in its own short transaction after it, visible from outside and serving
as the step's heartbeat. An attempt interrupted at row 100,000 of 400,000 (its worker
killed, a retry) continues after its last stored batch, not from row 0. At the end the
parts and the last batch are joined into the file and the parts deleted; the file is saved
to Django's default storage under ``exports/`` with an unguessable name, and the link is
mailed. Cells that a spreadsheet
would read as a formula (``=``, ``+``, ``-``, ``@``...) are prefixed with ``'``.
"""

from __future__ import annotations

import csv
import io
import logging
import secrets
import shutil
import tempfile
from typing import Any
from urllib.parse import urljoin

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.files import File
from django.core.files.storage import default_storage
from django.db import models
from django.db.models import Q
from django.urls import reverse
from django.utils import timezone

from automation.actions import (
    StepConfigCode,
    StepContext,
    StepFailed,
    StepResult,
    dry_run_for,
    object_schema,
    step_type,
)
from automation.actions.entities import entity_type_issues, registration
from automation.actions.mailing import (
    ADDRESS_LIST_SCHEMA,
    already_sent,
    parse_addresses,
    send_message,
)
from automation.registry import (
    MASKED,
    ModelRegistration,
    json_value,
    visible_rows,
)
from automation.templating import Mode
from config.issues import Issue

logger = logging.getLogger(__name__)

BATCH_SIZE = 2000
MAX_IN_ITEMS = 1000
SAFE_LOOKUPS = frozenset(
    {"exact", "iexact", "gte", "lte", "gt", "lt", "in", "contains", "icontains", "isnull"}
)
TEXT_LOOKUPS = frozenset({"iexact", "contains", "icontains"})
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")

SCHEMA = object_schema(
    {
        "export_type": {"enum": ["csv"]},
        "entity_type": {"type": "string", "minLength": 1},
        "filters": {"type": "object", "maxProperties": 30},
        "fields": {
            "type": "array",
            "items": {"type": "string", "minLength": 1},
            "minItems": 1,
            "maxItems": 200,
        },
        "email_to": ADDRESS_LIST_SCHEMA,
        "run_as": {"type": "string", "minLength": 1, "maxLength": 150},
    },
    required=["entity_type"],
)
RENDER_MODES: dict[str, Mode] = {"email_to": "header", "run_as": "header"}


# --- what to export -------------------------------------------------------------------


def filter_key_problem(reg: ModelRegistration, key: str) -> str | None:
    """Why ``key`` may not be used as a filter, or None."""
    field, _, lookup = str(key).partition("__")
    lookup = lookup or "exact"
    if field not in reg.exportable:
        return (
            f"'{field}' is not an exportable field of {reg.name} "
            f"(exportable: {', '.join(reg.exportable) or 'none'})"
        )
    if lookup not in SAFE_LOOKUPS:
        return (
            f"lookup '{lookup}' is not allowed (allowed: "
            f"{', '.join(sorted(SAFE_LOOKUPS))}; one lookup on the field itself)"
        )
    if reg.model._meta.get_field(field).get_lookup(lookup) is None:  # type: ignore[union-attr]
        return f"lookup '{lookup}' does not apply to the field '{field}'"
    return None


def check_config(config: dict[str, Any], path: str) -> list[Issue]:
    """Filters and fields checked against the registration when it is known on save."""
    reg, issues = entity_type_issues(config, path)
    if reg is None:
        return issues
    filters = config.get("filters")
    if isinstance(filters, dict):
        for key in filters:
            problem = filter_key_problem(reg, key)
            if problem:
                issues.append(
                    Issue(f"{path}.filters.{key}", StepConfigCode.INVALID_FILTER, problem)
                )
    fields = config.get("fields")
    if isinstance(fields, list):
        for index, field in enumerate(fields):
            if field not in reg.exportable:
                issues.append(
                    Issue(
                        f"{path}.fields[{index}]",
                        StepConfigCode.NOT_EXPORTABLE,
                        f"'{field}' is not an exportable field of {reg.name}",
                    )
                )
    if not reg.exportable:
        issues.append(
            Issue(
                f"{path}.entity_type",
                StepConfigCode.NOT_EXPORTABLE,
                f"{reg.name} has no exportable fields",
            )
        )
    return issues


def export_fields(reg: ModelRegistration, requested: Any) -> list[models.Field]:
    names = list(requested) if requested else list(reg.exportable)
    if not names:
        raise StepFailed(f"{reg.name} has no exportable fields", code="NOT_EXPORTABLE")
    for name in names:
        if name not in reg.exportable:
            raise StepFailed(
                f"fields: '{name}' is not an exportable field of {reg.name}", code="INVALID_FIELD"
            )
    return [reg.model._meta.get_field(name) for name in names]  # type: ignore[misc]


def _clean_value(field: models.Field, lookup: str, value: Any, key: str) -> Any:
    if lookup == "isnull":
        if not isinstance(value, bool):
            raise StepFailed(f"filters.{key}: expects true or false", code="INVALID_FILTER")
        return value
    if lookup == "in":
        if not isinstance(value, list) or len(value) > MAX_IN_ITEMS:
            raise StepFailed(
                f"filters.{key}: expects a list of at most {MAX_IN_ITEMS} values",
                code="INVALID_FILTER",
            )
        return [_clean_value(field, "exact", item, key) for item in value]
    if value is not None and not isinstance(value, str | int | float | bool):
        raise StepFailed(f"filters.{key}: expects a single value", code="INVALID_FILTER")
    if lookup in TEXT_LOOKUPS or value is None:
        return value
    target = field.target_field if field.is_relation else field  # type: ignore[attr-defined]
    try:
        cleaned = target.to_python(value)
    except ValidationError as exc:
        raise StepFailed(
            f"filters.{key}: {'; '.join(exc.messages)}", code="INVALID_FILTER"
        ) from None
    if isinstance(target, models.DateTimeField) and timezone.is_naive(cleaned):
        cleaned = timezone.make_aware(cleaned)
    return cleaned


def export_filter(reg: ModelRegistration, filters: Any) -> Q:
    """The rendered ``filters`` as a Q, every key and value checked."""
    if filters in (None, ""):
        return Q()
    if not isinstance(filters, dict):
        raise StepFailed("filters must be an object", code="INVALID_FILTER")
    condition = Q()
    for key, value in filters.items():
        problem = filter_key_problem(reg, key)
        if problem:
            raise StepFailed(f"filters.{key}: {problem}", code="INVALID_FILTER")
        name, _, lookup = str(key).partition("__")
        field = reg.model._meta.get_field(name)
        cleaned = _clean_value(field, lookup or "exact", value, key)  # type: ignore[arg-type]
        condition &= Q(**{f"{name}__{lookup or 'exact'}": cleaned})
    return condition


def export_user(ctx: StepContext) -> tuple[Any, str]:
    """Whose visibility applies: the run's actor, else ``run_as``, else nobody."""
    if ctx.run is not None:
        actor = ctx.run.event.actor
    else:  # a dry run: the sample event's actor
        actor_id = (ctx.context.get("actor") or {}).get("id")
        actor = (
            get_user_model()._default_manager.filter(pk=actor_id).first()
            if isinstance(actor_id, int)
            else None
        )
    if actor is not None:
        return actor, "actor"
    run_as = ctx.config.get("run_as")
    if run_as:
        user = (
            get_user_model()
            ._default_manager.filter(
                **{get_user_model().USERNAME_FIELD: str(run_as)}, is_active=True
            )
            .first()
        )
        if user is None:
            raise StepFailed(f"run_as: no active user '{run_as}'", code="UNKNOWN_USER")
        return user, "run_as"
    return None, "no user"


def plan(ctx: StepContext) -> dict[str, Any]:
    """Everything about the export but the rows themselves (reads only)."""
    config = ctx.config
    if (config.get("export_type") or "csv") != "csv":
        raise StepFailed("export_type must be 'csv'", code="INVALID_CONFIG")
    reg = registration(config["entity_type"])
    fields = export_fields(reg, config.get("fields"))
    condition = export_filter(reg, config.get("filters"))
    user, basis = export_user(ctx)
    queryset = visible_rows(reg, user).filter(condition).order_by("pk")
    return {
        "registration": reg,
        "fields": fields,
        "queryset": queryset,
        "user": user,
        "basis": basis,
        "email_to": parse_addresses(config.get("email_to"), "email_to", required=False),
    }


def _describe(planned: dict[str, Any]) -> dict[str, Any]:
    user = planned["user"]
    return {
        "entity_type": planned["registration"].name,
        "fields": [f.name for f in planned["fields"]],
        "visible_to": user.get_username() if user is not None else None,
        "visibility": (
            "all rows (staff)"
            if user is not None and user.is_staff and user.is_active
            else "rows the registration lets this user see"
            if user is not None
            else "rows the registration allows without a user"
        ),
        "user_from": planned["basis"],
        "email_to": planned["email_to"],
    }


# --- writing --------------------------------------------------------------------------


def _cell(value: Any) -> Any:
    if isinstance(value, str):
        return "'" + value if value.startswith(FORMULA_START) else value
    value = json_value(value)
    return "" if value is None else value


class _Progress:
    """Rows written / total, committed on its own after every batch (also a heartbeat).

    With the rows, it records where the export is: the batches already stored (``parts``)
    and the last key they hold (``last_pk``), so an attempt that was interrupted (a worker
    killed, a retry) continues after its last stored batch instead of from the first row.
    """

    def __init__(self, ctx: StepContext, total: int, resumed: dict[str, Any] | None = None) -> None:
        self.ctx = ctx
        self.data: dict[str, Any] = {
            "phase": "writing",
            "rows_written": 0,
            "total": total,
            "percent": 0 if total else 100,
            "parts": [],
            "last_pk": None,
        }
        if resumed:
            self.data.update(
                rows_written=resumed["rows_written"],
                parts=resumed["parts"],
                last_pk=resumed["last_pk"],
                resumed_at=resumed["rows_written"],
            )

    def save(self, **changes: Any) -> None:
        from automation.models import ActionRun, StepStatus

        self.data.update(changes)
        total = self.data["total"]
        self.data["percent"] = round(100 * self.data["rows_written"] / total, 1) if total else 100
        if self.ctx.action_run is None:
            return
        updated = ActionRun.objects.filter(
            pk=self.ctx.action_run.pk,
            status=StepStatus.RUNNING,
        ).update(progress=dict(self.data), updated_at=timezone.now())
        if not updated:
            raise StepFailed(
                "the step was cancelled or taken over while exporting", code="EXPORT_ABANDONED"
            )


def resumable(ctx: StepContext, fields: list[models.Field]) -> dict[str, Any] | None:
    """What an earlier, interrupted attempt of this step stored, if it can be continued:
    its batches for the same columns, every one of them still in storage."""
    previous = (ctx.action_run.progress if ctx.action_run is not None else None) or {}
    parts = previous.get("parts")
    if (
        not parts
        or previous.get("phase") not in ("writing", "saving")
        or previous.get("last_pk") is None
        or previous.get("fields") != [f.name for f in fields]
    ):
        return None
    if not all(default_storage.exists(name) for name in parts):
        return None
    return previous


def _text_file() -> tuple[Any, io.TextIOWrapper]:
    raw = tempfile.TemporaryFile("w+b")  # noqa: SIM115  (closed by the caller)
    return raw, io.TextIOWrapper(raw, encoding="utf-8", newline="")


def write_parts(
    queryset: models.QuerySet,
    fields: list[models.Field],
    progress: _Progress,
    part_prefix: str,
    masked: tuple[str, ...] = (),
) -> Any:
    """Stream the rows after ``progress``'s ``last_pk``: each full batch is stored as a part
    and recorded in the progress; returns the last, partial batch (a binary temp file).
    The registration's ``masked`` fields are written as ``MASKED``."""
    hidden = [f.name in masked for f in fields]
    last_pk = progress.data["last_pk"]
    if last_pk is not None:
        queryset = queryset.filter(pk__gt=last_pk)
    rows = progress.data["rows_written"]
    raw, text = _text_file()
    writer = csv.writer(text)
    in_batch = 0
    for row in queryset.values_list(*[f.attname for f in fields], "pk").iterator(
        chunk_size=BATCH_SIZE
    ):
        writer.writerow(
            [
                MASKED if hide and value is not None else _cell(value)
                for hide, value in zip(hidden, row[:-1], strict=True)
            ]
        )
        rows += 1
        in_batch += 1
        if in_batch == BATCH_SIZE:
            text.flush()
            raw.seek(0)
            index = len(progress.data["parts"])
            name = default_storage.save(f"{part_prefix}-{index:05d}.part", File(raw, name="part"))
            text.detach()
            raw.close()
            progress.save(
                rows_written=rows,
                last_pk=json_value(row[-1]),
                parts=[*progress.data["parts"], name],
            )
            raw, text = _text_file()
            writer = csv.writer(text)
            in_batch = 0
    text.flush()
    text.detach()
    progress.data["rows_written"] = rows
    raw.seek(0)
    return raw


def write_csv(fields: list[models.Field], parts: list[str], tail: Any, out: Any) -> None:
    """The header, the stored parts in order, then the last batch, into ``out`` (binary)."""
    header = io.StringIO()
    csv.writer(header).writerow([f.name for f in fields])
    out.write(header.getvalue().encode("utf-8"))
    for name in parts:
        with default_storage.open(name, "rb") as part:
            shutil.copyfileobj(part, out)
    shutil.copyfileobj(tail, out)


def _export_record(ctx: StepContext, planned: dict[str, Any]) -> Any:
    from automation.models import Export

    assert ctx.action_run is not None
    defaults = {
        "entity_type": planned["registration"].name,
        "filters": (ctx.step.get("config") or {}).get("filters") or {},
        "fields": [f.name for f in planned["fields"]],
        "requested_by": planned["user"],
    }
    export, created = Export.objects.get_or_create(
        action_run_id=ctx.action_run.pk, defaults=defaults
    )
    if not created:
        for name, value in defaults.items():
            setattr(export, name, value)
    return export


def _link(export: Any) -> str:
    """The download page, which checks who asks (the file itself is not served)."""
    path = reverse("export-download", args=[export.pk])
    return urljoin(settings.SITE_URL.rstrip("/") + "/", path.lstrip("/"))


def _result(export: Any, planned: dict[str, Any], total: int, mail: Any) -> dict[str, Any]:
    return {
        **_describe(planned),
        "export_id": export.pk,
        "file": export.file.name,
        "url": _link(export),
        "rows": export.row_count,
        "total": total,
        "email": mail,
    }


@step_type(
    "enqueue_export",
    schema=SCHEMA,
    atomic=False,
    label="Export to CSV",
    render_modes=RENDER_MODES,
    check=check_config,
    default_retry={"max_attempts": 3, "backoff_seconds": 60, "max_backoff_seconds": 900},
)
def enqueue_export(ctx: StepContext) -> StepResult:
    """Write the CSV in batches with progress, store it, and mail the link."""
    planned = plan(ctx)
    export = _export_record(ctx, planned)
    if export.finished_at and export.file and already_sent(ctx):
        # A redelivery after the link went out: the export is done, keep that one.
        mail = already_sent(ctx)
        return StepResult(
            output={**_result(export, planned, export.row_count, mail), "already_done": True}
        )
    reg = planned["registration"]
    total = planned["queryset"].count()
    resumed = resumable(ctx, planned["fields"])
    progress = _Progress(ctx, total, resumed)
    progress.save(fields=[f.name for f in planned["fields"]])
    stamp = timezone.now()
    name = (
        f"exports/{reg.name}/{stamp:%Y/%m}/{reg.name}-{stamp:%Y%m%d-%H%M%S}-"
        f"{secrets.token_urlsafe(16)}.csv"
    )
    part_prefix = (
        f"exports/parts/{ctx.action_run.pk if ctx.action_run else 0}-{secrets.token_urlsafe(8)}"
    )
    with (
        write_parts(
            planned["queryset"],
            planned["fields"],
            progress,
            part_prefix,
            planned["registration"].masked,
        ) as tail,
        tempfile.TemporaryFile("w+b") as raw,
    ):
        rows = progress.data["rows_written"]
        progress.save(phase="saving", rows_written=rows, total=max(total, rows))
        write_csv(planned["fields"], progress.data["parts"], tail, raw)
        raw.seek(0)
        if export.file:
            export.file.delete(save=False)  # an earlier, unfinished attempt's file
        # The name is on the row before the file exists: if this process dies once the file
        # is written, the next attempt finds it there and deletes it; none is left behind.
        export.file.name = name
        export.save(update_fields=["file"])
        export.file.name = default_storage.save(name, File(raw, name=name))
    for part in progress.data["parts"]:
        default_storage.delete(part)
    progress.data["parts"] = []
    export.row_count = rows
    export.finished_at = timezone.now()
    export.save()
    logger.info("export %s of %s: %s rows to %s", export.pk, reg.name, rows, export.file.name)
    mail = None
    if planned["email_to"]:
        progress.save(phase="mailing")
        mail = send_message(
            ctx,
            to=planned["email_to"],
            subject=f"Your {reg.name} export is ready ({rows} rows)",
            text_body=(
                f"The {reg.name} export you asked for is ready: {rows} rows.\n\n"
                f"Download it here:\n{_link(export)}\n"
            ),
        )
    from automation.models import ActionRun

    ActionRun.objects.filter(pk=ctx.action_run.pk).update(  # type: ignore[union-attr]
        progress={
            **progress.data,
            "phase": "done",
            **(
                {"email_sent": {"message_id": mail["message_id"], "at": mail["sent_at"]}}
                if mail
                else {}
            ),
        },
        updated_at=timezone.now(),
    )
    return StepResult(output=_result(export, planned, total, mail))


@dry_run_for("enqueue_export")
def enqueue_export_dry_run(ctx: StepContext) -> dict[str, Any]:
    planned = plan(ctx)
    return {
        "would": "export a CSV and mail its link",
        **_describe(planned),
        "rows": planned["queryset"].count(),
        "filters": ctx.config.get("filters") or {},
    }
