"""Create the demo logins, groups, sample data and workflows. Safe to run again."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand
from django.db import transaction

from workflows import demo


class Command(BaseCommand):
    help = "Create demo users, groups, sample records and workflows (idempotent)."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--quiet", action="store_true", help="Print nothing on success.")

    def handle(self, *args: Any, quiet: bool = False, **options: Any) -> None:
        with transaction.atomic():
            summary = demo.seed()
        if not quiet:
            for line in summary:
                self.stdout.write(line)
            self.stdout.write(
                self.style.SUCCESS(
                    f"Demo login: {demo.DEMO_USERNAME} / {demo.DEMO_PASSWORD} (staff)"
                )
            )
