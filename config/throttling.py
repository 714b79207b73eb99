"""API rate limits that degrade open.

DRF's throttles count requests in the shared cache, which by default lives on the broker's
Redis. When that cache cannot be reached, a request is let through (and the outage logged)
instead of failing: an event posted while Redis is down is still stored in the outbox and
answered 202, and dispatched once the broker is back.
"""

from __future__ import annotations

import logging
from typing import Any

from rest_framework.throttling import ScopedRateThrottle

logger = logging.getLogger(__name__)


class CacheTolerantScopedRateThrottle(ScopedRateThrottle):
    """``ScopedRateThrottle`` (the ``throttle_scope`` of a view), allowing requests while
    the cache it counts in is unreachable."""

    def allow_request(self, request: Any, view: Any) -> bool:
        try:
            return super().allow_request(request, view)
        except Exception:  # the cache backend's connection errors (redis, OSError)
            logger.warning(
                "rate limit cache unavailable; request %s allowed", request.path, exc_info=True
            )
            return True
