"""Keep one process running: restart it with backoff when it exits, stop it cleanly on a signal.

Used by the Procfile for the Celery worker and beat, so that under ``make run`` (honcho, which
stops everything as soon as one process exits) a worker that crashed is started again instead
of taking web and beat down with it::

    python scripts/supervise.py --name worker -- celery -A config worker ...

- The command runs as a child in its own process group. SIGINT and SIGTERM received here are
  passed on to it once (Celery's warm shutdown, gunicorn's graceful stop), then this script
  waits for it and exits 0 when it stopped cleanly (else with its exit code).
- An exit that nobody asked for is logged and followed by a restart after a delay that
  doubles from ``--min-delay`` up to ``--max-delay``; a child that ran ``--reset-after``
  seconds or more starts again at the minimum.
- If this script itself is killed, the kernel kills the child too (Linux
  ``PR_SET_PDEATHSIG``), so no process is left behind.

In production use the init system's supervision instead (systemd ``Restart=always``; see the
README's "Deployment" section).
"""

from __future__ import annotations

import argparse
import ctypes
import logging
import signal
import subprocess
import sys
import threading
import time
from types import FrameType

logger = logging.getLogger("supervise")

PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """In the child, before exec: be killed with the supervising process (as honcho's SIGKILL
    of its process group would have done without this wrapper)."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


class Supervisor:
    """Runs ``command``, restarting it on unrequested exits, until asked to stop."""

    def __init__(
        self, name: str, command: list[str], min_delay: float, max_delay: float, reset_after: float
    ) -> None:
        self.name = name
        self.command = command
        self.min_delay = min_delay
        self.max_delay = max_delay
        self.reset_after = reset_after
        self.child: subprocess.Popen[bytes] | None = None
        self.stop_requested = threading.Event()
        self.stop_signal = signal.SIGTERM

    def request_stop(self, signum: int, _frame: FrameType | None = None) -> None:
        first = not self.stop_requested.is_set()
        if first:
            self.stop_signal = signal.Signals(signum)
        self.stop_requested.set()
        child = self.child
        if first and child is not None and child.poll() is None:
            # Passed on once: a second SIGINT would make Celery shut down cold.
            child.send_signal(signum)

    def start_child(self) -> subprocess.Popen[bytes]:
        return subprocess.Popen(  # noqa: S603 (our own Procfile's command)
            self.command,
            process_group=0,
            preexec_fn=_die_with_parent,
        )

    def run(self) -> int:
        delay = self.min_delay
        while not self.stop_requested.is_set():
            started = time.monotonic()
            self.child = self.start_child()
            if self.stop_requested.is_set():  # a signal arrived while it was starting
                self.child.send_signal(signal.SIGTERM)
            returncode = self.child.wait()
            if self.stop_requested.is_set():
                # Stopped as asked (exit 0, or killed by the signal passed on): a clean stop.
                return 0 if returncode in (0, -self.stop_signal) else returncode
            if time.monotonic() - started >= self.reset_after:
                delay = self.min_delay
            logger.warning(
                "%s exited with code %s; starting it again in %.0f s", self.name, returncode, delay
            )
            if self.stop_requested.wait(delay):
                return 0
            delay = min(delay * 2, self.max_delay)
        return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--name", default="process", help="how the log names the process")
    parser.add_argument("--min-delay", type=float, default=1.0, metavar="SECONDS")
    parser.add_argument("--max-delay", type=float, default=30.0, metavar="SECONDS")
    parser.add_argument("--reset-after", type=float, default=60.0, metavar="SECONDS")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="the command to run, after --")
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("a command to run is required (after --)")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    supervisor = Supervisor(args.name, command, args.min_delay, args.max_delay, args.reset_after)
    signal.signal(signal.SIGINT, supervisor.request_stop)
    signal.signal(signal.SIGTERM, supervisor.request_stop)
    return supervisor.run()


if __name__ == "__main__":
    sys.exit(main())
