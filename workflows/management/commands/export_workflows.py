"""Write workflows as JSON documents (one file, or stdout), for version control."""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from workflows.models import Workflow
from workflows.selectors import workflow_definition


class Command(BaseCommand):
    help = "Export workflows as a JSON list of documents (the API's and the admin's format)."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("slugs", nargs="*", help="Only these workflows (default: all).")
        parser.add_argument("--output", "-o", help="Write to this file instead of stdout.")

    def handle(self, *args: Any, slugs: list[str], output: str | None, **options: Any) -> None:
        workflows = Workflow.objects.order_by("slug")
        if slugs:
            workflows = workflows.filter(slug__in=slugs)
            missing = set(slugs) - set(workflows.values_list("slug", flat=True))
            if missing:
                raise CommandError(f"unknown workflows: {', '.join(sorted(missing))}")
        documents = [workflow_definition(w) for w in workflows]
        text = json.dumps(documents, indent=2, sort_keys=False) + "\n"
        if output:
            with open(output, "w", encoding="utf-8") as handle:
                handle.write(text)
            self.stderr.write(f"exported {len(documents)} workflow(s) to {output}")
        else:
            self.stdout.write(text, ending="")
