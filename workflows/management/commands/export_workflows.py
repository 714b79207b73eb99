"""Write workflows as JSON documents (one file, or stdout), for version control.

The output is the list of current (published) versions. With ``--include-drafts`` it is an
object: ``{"workflows": [...current versions...], "drafts": [...drafts...]}``, so drafts
never pass for versions.
"""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from workflows.models import Workflow


class Command(BaseCommand):
    help = "Export workflows as a JSON list of documents (the API's and the admin's format)."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("slugs", nargs="*", help="Only these workflows (default: all).")
        parser.add_argument("--output", "-o", help="Write to this file instead of stdout.")
        parser.add_argument(
            "--include-drafts",
            action="store_true",
            help="Also write the unpublished drafts, under their own key.",
        )

    def handle(
        self, *args: Any, slugs: list[str], output: str | None, include_drafts: bool, **options: Any
    ) -> None:
        workflows = Workflow.objects.select_related("published_version").order_by("slug")
        if slugs:
            workflows = workflows.filter(slug__in=slugs)
            missing = set(slugs) - set(workflows.values_list("slug", flat=True))
            if missing:
                raise CommandError(f"unknown workflows: {', '.join(sorted(missing))}")
        documents = [w.published_version.definition for w in workflows if w.published_version]
        data: Any = documents
        if include_drafts:
            data = {
                "workflows": documents,
                "drafts": [w.draft for w in workflows if w.draft is not None],
            }
        text = json.dumps(data, indent=2, sort_keys=False) + "\n"
        if output:
            with open(output, "w", encoding="utf-8") as handle:
                handle.write(text)
            self.stderr.write(f"exported {len(documents)} workflow(s) to {output}")
        else:
            self.stdout.write(text, ending="")
