"""Create or replace lifecycles from a JSON file; all or nothing."""

from __future__ import annotations

import json
import sys
from typing import Any

from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from tasks_inbox.lifecycle_import import lifecycles_import
from tasks_inbox.lifecycles import LifecycleInvalid


class Command(BaseCommand):
    help = (
        "Import lifecycles from a JSON file: one document or a list, each in this "
        "project's lifecycle shape or the plain state-machine shape ({name, states: "
        "[{id, name, is_initial, is_final, enabled, description}], actions: [{id, name, "
        "enabled, from_states, to_state, description}]}; a state may say pauses_sla, an "
        "action on_claim or on_complete). Every document is validated "
        "whole; if any is invalid nothing is imported. A lifecycle whose slug exists is "
        "replaced."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("path", help="A JSON file, or - for stdin.")
        parser.add_argument(
            "--dry-run",
            action="store_true",
            help="Validate (and try the saves) without keeping anything.",
        )

    def handle(self, *args: Any, path: str, dry_run: bool, **options: Any) -> None:
        try:
            if path == "-":
                raw = sys.stdin.read()
            else:
                with open(path, encoding="utf-8") as handle:
                    raw = handle.read()
            data = json.loads(raw)
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise CommandError(f"cannot read {path}: {exc}") from exc
        try:
            with transaction.atomic():
                imported = lifecycles_import(data=data)
                report = [
                    f"{item.lifecycle.slug}: {'created' if item.created else 'replaced'} "
                    f"({item.lifecycle.states.count()} states, "
                    f"{item.lifecycle.transitions.count()} actions)"
                    for item in imported
                ]
                if dry_run:
                    transaction.set_rollback(True)
        except LifecycleInvalid as exc:
            lines = [
                f"{where}: {message}" if where else message
                for where, messages in exc.fields.items()
                for message in messages
            ]
            raise CommandError("nothing imported:\n" + "\n".join(lines)) from None
        for line in report:
            self.stdout.write(line)
        if dry_run:
            self.stdout.write(
                self.style.SUCCESS(
                    f"{len(imported)} lifecycle(s) are valid; nothing was saved (--dry-run)"
                )
            )
