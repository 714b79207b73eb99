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
