"""API rate limits: a constant cost per request, and degrading open.

DRF's ``ScopedRateThrottle`` keeps, per client, the list of its request times in the cache
and rewrites it on every request: its cost grows with the requests in the window (at
6000/min a busy client's list has thousands of entries to read, trim and write back).
``CacheTolerantScopedRateThrottle`` keeps the same scopes, rates and cache keys but counts
in fixed windows: one counter per client and window, incremented with one round trip
(one script on Redis: ``INCR``, and ``EXPIRE`` when it made the counter), whatever the
traffic. Over the limit it
answers 429 with ``Retry-After``: the seconds until the window ends. (A fixed window lets a
client send up to twice its rate across a window boundary; that is the price of O(1).)

The counters live in the shared cache, by default on the broker's Redis. When that cache
cannot be reached, a request is let through (and the outage logged) instead of failing: an
event posted while Redis is down is still stored in the outbox and answered 202, and
dispatched once the broker is back.
"""

from __future__ import annotations

import logging
from typing import Any

from django.core.cache import cache
from rest_framework.throttling import ScopedRateThrottle

from config.cache import redis_for, run_script

logger = logging.getLogger(__name__)

# One command instead of a pipeline of two: the counter and its expiry set atomically.
WINDOW_COUNT_SCRIPT = """
local count = redis.call('INCR', KEYS[1])
if count == 1 then redis.call('EXPIRE', KEYS[1], ARGV[1]) end
return count
"""


def window_count(key: str, timeout: int) -> int:
    """Add one to the counter ``key`` (created with a ``timeout``), return its new value."""
    found = redis_for(key)
    if found is not None:
        client, full_key = found
        return int(run_script(client, WINDOW_COUNT_SCRIPT, full_key, [timeout]))
    # Other backends: create the counter if missing, then increment it (two calls).
    cache.add(key, 0, timeout)
    return int(cache.incr(key))


class CacheTolerantScopedRateThrottle(ScopedRateThrottle):
    """``ScopedRateThrottle`` (the ``throttle_scope`` of a view, its rate in
    ``DEFAULT_THROTTLE_RATES``) counted in fixed windows, allowing requests while the cache
    it counts in is unreachable."""

    def allow_request(self, request: Any, view: Any) -> bool:
        # As ScopedRateThrottle: the view's scope decides the rate; no scope, no limit.
        self.scope = getattr(view, self.scope_attr, None)
        if not self.scope:
            return True
        self.rate = self.get_rate()
        num_requests, duration = self.parse_rate(self.rate)
        if self.rate is None or num_requests is None or duration is None:
            return True
        self.num_requests, self.duration = num_requests, duration
        self.key = self.get_cache_key(request, view)
        if self.key is None:
            return True
        self.now = self.timer()
        window = int(self.now // duration)
        try:
            count = window_count(f"{self.key}:{window}", duration + 1)
        except Exception:  # the cache backend's connection errors (redis, OSError)
            logger.warning(
                "rate limit cache unavailable; request %s allowed", request.path, exc_info=True
            )
            return True
        return count <= num_requests

    def wait(self) -> float | None:
        """Seconds until the current window ends (at least one)."""
        if self.duration is None:
            return None
        return max(self.duration - (self.now % self.duration), 1.0)
