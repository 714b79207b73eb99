"""Events API benchmark: ``POST /api/v1/events/`` against a trivial DRF view, same server.

``python -m bench.api`` starts daphne (as the Procfile does) on a database of its own,
then drives it with a small HTTP/1.1 load generator (keep-alive connections, asyncio, in
this process): the trivial view at full speed (the baseline), the events endpoint at full
speed, the events endpoint at half that rate (open loop: latency percentiles), and the
events endpoint at full speed on a second server that uses DRF's own ``ScopedRateThrottle``
(what the project's fixed-window throttle replaced). See bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import redis

from bench import common
from bench.common import (
    ROOT,
    add_owned_services,
    add_quiet_wait,
    check_owned_services,
    log,
    migrate,
    wait_for_quiet,
)
from bench.cpu import CpuMeter
from bench.engine import percentile, process_ticks

GOAL = 0.6
USERNAME = "bench-api"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.api", description=__doc__)
    parser.add_argument("--seconds", type=float, default=10.0, help="per phase (default 10)")
    parser.add_argument(
        "--connections", type=int, default=8, help="keep-alive connections (default 8)"
    )
    add_owned_services(parser, database="flowdesk_bench_api", broker="redis://127.0.0.1:6379/12")
    add_quiet_wait(parser)
    parser.add_argument("--output", type=Path, default=None, help="JSON file to write")
    args = parser.parse_args(argv)
    check_owned_services(parser, args)
    return args


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Server:
    """daphne on 127.0.0.1, as the Procfile runs it, with the benchmark's settings."""

    def __init__(self, env: dict[str, str], log_path: Path, throttle: str) -> None:
        self.port = free_port()
        self.env = {**env, "BENCH_THROTTLE": throttle}
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Server:
        daphne = str(Path(sys.executable).parent / "daphne")
        with open(self.log_path, "ab") as out:
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
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"daphne exited; log: {self.log_path}")
            try:
                with urllib.request.urlopen(
                    f"http://127.0.0.1:{self.port}/bench/trivial/", timeout=2
                ):
                    return self
            except OSError:
                time.sleep(0.3)
        raise RuntimeError(f"daphne did not answer; log: {self.log_path}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)


# --- the load generator ---------------------------------------------------------------


def request_bytes(method: str, path: str, token: str | None, body: dict | None) -> bytes:
    data = json.dumps(body).encode() if body is not None else b""
    head = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", "Connection: keep-alive"]
    if token:
        head.append(f"Authorization: Token {token}")
    if body is not None:
        head += ["Content-Type: application/json", f"Content-Length: {len(data)}"]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + data


async def read_response(reader: asyncio.StreamReader) -> int:
    """Read one HTTP/1.1 response (Content-Length or chunked); returns its status."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        if ":" in line:
            name, value = line.split(":", 1)
            headers[name.strip().lower()] = value.strip()
    if "content-length" in headers:
        await reader.readexactly(int(headers["content-length"]))
    elif headers.get("transfer-encoding") == "chunked":
        while True:
            size = int((await reader.readuntil(b"\r\n")).strip(), 16)
            await reader.readexactly(size + 2)
            if size == 0:
                break
    return status


async def drive(
    port: int, make: Any, seconds: float, connections: int, rate: float | None = None
) -> dict[str, Any]:
    """Send requests for ``seconds`` over ``connections`` keep-alive connections: as fast as
    the server answers (closed loop) or, with ``rate``, at that many per second in all
    (open loop: latency counts from the request's scheduled time)."""
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    started = time.perf_counter()
    deadline = started + seconds
    counter = iter(range(10**9))

    async def one_connection(index: int) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            sent = 0
            while True:
                if rate is not None:
                    due = started + (sent * connections + index) / rate
                    sent += 1
                    if due >= deadline:
                        return
                    delay = due - time.perf_counter()
                    if delay > 0:
                        await asyncio.sleep(delay)
                    begin = due
                else:
                    begin = time.perf_counter()
                    if begin >= deadline:
                        return
                writer.write(make(next(counter)))
                status = await read_response(reader)
                latencies.append((time.perf_counter() - begin) * 1000)
                statuses[status] = statuses.get(status, 0) + 1
        finally:
            writer.close()

    await asyncio.gather(*(one_connection(i) for i in range(connections)))
    window = time.perf_counter() - started
    return {
        "requests": len(latencies),
        "window_seconds": round(window, 3),
        "requests_per_second": round(len(latencies) / window, 1),
        "statuses": {str(k): v for k, v in sorted(statuses.items())},
        "p50_ms": round(percentile(latencies, 50), 2),
        "p99_ms": round(percentile(latencies, 99), 2),
        "max_ms": round(max(latencies), 2),
    }


def phase(
    name: str,
    args: argparse.Namespace,
    server: Server,
    make: Any,
    rate: float | None = None,
) -> dict[str, Any]:
    quiet = wait_for_quiet(args.quiet_wait, args.database, name)
    asyncio.run(drive(server.port, make, 1.0, args.connections))  # warm the server up
    meter = CpuMeter(args.database).start()
    assert server.proc is not None
    server_ticks = process_ticks(server.proc.pid)
    result = asyncio.run(drive(server.port, make, args.seconds, args.connections, rate))
    server_seconds = (process_ticks(server.proc.pid) - server_ticks) / os.sysconf("SC_CLK_TCK")
    meter.stop()
    requests = max(result["requests"], 1)
    result["cpu"] = meter.summary(requests)
    # The server's own CPU per request (daphne's process; its database backend apart):
    # unlike req/s, it hardly moves when other work shares the cores.
    result["server_cpu_ms_per_request"] = round(server_seconds / requests * 1000, 3)
    postgres = (result["cpu"].get("cpu_ms_per_item") or {}).get("postgres_bench_db", 0.0)
    result["postgres_cpu_ms_per_request"] = postgres
    # Other processes' share of the machine: just before the phase (None: not waited for)
    # and during it.
    result["other_load_before"] = quiet
    result["other_load"] = result["cpu"].get("other_share_of_machine")
    log(
        f"{name}: {result['requests_per_second']:.0f} req/s, p50 {result['p50_ms']:.1f} ms, "
        f"p99 {result['p99_ms']:.1f} ms, statuses {result['statuses']}, server CPU "
        f"{result['server_cpu_ms_per_request']:.2f} + PostgreSQL {postgres:.2f} ms/request, "
        f"other load {other_load_text(result)}"
    )
    return result


def other_load_text(result: dict[str, Any]) -> str:
    """``4%`` (during the phase), with the share seen before it when it was waited for."""
    during = result.get("other_load")
    text = "?" if during is None else f"{during:.0%}"
    if result.get("other_load_before") is not None:
        text += f" (before: {result['other_load_before']:.0%})"
    return text


def setup() -> str:
    """A superuser with an API token; returns the token."""
    from django.contrib.auth import get_user_model
    from rest_framework.authtoken.models import Token

    user = get_user_model().objects.create_superuser(USERNAME, "bench@example.com", "x" * 20)
    return Token.objects.create(user=user).key


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.perf_counter()
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    env = {
        "DATABASE_URL": f"{args.postgres.rstrip('/')}/{args.database}",
        "CELERY_BROKER_URL": args.broker,
        "CACHE_URL": args.broker,
        "DEBUG": "0",
        "DJANGO_SETTINGS_MODULE": "bench.api_settings",
        # High enough never to refuse: the throttle does all its work, and every answer
        # is the endpoint's own.
        "THROTTLE_EVENTS": "10000000/min",
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
    }
    os.environ.update(env)
    env = {**os.environ, **env}
    redis.Redis.from_url(args.broker).flushdb()
    log(f"database {args.database}: recreating and migrating")
    common.database_recreate(args.postgres, args.database)
    migrate(env)

    import django

    django.setup()
    from django.conf import settings

    token = setup()
    # The load generator shares this process with Django's modules (about 150,000 objects):
    # keep its full collections from pausing the clients (an 80-120 ms pause was seen).
    gc.collect()
    gc.freeze()
    out_dir = Path(settings.VAR_DIR) / "bench"
    out_dir.mkdir(parents=True, exist_ok=True)
    trivial = request_bytes("GET", "/bench/trivial/", None, None)

    def event(i: int) -> bytes:
        return request_bytes(
            "POST", "/api/v1/events/", token, {"type": "bench.api", "payload": {"i": i}}
        )

    results: dict[str, Any] = {}
    server = Server(env, out_dir / f"api-{stamp}-daphne.log", throttle="project").start()
    try:
        results["trivial"] = phase("trivial DRF view", args, server, lambda i: trivial)
        results["events"] = phase("POST /api/v1/events/", args, server, event)
        half = results["events"]["requests_per_second"] / 2
        results["events_half_rate"] = phase(
            f"POST /api/v1/events/ at {half:.0f}/s", args, server, event, rate=half
        )
    finally:
        server.stop()
    server = Server(env, out_dir / f"api-{stamp}-daphne-drf.log", throttle="drf").start()
    try:
        results["events_drf_throttle"] = phase(
            "POST /api/v1/events/, DRF ScopedRateThrottle", args, server, event
        )
        results["trivial_drf_server"] = phase(
            "trivial DRF view (2nd server)", args, server, lambda i: trivial
        )
    finally:
        server.stop()
    ratio = results["events"]["requests_per_second"] / results["trivial"]["requests_per_second"]
    ratio_drf = (
        results["events_drf_throttle"]["requests_per_second"]
        / results["trivial_drf_server"]["requests_per_second"]
    )
    result = {
        "benchmark": "api",
        "timestamp": stamp,
        "settings": {
            "seconds": args.seconds,
            "connections": args.connections,
            "quiet_wait": args.quiet_wait,
        },
        **results,
        "events_over_trivial": round(ratio, 3),
        "events_drf_throttle_over_trivial": round(ratio_drf, 3),
        "goal_events_over_trivial": GOAL,
        "bench_seconds": round(time.perf_counter() - started, 1),
    }
    output = args.output or out_dir / f"api-{stamp}.json"
    output.write_text(json.dumps(result, indent=2) + "\n")
    half_run = results["events_half_rate"]
    rows = [
        ("trivial DRF view", f"{results['trivial']['requests_per_second']:.0f} req/s"),
        ("POST /api/v1/events/", f"{results['events']['requests_per_second']:.0f} req/s"),
        ("events / trivial", f"{ratio:.3f}  (target >= {GOAL})"),
        (
            "server CPU per request",
            f"trivial {results['trivial']['server_cpu_ms_per_request']:.2f} ms, events "
            f"{results['events']['server_cpu_ms_per_request']:.2f} ms (+ PostgreSQL "
            f"{results['events']['postgres_cpu_ms_per_request']:.2f} ms), events with DRF's "
            f"throttle {results['events_drf_throttle']['server_cpu_ms_per_request']:.2f} ms",
        ),
        (
            "events at half its rate",
            f"{half_run['requests_per_second']:.0f} req/s: p50 {half_run['p50_ms']:.1f} ms, "
            f"p99 {half_run['p99_ms']:.1f} ms (target p99 < 50 ms)",
        ),
        (
            "events, DRF's throttle",
            f"{results['events_drf_throttle']['requests_per_second']:.0f} req/s vs trivial "
            f"{results['trivial_drf_server']['requests_per_second']:.0f} req/s "
            f"on the same server: {ratio_drf:.3f}",
        ),
        (
            "other load (during)",
            ", ".join(f"{key} {other_load_text(results[key])}" for key in results),
        ),
        ("connections", str(args.connections)),
        ("bench run time", f"{result['bench_seconds']:.1f} s"),
    ]
    width = max(len(label) for label, _ in rows)
    print("-" * (width + 40))
    print("Flowdesk events API benchmark")
    print("-" * (width + 40))
    for label, value in rows:
        print(f"{label.ljust(width)}  {value}")
    print(f"figures: {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
