"""CPU accounting of a benchmark phase from /proc (Linux): who used the machine, and how much.

A snapshot records each process's user+system CPU time; the difference of two snapshots,
grouped, says how many CPU-seconds the benchmark's own processes (this process and its
workers), the PostgreSQL backends of the benchmark's database (and the backends of any
database that ended in between, known only through the postmaster's reaped-children time),
Redis, PostgreSQL's shared background processes and everything else used in between.
"Everything else" is the noise: on a shared machine, other work competing for the cores
makes every figure slower.
"""

from __future__ import annotations

import os
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

PROC = Path("/proc")
GROUPS = ("bench", "postgres_bench_db", "postgres_ended", "redis", "postgres_other", "other")


@dataclass
class Snapshot:
    at: float
    ticks: dict[int, int] = field(default_factory=dict)
    reaped: dict[int, int] = field(default_factory=dict)
    parents: dict[int, int] = field(default_factory=dict)
    commands: dict[int, str] = field(default_factory=dict)


def snapshot() -> Snapshot | None:
    """Every process's CPU ticks, parent and command line; None where /proc is missing."""
    if not (PROC / "self" / "stat").exists():
        return None
    snap = Snapshot(at=time.monotonic())
    for entry in PROC.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            command = (
                (entry / "cmdline")
                .read_bytes()
                .replace(b"\0", b" ")
                .decode(errors="replace")
                .strip()
            )
        except OSError:  # the process ended meanwhile
            continue
        fields = stat.rsplit(")", 1)[1].split()
        pid = int(entry.name)
        snap.parents[pid] = int(fields[1])
        snap.ticks[pid] = int(fields[11]) + int(fields[12])
        snap.reaped[pid] = int(fields[13]) + int(fields[14])
        snap.commands[pid] = command or stat.split("(", 1)[1].split(")", 1)[0]
    return snap


def descendants(parents: dict[int, int], root: int) -> set[int]:
    found = {root}
    changed = True
    while changed:
        changed = False
        for pid, parent in parents.items():
            if parent in found and pid not in found:
                found.add(pid)
                changed = True
    return found


def postmasters(snap: Snapshot) -> set[int]:
    """The parents of PostgreSQL's ``postgres: ...`` processes."""
    return {
        snap.parents[pid]
        for pid, command in snap.commands.items()
        if command.startswith("postgres:") and snap.parents[pid] in snap.commands
    }


def classify(pid: int, command: str, ours: set[int], database: str) -> str:
    if pid in ours:
        return "bench"
    if command.startswith("postgres:"):
        return "postgres_bench_db" if f" {database} " in f"{command} " else "postgres_other"
    if "redis-server" in command:
        return "redis"
    return "other"


@dataclass
class CpuMeter:
    """``start()`` then ``stop()``: CPU-seconds per group in between, and per item of work."""

    database: str
    first: Snapshot | None = None
    result: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0

    def start(self) -> CpuMeter:
        self.first = snapshot()
        return self

    def stop(self) -> dict[str, float]:
        last = snapshot()
        if self.first is None or last is None:
            return {}
        hz = os.sysconf("SC_CLK_TCK")
        # The benchmark's processes are this one and its descendants, as seen at the end
        # (workers started during the phase) or at the start.
        ours = descendants(last.parents, os.getpid()) | descendants(self.first.parents, os.getpid())
        used: dict[str, float] = defaultdict(float)
        for pid, ticks in last.ticks.items():
            before = self.first.ticks.get(pid, 0)
            group = classify(pid, last.commands[pid], ours, self.database)
            used[group] += max(ticks - before, 0) / hz
        # Backends that ended during the phase (a connection per task) are gone from /proc;
        # their CPU is added to the postmaster's reaped-children time.
        for pid in postmasters(last):
            before = self.first.reaped.get(pid, last.reaped[pid])
            used["postgres_ended"] += max(last.reaped[pid] - before, 0) / hz
        self.seconds = last.at - self.first.at
        self.result = {group: round(used.get(group, 0.0), 3) for group in GROUPS}
        return self.result

    def summary(self, items: int) -> dict[str, object]:
        """CPU per group as a share of one core, and milliseconds per item of work."""
        if not self.result or self.seconds <= 0:
            return {}
        cores = os.cpu_count() or 1
        return {
            "window_seconds": round(self.seconds, 3),
            "cpu_seconds": self.result,
            "cpu_percent_of_one_core": {
                group: round(value / self.seconds * 100, 1) for group, value in self.result.items()
            },
            "cpu_ms_per_item": {
                group: round(value / items * 1000, 3) for group, value in self.result.items()
            },
            "other_share_of_machine": round(self.result["other"] / (self.seconds * cores), 3),
        }
