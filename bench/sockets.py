"""Live-update sockets benchmark: 500 authenticated WebSockets on daphne, task updates fanned
out to those allowed to see them, against the same fan-out through the bare channel layer.

``python -m bench.sockets`` (``make bench-sockets``; ``--help`` for the knobs) recreates its
own database and flushes its own Redis database, then:

1. creates ``--clients`` agents (``--allowed`` of them members of the queue ``Claims``, the
   others of ``Billing``), one session each, and one unassigned task in ``Claims``: the
   members of ``Claims`` may see it, the others may not;
2. starts daphne as the Procfile does, on that database and Redis (the channel layer);
3. connects one WebSocket per agent to ``/ws/live/`` with the agent's session cookie (a
   minimal RFC 6455 client on asyncio streams, in this process: daphne's Twisted claims
   autobahn once Django is set up) and waits for every socket's ``hello``;
4. measures, alternating round by round so both see the same machine:

   - **engine**: ``automation.live.publish_now("task", ...)``, what a service's
     after-commit hook calls: the audience is computed by the inbox's visibility rule from
     the committed rows, then sent to each allowed user's group;
   - **raw**: the same message sent with ``channel_layer.group_send`` to the same groups,
     worked out once beforehand, awaited on this process's event loop: the bare channel
     layer, with no audience rule and no hop from sync code.

   *Fan-out*: ``--rounds`` single updates, one at a time (each waits until every allowed
   socket has it or ``--round-timeout`` passes): latency from the publish call to each
   socket's receipt, p50/p99 over all deliveries, and the share of allowed sockets that got
   it. *Burst*: ``--burst`` updates published back to back: deliveries per second (from the
   first publish to the last receipt) and their latency p50/p99.

   Every message a socket outside ``Claims`` receives is counted as a leak (must be 0).
5. reads daphne's resident memory (``VmRSS``) idle, with the sockets open, and after the
   bursts.

The clients share this process (and its two cores) with the publisher, for both paths
alike: absolute figures include the clients' own cost; the ratio engine/raw is what the
audience rule adds. Figures go to stdout and ``var/bench/sockets-<UTC timestamp>.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import redis

from bench import common
from bench.common import ROOT, add_owned_services, check_owned_services, log

CLAIMS, BILLING = "Claims", "Billing"


# --- set-up -----------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.sockets", description=__doc__)
    add_owned_services(
        parser, database="flowdesk_bench_sockets", broker="redis://127.0.0.1:6379/12"
    )
    parser.add_argument("--clients", type=int, default=500, help="sockets (one agent each)")
    parser.add_argument(
        "--allowed", type=int, default=400, help="of them, members of the task's queue"
    )
    parser.add_argument("--rounds", type=int, default=10, help="single updates per path")
    parser.add_argument("--burst", type=int, default=20, help="updates per burst")
    parser.add_argument("--bursts", type=int, default=1, help="bursts per path")
    parser.add_argument("--round-timeout", type=float, default=15.0)
    parser.add_argument("--output", type=Path, default=None)
    args = parser.parse_args(argv)
    check_owned_services(parser, args)
    if not 0 < args.allowed <= args.clients:
        parser.error("--allowed must be between 1 and --clients")
    return args


def make_agents(args: argparse.Namespace) -> dict[str, Any]:
    """The agents (bulk: no password hashing), their sessions, and the task."""
    from importlib import import_module

    from django.conf import settings
    from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
    from django.contrib.auth.models import Group, User

    from tasks_inbox import services

    claims = Group.objects.create(name=CLAIMS)
    billing = Group.objects.create(name=BILLING)
    User.objects.bulk_create(
        User(username=f"agent{i:04d}", password="!", email=f"agent{i}@example.com")  # noqa: S106
        for i in range(args.clients)
    )
    users = list(User.objects.filter(username__startswith="agent").order_by("username"))
    through = User.groups.through
    through.objects.bulk_create(
        through(user_id=user.pk, group_id=(claims if i < args.allowed else billing).pk)
        for i, user in enumerate(users)
    )
    store = import_module(settings.SESSION_ENGINE).SessionStore
    backend = settings.AUTHENTICATION_BACKENDS[0]
    sessions = []
    for user in users:
        session = store()
        session[SESSION_KEY] = str(user.pk)
        session[BACKEND_SESSION_KEY] = backend
        session[HASH_SESSION_KEY] = user.get_session_auth_hash()
        session.save()
        sessions.append(session.session_key)
    task = services.task_create(title="Check claim B-1", queue=claims, routing="claim")
    return {
        "users": users,
        "sessions": sessions,
        "allowed_ids": {user.pk for user in users[: args.allowed]},
        "task_id": task.pk,
    }


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Daphne:
    """daphne as the Procfile runs it (logs under var/bench/)."""

    def __init__(self, log_dir: Path) -> None:
        self.port = free_port()
        self.log_path = log_dir / "daphne.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 90) -> None:
        daphne = str(Path(sys.executable).parent / "daphne")
        with open(self.log_path, "ab") as log_file:
            self.proc = subprocess.Popen(
                [
                    daphne,
                    "--bind",
                    "127.0.0.1",
                    "--port",
                    str(self.port),
                    "config.asgi:application",
                ],
                cwd=ROOT,
                env=os.environ.copy(),
                stdout=log_file,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"daphne exited; log: {self.log_path}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/healthz", timeout=2):
                    return
            except OSError:
                time.sleep(0.2)
        raise RuntimeError(f"daphne did not answer within {timeout}s; log: {self.log_path}")

    def rss_mb(self) -> float:
        assert self.proc is not None
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return round(int(line.split()[1]) / 1024, 1)
        return 0.0

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)


# --- the clients ------------------------------------------------------------------------


class Sockets:
    """One socket per agent; every message a socket receives is time-stamped."""

    def __init__(self, port: int, sessions: list[str], user_ids: list[int]) -> None:
        self.port = port
        self.sessions = sessions
        self.user_ids = user_ids
        self.hello: set[int] = set()
        self.closed: list[tuple[int, Any]] = []
        # marker -> {client index: receipt time}
        self.received: dict[str, dict[int, float]] = {}
        self.other: list[dict[str, Any]] = []
        self.waiters: dict[str, tuple[int, asyncio.Future[None]]] = {}
        self.transports: list[Any] = []
        self.retries = 0

    def on_message(self, index: int, message: dict[str, Any], at: float) -> None:
        if message.get("topic") == "hello":
            self.hello.add(index)
            return
        marker = message.get("event")
        if not isinstance(marker, str) or not marker.startswith("bench-"):
            self.other.append(message)
            return
        got = self.received.setdefault(marker, {})
        got[index] = at
        waiter = self.waiters.get(marker)
        if waiter is not None and len(got) >= waiter[0] and not waiter[1].done():
            waiter[1].set_result(None)

    async def open_one(self, index: int, attempts: int = 5) -> None:
        """Open socket ``index``, retrying a refused or reset handshake (counted in
        ``retries``) a few times with a short pause."""
        for attempt in range(1, attempts + 1):
            try:
                await self.handshake(index)
                return
            except (ConnectionError, asyncio.IncompleteReadError):
                if attempt == attempts:
                    raise
                self.retries += 1
                await asyncio.sleep(0.5 * attempt)

    async def handshake(self, index: int) -> None:
        """The handshake of RFC 6455 with the agent's cookie; then its frames are read
        until it closes."""
        reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        self.transports.append(writer)
        key = base64.b64encode(os.urandom(16)).decode()
        writer.write(
            (
                f"GET /ws/live/ HTTP/1.1\r\nHost: 127.0.0.1:{self.port}\r\n"
                "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
                f"Origin: http://127.0.0.1:{self.port}\r\n"
                f"Cookie: sessionid={self.sessions[index]}\r\n\r\n"
            ).encode()
        )
        head = await reader.readuntil(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 101"):
            self.closed.append((index, head.split(b"\r\n", 1)[0].decode()))
            return
        asyncio.get_running_loop().create_task(self.read(index, reader, writer))

    async def read(self, index: int, reader: Any, writer: Any) -> None:
        try:
            while True:
                first, second = await reader.readexactly(2)
                opcode, length = first & 0x0F, second & 0x7F
                if length == 126:
                    length = int.from_bytes(await reader.readexactly(2), "big")
                elif length == 127:
                    length = int.from_bytes(await reader.readexactly(8), "big")
                payload = await reader.readexactly(length)
                if opcode == 0x1:
                    self.on_message(index, json.loads(payload), time.perf_counter())
                elif opcode == 0x9:  # ping: answer with a (masked) pong
                    mask = os.urandom(4)
                    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
                    writer.write(bytes([0x8A, 0x80 | len(payload)]) + mask + masked)
                elif opcode == 0x8:
                    self.closed.append((index, int.from_bytes(payload[:2] or b"\0\0", "big")))
                    return
        except (asyncio.IncompleteReadError, ConnectionError):
            self.closed.append((index, "connection lost"))

    async def connect(self, batch: int = 20) -> float:
        started = time.perf_counter()
        for first in range(0, len(self.sessions), batch):
            last = min(first + batch, len(self.sessions))
            await asyncio.gather(*(self.open_one(i) for i in range(first, last)))
        for _ in range(3):  # sockets the server closed before their hello are reopened
            deadline = time.monotonic() + 30
            while len(self.hello) < len(self.sessions) and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            dropped = {i for i, _ in self.closed} - self.hello
            if len(self.hello) == len(self.sessions) or not dropped:
                break
            self.retries += len(dropped)
            self.closed = [c for c in self.closed if c[0] not in dropped]
            for first in range(0, len(sorted(dropped)), batch):
                await asyncio.gather(
                    *(self.open_one(i) for i in sorted(dropped)[first : first + batch])
                )
        if len(self.hello) < len(self.sessions):
            raise RuntimeError(
                f"only {len(self.hello)} of {len(self.sessions)} sockets said hello "
                f"(closed: {self.closed[:5]})"
            )
        return time.perf_counter() - started

    def expect(self, marker: str, count: int) -> asyncio.Future[None]:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.waiters[marker] = (count, future)
        return future

    def close(self) -> None:
        for writer in self.transports:
            writer.close()


# --- the two ways of publishing ---------------------------------------------------------


def engine_publisher(task_id: int) -> Callable[[str], None]:
    from automation.live import publish_now

    def publish(marker: str) -> None:
        publish_now("task", {"id": task_id, "state": "new", "event": marker})

    return publish


def raw_groups(task_id: int) -> list[str]:
    """The groups the audience rule gives for the task (worked out once, before timing)."""
    from tasks_inbox.live import task_audience

    return task_audience(task_id).groups()


def raw_publisher(task_id: int, groups: list[str]) -> Callable[[str], Awaitable[None]]:
    """``group_send`` straight to ``groups`` on this process's event loop: the bare channel
    layer, no audience rule, no hop from sync code."""
    from channels.layers import get_channel_layer

    from automation.live import MESSAGE_TYPE

    layer = get_channel_layer()

    async def publish(marker: str) -> None:
        message = {"topic": "task", "id": task_id, "state": "new", "event": marker}
        for group in groups:
            await layer.group_send(group, {"type": MESSAGE_TYPE, "message": message})

    return publish


def percentile(values: list[float], q: float) -> float | None:
    """Nearest rank, in milliseconds."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(q * len(ordered) + 0.5)))
    return round(ordered[rank - 1] * 1000, 2)


async def fan_out(
    sockets: Sockets, publish: Any, marker: str, expected: int, timeout: float
) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    done = sockets.expect(marker, expected)
    sent = time.perf_counter()
    if asyncio.iscoroutinefunction(publish):
        await publish(marker)
    else:
        await loop.run_in_executor(None, publish, marker)
    publish_seconds = time.perf_counter() - sent
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(done, timeout)
    await asyncio.sleep(0.05)  # late or stray copies
    got = sockets.received.get(marker, {})
    return {
        "latencies": [at - sent for at in got.values()],
        "receivers": set(got),
        "publish_seconds": publish_seconds,
    }


async def burst(
    sockets: Sockets,
    publish: Any,
    prefix: str,
    size: int,
    expected: int,
    timeout: float,
) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    markers = [f"{prefix}-{i}" for i in range(size)]
    futures = [sockets.expect(m, expected) for m in markers]
    sent_at: dict[str, float] = {}

    def publish_all() -> None:
        for marker in markers:
            sent_at[marker] = time.perf_counter()
            publish(marker)

    first = time.perf_counter()
    if asyncio.iscoroutinefunction(publish):
        for marker in markers:
            sent_at[marker] = time.perf_counter()
            await publish(marker)
    else:
        await loop.run_in_executor(None, publish_all)
    published = time.perf_counter() - first
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(asyncio.gather(*futures), timeout * 4)
    await asyncio.sleep(0.05)
    latencies, receivers, last = [], set(), first
    deliveries = 0
    for marker in markers:
        got = sockets.received.get(marker, {})
        deliveries += len(got)
        receivers |= set(got)
        for at in got.values():
            latencies.append(at - sent_at[marker])
            last = max(last, at)
    window = max(last - first, 1e-9)
    return {
        "deliveries": deliveries,
        "expected": expected * size,
        "seconds": round(window, 3),
        "publish_seconds": round(published, 3),
        "deliveries_per_second": round(deliveries / window, 1),
        "updates_per_second": round(size / window, 2),
        "latency_p50_ms": percentile(latencies, 0.5),
        "latency_p99_ms": percentile(latencies, 0.99),
        "receivers": receivers,
    }


async def measure(
    args: argparse.Namespace,
    data: dict[str, Any],
    daphne: Daphne,
    paths: dict[str, Any],
) -> dict[str, Any]:
    users = data["users"]
    allowed_index = {i for i, u in enumerate(users) if u.pk in data["allowed_ids"]}
    sockets = Sockets(daphne.port, data["sessions"], [u.pk for u in users])
    memory = {"idle_mb": daphne.rss_mb()}
    log(f"connecting {args.clients} sockets")
    connect_seconds = await sockets.connect()
    await asyncio.sleep(1)
    memory["connected_mb"] = daphne.rss_mb()
    log(f"{args.clients} sockets open in {connect_seconds:.1f} s")

    expected = len(allowed_index)
    for name, publish in paths.items():  # warm-up: connections, caches, code paths
        for i in range(3):
            await fan_out(sockets, publish, f"bench-warm-{name}-{i}", expected, args.round_timeout)

    single: dict[str, dict[str, Any]] = {
        name: {"latencies": [], "shares": [], "publish": [], "leaks": 0} for name in paths
    }
    log(f"fan-out: {args.rounds} single updates per path, alternating")
    for round_no in range(args.rounds):
        for name, publish in paths.items():
            result = await fan_out(
                sockets, publish, f"bench-{name}-{round_no}", expected, args.round_timeout
            )
            figures = single[name]
            figures["latencies"].extend(result["latencies"])
            figures["shares"].append(len(result["receivers"] & allowed_index) / expected)
            figures["publish"].append(result["publish_seconds"])
            figures["leaks"] += len(result["receivers"] - allowed_index)

    bursts: dict[str, list[dict[str, Any]]] = {name: [] for name in paths}
    log(f"bursts: {args.bursts} x {args.burst} updates per path, alternating")
    for burst_no in range(args.bursts):
        for name, publish in paths.items():
            result = await burst(
                sockets,
                publish,
                f"bench-burst-{name}-{burst_no}",
                args.burst,
                expected,
                args.round_timeout,
            )
            result["leaks"] = len(result.pop("receivers") - allowed_index)
            bursts[name].append(result)
            log(
                f"  {name} burst {burst_no}: {result['deliveries']}/{result['expected']} "
                f"deliveries, {result['deliveries_per_second']:.0f}/s"
            )
    memory["after_bursts_mb"] = daphne.rss_mb()
    sockets.close()

    result: dict[str, Any] = {
        "connect_seconds": round(connect_seconds, 2),
        "connect_retries": sockets.retries,
        "memory": memory,
    }
    for name in paths:
        figures = single[name]
        chosen = bursts[name]
        result[name] = {
            "fan_out": {
                "deliveries": len(figures["latencies"]),
                "latency_p50_ms": percentile(figures["latencies"], 0.5),
                "latency_p99_ms": percentile(figures["latencies"], 0.99),
                "share_delivered": round(statistics.mean(figures["shares"]), 4),
                "publish_call_p50_ms": percentile(figures["publish"], 0.5),
                "leaks": figures["leaks"],
            },
            "bursts": chosen,
            "burst": {
                "deliveries_per_second": round(
                    statistics.median(b["deliveries_per_second"] for b in chosen), 1
                ),
                "latency_p50_ms": statistics.median(b["latency_p50_ms"] or 0 for b in chosen),
                "latency_p99_ms": statistics.median(b["latency_p99_ms"] or 0 for b in chosen),
                "share_delivered": round(
                    sum(b["deliveries"] for b in chosen) / sum(b["expected"] for b in chosen), 4
                ),
                "leaks": sum(b["leaks"] for b in chosen),
            },
        }
    result["stray_messages"] = len(sockets.other)
    engine, raw = result["engine"], result["raw"]

    def ratio(a: float | None, b: float | None) -> float | None:
        return round(a / b, 2) if a and b else None

    result["ratios"] = {
        "fan_out_p50": ratio(engine["fan_out"]["latency_p50_ms"], raw["fan_out"]["latency_p50_ms"]),
        "fan_out_p99": ratio(engine["fan_out"]["latency_p99_ms"], raw["fan_out"]["latency_p99_ms"]),
        "burst_throughput": ratio(
            engine["burst"]["deliveries_per_second"], raw["burst"]["deliveries_per_second"]
        ),
    }
    return result


def environment() -> dict[str, str]:
    import channels
    import channels_redis
    import daphne
    import django

    r = redis.Redis.from_url(os.environ["CELERY_BROKER_URL"])
    return {
        "python": platform.python_version(),
        "django": django.get_version(),
        "channels": channels.__version__,
        "channels_redis": channels_redis.__version__,
        "daphne": daphne.__version__,
        "redis": str(r.info("server").get("redis_version")),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
    }


def report(result: dict[str, Any]) -> str:
    e, r, ratios = result["engine"], result["raw"], result["ratios"]
    lines = [
        "",
        f"{result['clients']} sockets ({result['allowed']} allowed to see the task), "
        f"open in {result['connect_seconds']} s ({result['connect_retries']} handshakes retried)",
        f"{'':34}{'engine':>12}{'raw layer':>12}{'ratio':>8}",
    ]

    def row(label: str, a: Any, b: Any, ratio: Any = "") -> None:
        lines.append(f"{label:34}{a!s:>12}{b!s:>12}{ratio!s:>8}")

    row(
        "fan-out latency p50 (ms)",
        e["fan_out"]["latency_p50_ms"],
        r["fan_out"]["latency_p50_ms"],
        ratios["fan_out_p50"],
    )
    row(
        "fan-out latency p99 (ms)",
        e["fan_out"]["latency_p99_ms"],
        r["fan_out"]["latency_p99_ms"],
        ratios["fan_out_p99"],
    )
    row(
        "share of allowed sockets reached",
        f"{e['fan_out']['share_delivered']:.1%}",
        f"{r['fan_out']['share_delivered']:.1%}",
    )
    row(
        "publish call p50 (ms)",
        e["fan_out"]["publish_call_p50_ms"],
        r["fan_out"]["publish_call_p50_ms"],
    )
    row(
        "burst deliveries/s",
        e["burst"]["deliveries_per_second"],
        r["burst"]["deliveries_per_second"],
        ratios["burst_throughput"],
    )
    row("burst latency p50 (ms)", e["burst"]["latency_p50_ms"], r["burst"]["latency_p50_ms"])
    row("burst latency p99 (ms)", e["burst"]["latency_p99_ms"], r["burst"]["latency_p99_ms"])
    row(
        "burst share delivered",
        f"{e['burst']['share_delivered']:.1%}",
        f"{r['burst']['share_delivered']:.1%}",
    )
    leaks = e["fan_out"]["leaks"] + e["burst"]["leaks"]
    lines.append(f"messages to sockets not allowed to see the task (engine): {leaks}")
    m = result["memory"]
    lines.append(
        f"daphne RSS: idle {m['idle_mb']} MB, {result['clients']} sockets "
        f"{m['connected_mb']} MB, after the bursts {m['after_bursts_mb']} MB"
    )
    lines.append("environment: " + ", ".join(f"{k} {v}" for k, v in result["environment"].items()))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.perf_counter()
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    log_dir = ROOT / "var" / "bench" / f"sockets-{stamp}"
    log_dir.mkdir(parents=True, exist_ok=True)
    log(f"database {args.database}: recreating and migrating")
    common.owned_services_prepare(
        args,
        CHANNELS_REDIS_URL=args.broker,
        SESSION_COOKIE_SECURE="0",
        CSRF_COOKIE_SECURE="0",
    )

    import django

    django.setup()
    log(f"creating {args.clients} agents and their sessions")
    data = make_agents(args)
    daphne = Daphne(log_dir)
    daphne.start()
    try:
        paths = {
            "engine": engine_publisher(data["task_id"]),
            "raw": raw_publisher(data["task_id"], raw_groups(data["task_id"])),
        }
        result = asyncio.run(measure(args, data, daphne, paths))
    finally:
        daphne.stop()
    result.update(
        {
            "benchmark": "sockets",
            "timestamp": stamp,
            "clients": args.clients,
            "allowed": args.allowed,
            "rounds": args.rounds,
            "burst_size": args.burst,
            "environment": environment(),
            "bench_seconds": round(time.perf_counter() - started, 1),
        }
    )
    output = args.output or ROOT / "var" / "bench" / f"sockets-{stamp}.json"
    output.write_text(json.dumps(result, indent=2, default=str))
    print(report(result))
    print(f"\nfull figures: {output}")
    failed = (
        result["engine"]["fan_out"]["leaks"]
        or result["engine"]["burst"]["leaks"]
        or result["engine"]["fan_out"]["share_delivered"] < 1
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
