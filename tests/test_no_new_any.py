"""No new ``Any`` in public signatures: ruff's ANN401 counted per module of the app
packages must not grow past ``tests/any_baseline.json``.

The baseline records what is left to type; a module that loses some lowers its line with
``python -m tests.test_no_new_any --write``. A new module starts at zero.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BASELINE = Path(__file__).with_name("any_baseline.json")
PACKAGES = ["config", "workflows", "automation", "tasks_inbox", "crm"]


def any_counts() -> Counter[str]:
    """ANN401 hits per file (paths relative to the project)."""
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "ruff",
            "check",
            "--select",
            "ANN401",
            "--output-format",
            "json",
            "--exit-zero",
            *PACKAGES,
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    hits = json.loads(completed.stdout)
    return Counter(str(Path(hit["filename"]).resolve().relative_to(ROOT)) for hit in hits)


def test_no_module_gains_an_any_in_a_public_signature() -> None:
    baseline: dict[str, int] = json.loads(BASELINE.read_text())
    grown = {
        path: f"{count} (baseline {baseline.get(path, 0)})"
        for path, count in sorted(any_counts().items())
        if count > baseline.get(path, 0)
    }
    assert not grown, (
        "Any in public signatures (ruff ANN401) grew; give these real types: "
        f"{grown}; run `.venv/bin/ruff check --select ANN401 <file>` to see where"
    )


if __name__ == "__main__" and sys.argv[1:] == ["--write"]:
    BASELINE.write_text(json.dumps(dict(sorted(any_counts().items())), indent=1) + "\n")
