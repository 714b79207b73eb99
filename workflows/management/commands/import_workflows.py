"""Create or update workflows from JSON documents; all or nothing."""

from __future__ import annotations

import json
import sys
from typing import Any

from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from config.errors import DomainError
from workflows.services import workflow_save


class Command(BaseCommand):
    help = ("Import workflows from a JSON file (a document or a list of documents). Each is "
            "validated whole; if any is invalid nothing is imported. Changed workflows get a "
            "new version; unchanged ones are left as they are.")

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("path", help="A JSON file, or - for stdin.")
        parser.add_argument("--dry-run", action="store_true", help="Validate only.")

    def handle(self, *args: Any, path: str, dry_run: bool, **options: Any) -> None:
        try:
            raw = sys.stdin.read() if path == "-" else open(path, encoding="utf-8").read()  # noqa: SIM115
            data = json.loads(raw)
        except (OSError, json.JSONDecodeError) as exc:
            raise CommandError(f"cannot read {path}: {exc}") from exc
        documents = data if isinstance(data, list) else [data]
        errors: list[str] = []
        with transaction.atomic():
            for index, document in enumerate(documents):
                try:
                    workflow = workflow_save(document=document)
                except DomainError as exc:
                    where = document.get("slug") if isinstance(document, dict) else index
                    for field, messages in exc.fields.items() or {"": [exc.message]}.items():
                        errors.append(f"[{where}] {field}: {'; '.join(messages)}")
                    continue
                version = workflow.published_version
                self.stdout.write(f"{workflow.slug}: version {version.number if version else '-'}")
            if errors or dry_run:
                transaction.set_rollback(True)
        if errors:
            raise CommandError("nothing imported:\n" + "\n".join(errors))
        if dry_run:
            self.stdout.write(self.style.SUCCESS(f"{len(documents)} document(s) are valid"))
