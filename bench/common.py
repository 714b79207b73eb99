"""What the benchmarks share: the services they own, logging, and a fresh, migrated
database of their own."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

import psycopg
from psycopg import sql

ROOT = Path(__file__).resolve().parent.parent


def add_owned_services(parser: argparse.ArgumentParser, *, database: str, broker: str) -> None:
    """``--postgres``, ``--database`` and ``--broker``: the server, and the database and Redis
    database the benchmark owns (drops, flushes)."""
    parser.add_argument(
        "--postgres",
        default="postgres://postgres@127.0.0.1:5432",
        help="PostgreSQL server URL without a database name",
    )
    parser.add_argument(
        "--database",
        default=database,
        help=f"database the benchmark DROPS and creates (must contain 'bench'; default {database})",
    )
    parser.add_argument(
        "--broker",
        default=broker,
        help=f"Redis URL of the broker and cache; the benchmark FLUSHES this "
        f"database (default {broker})",
    )


def check_owned_services(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Refuse a database or a Redis database the benchmark should not destroy."""
    if "bench" not in args.database:
        parser.error("--database must contain 'bench': the benchmark drops it")
    if urlsplit(args.broker).path.strip("/") in ("", "0"):
        parser.error("--broker must name a Redis database other than 0: the benchmark flushes it")


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def database_recreate(server_url: str, database: str) -> None:
    """Drop (forcing out any session) and create ``database`` on the server."""
    with psycopg.connect(f"{server_url.rstrip('/')}/postgres", autocommit=True) as conn:
        name = sql.Identifier(database)
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(name))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(name))


def migrate(env: dict[str, str], attempts: int = 3) -> float:
    """``manage.py migrate`` with ``env``; retried (a tree being edited can fail to import
    for a moment), with the last attempt's output shown if all fail. Returns seconds."""
    started = time.perf_counter()
    for attempt in range(1, attempts + 1):
        done = subprocess.run(
            [sys.executable, "manage.py", "migrate", "--noinput", "--verbosity", "0"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
        )
        if done.returncode == 0:
            return time.perf_counter() - started
        if attempt < attempts:
            last = (done.stderr.strip().splitlines() or ["?"])[-1]
            log(f"migrate failed ({last[:120]}); retrying in 5s")
            time.sleep(5)
    sys.stderr.write(done.stdout + done.stderr)
    raise RuntimeError("manage.py migrate failed; its output is above")


def owned_database_url(args: argparse.Namespace) -> str:
    """The URL of the benchmark's own database (``--postgres`` and ``--database``)."""
    return f"{args.postgres.rstrip('/')}/{args.database}"


def owned_services_prepare(args: argparse.Namespace, **extra_env: str) -> float:
    """Point this process at the benchmark's own services (``DATABASE_URL``, the broker as
    ``CELERY_BROKER_URL`` and ``CACHE_URL``, ``DEBUG=0``, plus ``extra_env``), flush the
    broker's Redis database, drop and create the database and migrate it; returns the
    migration's seconds."""
    import redis

    os.environ.update(
        {
            "DATABASE_URL": owned_database_url(args),
            "CELERY_BROKER_URL": args.broker,
            "CACHE_URL": args.broker,
            "DEBUG": "0",
            "DJANGO_SETTINGS_MODULE": "config.settings",
            **extra_env,
        }
    )
    redis.Redis.from_url(args.broker).flushdb()
    database_recreate(args.postgres, args.database)
    return migrate(os.environ.copy())


# --- waiting for a quiet machine ----------------------------------------------------------

QUIET_SHARE = 0.10  # the share of the machine others may use for a phase to count as quiet


def add_quiet_wait(parser: argparse.ArgumentParser, default: float = 300) -> None:
    """``--quiet-wait``: how long to wait before each measured phase for a quiet machine."""
    parser.add_argument(
        "--quiet-wait",
        type=float,
        default=default,
        help="before each measured phase, wait up to this many seconds for other processes "
        f"to use less than {QUIET_SHARE * 100:.0f}%% of the machine "
        f"(default {default:g}; 0: do not wait)",
    )


def other_load(database: str, seconds: float = 2.0) -> float:
    """The share of the machine used over ``seconds`` by processes that are not this
    benchmark (this process and its children), its database's backends or Redis."""
    from bench.cpu import CpuMeter

    meter = CpuMeter(database=database).start()
    time.sleep(seconds)
    meter.stop()
    share = meter.summary(1).get("other_share_of_machine", 0.0)
    return float(share) if isinstance(share, int | float) else 0.0


def wait_for_quiet(wait: float, database: str, phase: str = "") -> float | None:
    """Wait up to ``wait`` seconds until other processes use less than ``QUIET_SHARE`` of
    the machine; the last share seen (None when ``wait`` is 0: not looked at)."""
    if wait <= 0:
        return None
    deadline = time.monotonic() + wait
    share = other_load(database)
    label = f"{phase}: " if phase else ""
    while share >= QUIET_SHARE and time.monotonic() < deadline:
        log(f"{label}other processes use {share:.0%} of the machine; waiting for quiet")
        time.sleep(3)
        share = other_load(database)
    if share >= QUIET_SHARE:
        log(f"{label}other processes still use {share:.0%} of the machine; going on")
    return share
