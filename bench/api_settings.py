"""Settings of the API benchmark's server (``python -m bench.api``): the project's, with
the URLs of ``bench.api_urls``. ``BENCH_THROTTLE=drf`` serves the API with DRF's own
``ScopedRateThrottle`` instead of the project's, to compare the two in one run."""

from __future__ import annotations

import os

from config.settings import *  # noqa: F403
from config.settings import REST_FRAMEWORK

ROOT_URLCONF = "bench.api_urls"

if os.environ.get("BENCH_THROTTLE") == "drf":
    REST_FRAMEWORK = {
        **REST_FRAMEWORK,
        "DEFAULT_THROTTLE_CLASSES": ["rest_framework.throttling.ScopedRateThrottle"],
    }
