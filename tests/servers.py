"""Servers the browser tests start as subprocesses: daphne as the Procfile runs it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from tests.conftest import ARTIFACTS, ROOT, worker_env


class AsgiServer:
    """``daphne`` as the Procfile runs it, on the test database and Redis."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.log_path = ARTIFACTS / f"daphne-{os.getpid()}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 90) -> None:
        ARTIFACTS.mkdir(exist_ok=True)
        env = worker_env(SESSION_COOKIE_SECURE="0", CSRF_COOKIE_SECURE="0")
        daphne = str(Path(sys.executable).parent / "daphne")
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [
                    daphne,
                    "--bind",
                    "127.0.0.1",
                    "--port",
                    str(self.port),
                    "--access-log",
                    "-",
                    "config.asgi:application",
                ],
                cwd=ROOT,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"daphne exited:\n{self.log()}"
            try:
                with urllib.request.urlopen(f"{self.url}/healthz", timeout=2):
                    return
            except OSError:
                time.sleep(0.2)
        raise AssertionError(f"daphne did not answer within {timeout}s:\n{self.log()}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
