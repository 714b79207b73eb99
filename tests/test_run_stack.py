"""`make run`'s stack (scripts/run.py: honcho and the Procfile): a crashed worker is
restarted, the rest keeps running, and Ctrl-C (SIGINT to honcho) stops everything by itself,
with nothing alarming in the output."""

from __future__ import annotations

import logging
import os
import re
import signal
import socket
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ARTIFACTS, ROOT, purge_broker, wait_for, worker_env

VENV_BIN = Path(sys.executable).parent
STOP_BOUND = 60  # seconds; scripts/run.py lets honcho SIGKILL after 30


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Stack:
    def __init__(self, port: int) -> None:
        ARTIFACTS.mkdir(exist_ok=True)
        self.port = port
        self.log_path = ARTIFACTS / f"run-stack-{os.getpid()}.log"
        env = worker_env(WEB_PORT=str(port), PATH=f"{VENV_BIN}:{os.environ['PATH']}", DEBUG="1")
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "scripts/run.py", "start", "-f", "Procfile"],
                cwd=ROOT,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def lines(self, process: str) -> list[str]:
        return [line for line in self.output().splitlines() if f" {process}.1 " in line]

    def healthz(self) -> int | None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/healthz", timeout=5) as r:
                return r.status
        except OSError:
            return None

    def pid_of(self, process: str) -> int:
        match = re.search(rf"{process}\.1 started \(pid=(\d+)\)", self.output())
        assert match, f"honcho did not start {process}"
        return int(match.group(1))

    def ready_count(self) -> int:
        return sum(" ready." in line for line in self.lines("worker"))

    def stop_hard(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)


@pytest.fixture
def stack(transactional_db: Any) -> Iterator[Stack]:
    purge_broker()
    running = Stack(free_port())
    yield running
    running.stop_hard()


def children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(child) for child in path.read_text().split()]


@pytest.mark.postgres
@pytest.mark.redis
def test_a_crashed_worker_is_restarted_and_ctrl_c_stops_the_stack_cleanly(stack: Stack) -> None:
    wait_for(lambda: stack.healthz() == 200, timeout=120, message="web's /healthz")
    wait_for(lambda: stack.ready_count() == 1, timeout=120, message="the worker")
    wait_for(
        lambda: any("beat: Starting" in line for line in stack.lines("beat")),
        timeout=120,
        message="beat",
    )

    # The worker (the supervisor's child) dies as a crash would.
    supervisor = stack.pid_of("worker")
    (celery_worker,) = children(supervisor)
    os.kill(celery_worker, signal.SIGKILL)
    wait_for(
        lambda: stack.ready_count() == 2, timeout=120, message="the worker to be started again"
    )
    assert stack.proc.poll() is None
    assert stack.healthz() == 200
    assert any("exited with code -9; starting it again" in line for line in stack.lines("worker"))
    assert children(supervisor) != [celery_worker]

    stack.proc.send_signal(signal.SIGINT)  # what Ctrl-C in the terminal sends honcho
    try:
        stack.proc.wait(STOP_BOUND)
    except subprocess.TimeoutExpired:
        pytest.fail(f"the stack did not stop within {STOP_BOUND} s; log: {stack.log_path}")
    output = stack.output()
    for process in ("web", "worker", "beat"):
        assert f"{process}.1 stopped (rc=0)" in output, output[-3000:]
    bad = [
        line
        for line in output.splitlines()
        if re.search(r"SIGKILL|\bERROR\b|\bCRITICAL\b|Traceback", line)
    ]
    assert bad == [], f"log: {stack.log_path}"


def routine_lines(caplog: pytest.LogCaptureFixture) -> list[tuple[str, str]]:
    from celery.app import trace

    for name in ("flowdesk.sweep.outbox", "flowdesk.advance_run"):
        trace.info(
            trace.LOG_SUCCESS,
            {"id": "1", "name": name, "return_value": 0, "runtime": 0.01, "args": (), "kwargs": {}},
        )
        trace.info(trace.LOG_RECEIVED, {"id": "1", "name": name, "eta": None})
    logging.getLogger("celery.beat").info(
        "Scheduler: Sending due task %s (%s)", "runs-wake-due", "flowdesk.sweep.wake_due"
    )
    lines = [(record.levelname, record.getMessage()) for record in caplog.records]
    caplog.clear()
    return lines


def test_routine_sweep_lines_are_debug_and_other_tasks_stay_info(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    assert routine_lines(caplog) == [
        ("INFO", "Task flowdesk.advance_run[1] succeeded in 0.01s: 0"),
        ("INFO", "Task flowdesk.advance_run[1] received"),
    ]
    caplog.set_level(logging.DEBUG)
    lines = routine_lines(caplog)
    assert ("DEBUG", "Task flowdesk.sweep.outbox[1] received") in lines
    assert ("DEBUG", "Scheduler: Sending due task runs-wake-due (flowdesk.sweep.wake_due)") in lines
    assert ("INFO", "Task flowdesk.advance_run[1] received") in lines
