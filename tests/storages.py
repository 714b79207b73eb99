"""A file storage for tests that fails right after writing, as if the process died there."""

from __future__ import annotations

from typing import Any

from django.core.files.storage import FileSystemStorage


class CrashAfterWrite(FileSystemStorage):
    """Writes the file, then raises ``crashes`` times (then behaves)."""

    crashes = 0

    def _save(self, name: str, content: Any) -> str:
        saved = super()._save(name, content)
        if CrashAfterWrite.crashes:
            CrashAfterWrite.crashes -= 1
            raise OSError("the worker died right after writing the file")
        return saved


class FailOnSave(FileSystemStorage):
    """Fails the ``fail_at``-th save (counting from 1) before writing anything, as if the
    process died there; every other save is written and its name kept in ``saved``."""

    fail_at = 0
    saves = 0
    saved: list[str] = []

    def _save(self, name: str, content: Any) -> str:
        FailOnSave.saves += 1
        if FailOnSave.saves == FailOnSave.fail_at:
            raise OSError("the worker died while storing a batch")
        saved = super()._save(name, content)
        FailOnSave.saved.append(saved)
        return saved
