"""Create or update workflows from JSON documents; all or nothing.

The file is a document, a list of documents, or what ``export_workflows --include-drafts``
writes (``{"workflows": [...], "drafts": [...]}``). Every document is written as its
workflow's draft; ``--publish`` publishes the ``workflows`` ones (a plain list is all
``workflows``), while the ``drafts`` ones always stay drafts.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from config.errors import DomainError
from workflows.services import draft_save, workflow_publish


class Command(BaseCommand):
    help = (
        "Import workflows from a JSON file (a document or a list of documents). Each is "
        "validated whole; if any is invalid nothing is imported. Each is saved as its "
        "workflow's draft; with --publish, changed workflows get a new version."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("path", help="A JSON file, or - for stdin.")
        parser.add_argument("--dry-run", action="store_true", help="Validate only.")
        parser.add_argument(
            "--publish",
            action="store_true",
            help="Publish the imported workflows (not the 'drafts' entries).",
        )

    def handle(self, *args: Any, path: str, dry_run: bool, publish: bool, **options: Any) -> None:
        try:
            raw = sys.stdin.read() if path == "-" else open(path, encoding="utf-8").read()  # noqa: SIM115
            data = json.loads(raw)
        except (OSError, json.JSONDecodeError) as exc:
            raise CommandError(f"cannot read {path}: {exc}") from exc
        if isinstance(data, dict) and ("workflows" in data or "drafts" in data):
            versions, drafts = data.get("workflows") or [], data.get("drafts") or []
        else:
            versions, drafts = (data if isinstance(data, list) else [data]), []
        entries = [(d, publish) for d in versions] + [(d, False) for d in drafts]
        errors: list[str] = []
        with transaction.atomic():
            for index, (document, publish_it) in enumerate(entries):
                try:
                    workflow = draft_save(document=document)
                    if publish_it:
                        workflow_publish(workflow=workflow)
                        workflow.refresh_from_db()
                except DomainError as exc:
                    where = document.get("slug") if isinstance(document, dict) else index
                    for field, messages in exc.fields.items() or {"": [exc.message]}.items():
                        errors.append(f"[{where}] {field}: {'; '.join(messages)}")
                    continue
                version = workflow.published_version
                state = "draft" if workflow.has_draft else "no draft"
                self.stdout.write(
                    f"{workflow.slug}: version {version.number if version else '-'}, {state}"
                )
            if errors or dry_run:
                transaction.set_rollback(True)
        if errors:
            raise CommandError("nothing imported:\n" + "\n".join(errors))
        if dry_run:
            self.stdout.write(self.style.SUCCESS(f"{len(entries)} document(s) are valid"))
