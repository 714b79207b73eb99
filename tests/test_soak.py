"""The chaos soak, shortened: 200 events through web, beat and two workers on a private
Redis and a private PostgreSQL cluster, with workers SIGKILLed, the Redis restarted and the
PostgreSQL cluster restarted; every event, run and effect exactly once, every run finished.

The full run (1,800 events, up to 48 kills) is ``python -m bench.soak`` (``make soak``);
its figures are in bench/README.md.
"""

from __future__ import annotations

import os
import shutil
from typing import Any

import pytest

from bench.soak import SoakConfig, postgres_bin_dir, private_database, report, run_soak
from tests.conftest import ARTIFACTS

if postgres_bin_dir() is None and os.environ.get("REQUIRE_SERVICES") == "1":
    raise RuntimeError("the soak needs the PostgreSQL server binaries (initdb, pg_ctl)")

pytestmark = [
    pytest.mark.worker,
    pytest.mark.postgres,
    pytest.mark.redis,
    pytest.mark.skipif(shutil.which("redis-server") is None, reason="needs redis-server"),
    pytest.mark.skipif(
        postgres_bin_dir() is None, reason="needs the PostgreSQL server binaries (initdb, pg_ctl)"
    ),
    pytest.mark.timeout(900),
]


def test_soak_every_event_once_every_run_final_under_faults(transactional_db: Any) -> None:
    config = SoakConfig(
        events=200,
        workers=2,
        kills=3,
        kill_every=8,
        redis_restarts=1,
        pg_terminations=1,
        settle_timeout=600,
        log_dir=ARTIFACTS / "soak",
    )
    with private_database(config.log_dir, "flowdesk_soak_test") as cluster:
        figures = run_soak(config, cluster.url, cluster)
    print(report(figures))
    assert figures["problems"] == [], report(figures)
    assert figures["settled"]
    assert figures["events_lost"] == 0 and figures["stuck"] == 0
    assert figures["runs_completed"] == 2 * config.events  # the order runs and chained ones
    assert set(figures["duplicates"].values()) == {0}
    assert figures["webhook_ids"] == config.events
    # The faults did happen (a soak without them proves nothing).
    assert figures["kills"] >= 1
    assert figures["redis_restarts"] == 1
    assert figures["pg_terminations"] == 1
