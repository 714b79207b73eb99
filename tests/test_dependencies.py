"""The apps' dependencies point one way: ``tasks_inbox`` builds on ``automation``'s public
API, and ``automation`` never imports ``tasks_inbox``.

Every module of both apps is read with ``ast`` (no imports run), and every import is
checked wherever it is written: at the top, inside a function, under ``TYPE_CHECKING``, or
as a literal ``importlib.import_module("...")`` / ``__import__("...")`` call.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# The modules of automation that other apps may import: the step registry and its helpers
# for step types, the condition language, events, models, the model registry, the signal
# a waiting step's owner sends, and the metrics and monitoring registration hooks.
AUTOMATION_PUBLIC = frozenset(
    {
        "automation.actions",
        "automation.actions.entities",
        "automation.actions.mailing",
        "automation.catalogue",
        "automation.conditions",
        "automation.events",
        "automation.live",
        "automation.metrics",
        "automation.models",
        "automation.monitoring",
        "automation.receivers",
        "automation.registry",
        "automation.signals",
    }
)


@dataclass(frozen=True)
class Imported:
    path: str  # the importing file, relative to the project
    line: int
    module: str  # the module imported, absolute


def _package(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _resolve(node: ast.ImportFrom, path: Path) -> str:
    """The absolute module a ``from ... import`` names (relative imports resolved)."""
    if not node.level:
        return node.module or ""
    package = _package(path).split(".")
    if path.name != "__init__.py":
        package.pop()
    base = package[: len(package) - (node.level - 1)]
    return ".".join([*base, *([node.module] if node.module else [])])


def _literal_import(node: ast.Call) -> str | None:
    """``import_module("x.y")`` or ``__import__("x.y")`` with a literal (or f-string start)."""
    name = (
        node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", None)
    )
    if name not in ("import_module", "__import__") or not node.args:
        return None
    arg = node.args[0]
    if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
        return arg.value
    if isinstance(arg, ast.JoinedStr) and arg.values:
        head = arg.values[0]
        if isinstance(head, ast.Constant) and isinstance(head.value, str):
            return head.value.rstrip(".")
    return None


def imports_of(path: Path, source: str | None = None) -> list[Imported]:
    """The imports in the module at ``path`` (its text, or ``source`` as if it were there)."""
    text = path.read_text() if source is None else source
    tree = ast.parse(text, filename=str(path))
    rel = str(path.relative_to(ROOT))
    found: list[Imported] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [Imported(rel, node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            module = _resolve(node, path)
            found.append(Imported(rel, node.lineno, module))
            # ``from automation import services`` imports the submodule ``services``.
            found += [
                Imported(rel, node.lineno, f"{module}.{alias.name}")
                for alias in node.names
                if alias.name != "*"
            ]
        elif isinstance(node, ast.Call):
            literal = _literal_import(node)
            if literal:
                found.append(Imported(rel, node.lineno, literal))
    return found


def app_imports(app: str) -> list[Imported]:
    files = sorted((ROOT / app).rglob("*.py"))
    assert files, f"no modules found under {app}/"
    return [imported for path in files for imported in imports_of(path)]


def _within(module: str, package: str) -> bool:
    return module == package or module.startswith(f"{package}.")


def _is_automation_module(module: str) -> bool:
    """``from automation.models import Run`` also yields ``automation.models.Run``: judge a
    dotted name by the longest prefix that is a module file or package."""
    parts = module.split(".")
    while len(parts) > 1:
        candidate = ROOT.joinpath(*parts)
        if candidate.with_suffix(".py").exists() or (candidate / "__init__.py").exists():
            return True
        parts.pop()
    return False


def _module_of(module: str) -> str:
    parts = module.split(".")
    while len(parts) > 1:
        candidate = ROOT.joinpath(*parts)
        if candidate.with_suffix(".py").exists() or (candidate / "__init__.py").exists():
            return ".".join(parts)
        parts.pop()
    return module


def test_automation_never_imports_tasks_inbox() -> None:
    offending = [i for i in app_imports("automation") if _within(i.module, "tasks_inbox")]
    assert offending == []


def test_tasks_inbox_imports_only_automation_public_modules() -> None:
    offending = sorted(
        {
            (i.path, i.line, _module_of(i.module))
            for i in app_imports("tasks_inbox")
            if _within(i.module, "automation")
            and _is_automation_module(i.module)
            and _module_of(i.module) not in AUTOMATION_PUBLIC
        }
    )
    assert offending == []


def test_the_public_modules_exist() -> None:
    """A renamed module must be renamed here too, not silently allowed."""
    missing = [name for name in AUTOMATION_PUBLIC if _module_of(name) != name]
    assert missing == []


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("from tasks_inbox.models import Task", {"tasks_inbox.models", "tasks_inbox.models.Task"}),
        (
            "def f():\n    from tasks_inbox import selectors\n",
            {"tasks_inbox", "tasks_inbox.selectors"},
        ),
        ("import tasks_inbox.services as s", {"tasks_inbox.services"}),
        (
            "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import tasks_inbox\n",
            {"typing", "typing.TYPE_CHECKING", "tasks_inbox"},
        ),
        (
            "import importlib\nimportlib.import_module('tasks_inbox.engine')\n",
            {"importlib", "tasks_inbox.engine"},
        ),
        (
            "from importlib import import_module\nimport_module(f'tasks_inbox.steps.{name}')\n",
            {"importlib", "importlib.import_module", "tasks_inbox.steps"},
        ),
        (
            "from ..services import step_resume",
            {"automation.services", "automation.services.step_resume"},
        ),
    ],
)
def test_the_walker_sees_every_kind_of_import(source: str, expected: set[str]) -> None:
    """The checks above are only as good as the walker: it finds top-level, function-local,
    aliased, TYPE_CHECKING, relative and importlib imports."""
    module = ROOT / "automation" / "actions" / "probe.py"  # read as if it were there
    assert {i.module for i in imports_of(module, source)} == expected
