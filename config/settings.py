"""Settings, read from the environment.

Every value that differs between a laptop and production comes from an environment
variable; the defaults give an embedded setup that needs no server (SQLite and kombu's
filesystem transport under ``var/``).

- ``DATABASE_URL``: e.g. ``postgres://postgres@127.0.0.1:5432/flowdesk``
  (default: ``sqlite:///var/db.sqlite3``).
- ``CELERY_BROKER_URL``: e.g. ``redis://127.0.0.1:6379/0`` or ``amqp://guest@127.0.0.1//``
  (default: the filesystem transport in ``var/broker``).
- ``CACHE_URL``: a ``redis://`` URL for the shared cache (default: the broker's Redis when
  the broker is Redis, else a file cache in ``var/cache``).
- ``FLOWDESK_VAR_DIR``: where the embedded database, broker, cache, secret key, static and
  media files live (default: ``var/`` in the checkout).
- ``FLOWDESK_SWEEP_{OUTBOX,WAKE,STALE,SLA}_SECONDS``: how often beat sends each sweep.
- ``SECRET_KEY`` (default: generated once and kept in ``var/secret_key``), ``DEBUG``,
  ``ALLOWED_HOSTS`` (comma-separated), ``CSRF_TRUSTED_ORIGINS``, ``TIME_ZONE``.
"""

from __future__ import annotations

import os
import secrets
import sys
from datetime import timedelta
from pathlib import Path
from typing import TypedDict

import dj_database_url
from celery.schedules import crontab  # noqa: F401  (available to schedule overrides)
from kombu import Exchange, Queue

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(os.environ.get("FLOWDESK_VAR_DIR", BASE_DIR / "var"))
VAR_DIR.mkdir(parents=True, exist_ok=True)
# Under pytest the embedded broker and cache get folders of their own, so a test run and a
# `make run` on the same checkout never share messages.
TESTING = "pytest" in sys.modules
_RUNTIME_DIR = VAR_DIR / "test" if TESTING else VAR_DIR


def env_bool(name: str, default: bool = False) -> bool:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def env_list(name: str, default: str = "") -> list[str]:
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


def _secret_key() -> str:
    key = os.environ.get("SECRET_KEY")
    if key:
        return key
    path = VAR_DIR / "secret_key"
    if not path.exists():
        path.write_text(secrets.token_urlsafe(64))
        path.chmod(0o600)
    return path.read_text().strip()


SECRET_KEY = _secret_key()
DEBUG = env_bool("DEBUG")
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", "127.0.0.1,localhost,[::1]")
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS")
CSRF_FAILURE_VIEW = "config.api.csrf_failure"  # the error shape under /api/

INSTALLED_APPS = [
    "daphne",  # first: its runserver serves HTTP and WebSockets (ASGI)
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "rest_framework",
    "rest_framework.authtoken",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_celery_beat",
    "django_htmx",
    "channels",
    "workflows",
    "automation",
    "tasks_inbox",
    "crm",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "config.middleware.RequestLimitsMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"
ASGI_APPLICATION = "config.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "config.context_processors.site",
            ],
            # Durations, shares and moments as people read them ({% load flowdesk %}).
            "libraries": {"flowdesk": "config.templatetags.flowdesk"},
        },
    },
]

# --- Database -------------------------------------------------------------------------

DATABASES = {
    "default": dj_database_url.config(
        default=f"sqlite:///{VAR_DIR / 'db.sqlite3'}",
        conn_max_age=int(os.environ.get("DB_CONN_MAX_AGE", "60")),
        conn_health_checks=True,
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Web, worker and beat share one file: WAL lets readers proceed while one writes,
    # IMMEDIATE transactions take the write lock up front instead of failing mid-way.
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    DATABASES["default"]["OPTIONS"] = {
        "timeout": 30,
        "transaction_mode": "IMMEDIATE",
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
DATABASE_IS_POSTGRES = DATABASES["default"]["ENGINE"].startswith("django.db.backends.postgresql")
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
ATOMIC_REQUESTS = False

# --- Cache ----------------------------------------------------------------------------

CELERY_BROKER_URL = os.environ.get("CELERY_BROKER_URL", "filesystem://")
_cache_url = os.environ.get("CACHE_URL") or (
    CELERY_BROKER_URL if CELERY_BROKER_URL.startswith(("redis://", "rediss://")) else ""
)
if _cache_url:
    CACHES: dict[str, dict[str, object]] = {
        "default": {
            "BACKEND": "config.cache.RedisCache",
            "LOCATION": _cache_url,
            "KEY_PREFIX": "flowdesk",
        }
    }
else:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.filebased.FileBasedCache",
            "LOCATION": str(_RUNTIME_DIR / "cache"),
        }
    }

# Live updates (automation.live). With Redis, the channel layer lives in the broker's Redis
# (or CHANNELS_REDIS_URL) under its own key prefix, so the worker's and beat's publishes reach
# the web process's sockets; not a separate CACHE_URL, whose cache.clear() flushes its db. The
# embedded default keeps an in-process layer: publishes from the web process reach sockets
# at once, and pages also re-fetch their live regions every few seconds to pick up what the
# worker changed (see README, "Live updates").
_channels_redis_url = os.environ.get("CHANNELS_REDIS_URL") or (
    CELERY_BROKER_URL if CELERY_BROKER_URL.startswith(("redis://", "rediss://")) else ""
)
if _channels_redis_url:
    _channels_config: dict[str, object] = {
        "hosts": [_channels_redis_url],
        "prefix": "flowdesk-live",
        "capacity": 500,
        "expiry": 30,
    }
    CHANNEL_LAYERS: dict[str, dict[str, object]] = {
        "default": {"BACKEND": "channels_redis.core.RedisChannelLayer", "CONFIG": _channels_config}
    }
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}

# --- Auth, i18n, static ---------------------------------------------------------------

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-us"
TIME_ZONE = os.environ.get("TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "staticfiles"
STATIC_ROOT.mkdir(exist_ok=True)
STATICFILES_DIRS = [BASE_DIR / "static"]
MEDIA_URL = "media/"
MEDIA_ROOT = VAR_DIR / "media"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": (
            "django.contrib.staticfiles.storage.StaticFilesStorage"
            if DEBUG
            else "whitenoise.storage.CompressedStaticFilesStorage"
        )
    },
}
WHITENOISE_USE_FINDERS = True
WHITENOISE_AUTOREFRESH = DEBUG

EMAIL_BACKEND = os.environ.get("EMAIL_BACKEND", "django.core.mail.backends.console.EmailBackend")
EMAIL_HOST = os.environ.get("EMAIL_HOST", "127.0.0.1")
EMAIL_PORT = int(os.environ.get("EMAIL_PORT", "25"))
DEFAULT_FROM_EMAIL = os.environ.get("DEFAULT_FROM_EMAIL", "flowdesk@localhost")
SITE_URL = os.environ.get("SITE_URL", "http://127.0.0.1:8000")
# Key material for encrypting stored secrets (default: derived from SECRET_KEY). Rotating
# SECRET_KEY without setting this makes stored secrets unreadable.
FLOWDESK_SECRETS_KEY = os.environ.get("FLOWDESK_SECRETS_KEY", "")
# When set, /metrics needs "Authorization: Bearer <token>".
METRICS_TOKEN = os.environ.get("METRICS_TOKEN", "")

# --- Security (production values when DEBUG is off) -----------------------------------

SESSION_COOKIE_HTTPONLY = True
CSRF_COOKIE_HTTPONLY = False  # htmx reads the token from the cookie-less header hx-headers
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
if not DEBUG:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SESSION_COOKIE_SECURE = env_bool("SESSION_COOKIE_SECURE", True)
    CSRF_COOKIE_SECURE = env_bool("CSRF_COOKIE_SECURE", True)
    SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", False)
    SECURE_HSTS_SECONDS = int(os.environ.get("SECURE_HSTS_SECONDS", "0"))

# --- Django REST framework ------------------------------------------------------------

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        # Token first: an anonymous API call gets 401 with a WWW-Authenticate header.
        "config.authentication.CachedTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_PARSER_CLASSES": [
        "config.parsers.LimitedJSONParser",
        "config.parsers.LimitedFormParser",
        "config.parsers.LimitedMultiPartParser",
    ],
    "DEFAULT_RENDERER_CLASSES": [
        "rest_framework.renderers.JSONRenderer",
        "rest_framework.renderers.BrowsableAPIRenderer",
    ],
    # API clients (a token) get the JSON the schema documents; the browsable API is for the
    # login session (config.negotiation).
    "DEFAULT_CONTENT_NEGOTIATION_CLASS": "config.negotiation.ApiContentNegotiation",
    "DEFAULT_PAGINATION_CLASS": "config.parsers.Pagination",
    "PAGE_SIZE": 50,
    "DEFAULT_FILTER_BACKENDS": [
        "config.filters.FilterBackend",
        "rest_framework.filters.OrderingFilter",
        "rest_framework.filters.SearchFilter",
    ],
    "DEFAULT_SCHEMA_CLASS": "config.schema.AutoSchema",
    "EXCEPTION_HANDLER": "config.api.exception_handler",
    "DEFAULT_THROTTLE_CLASSES": ["config.throttling.CacheTolerantScopedRateThrottle"],
    "DEFAULT_THROTTLE_RATES": {
        "events": os.environ.get("THROTTLE_EVENTS", "6000/min"),
        "login": "30/min",
    },
    "TEST_REQUEST_DEFAULT_FORMAT": "json",
}
# How long a process keeps a valid API token's lookup (config.authentication; 0: not at all).
API_TOKEN_CACHE_SECONDS = float(os.environ.get("API_TOKEN_CACHE_SECONDS", "5"))
# The one limit on request bodies under /api/, for every content type (413 PAYLOAD_TOO_LARGE);
# Django's own limit on form fields read into memory is the same.
API_MAX_BODY_BYTES = int(os.environ.get("API_MAX_BODY_BYTES", str(1024 * 1024)))
DATA_UPLOAD_MAX_MEMORY_SIZE = API_MAX_BODY_BYTES

SPECTACULAR_SETTINGS = {
    "TITLE": "Flowdesk API",
    "DESCRIPTION": (
        "Workflow automation for Django: events start workflows, conditions decide, steps run "
        "on Celery workers, people work their tasks in an inbox with SLAs. Every error has the "
        'shape {"error": {"code", "message", "fields"}}.'
    ),
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    # Swagger UI's files come from the pinned drf-spectacular-sidecar package: the docs
    # page needs no CDN.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    "ENUM_NAME_OVERRIDES": {
        "RunStatusEnum": "automation.models.RunStatus",
        "StepStatusEnum": "automation.models.StepStatus",
    },
}

# --- Celery ---------------------------------------------------------------------------

CELERY_BROKER_TRANSPORT_OPTIONS: dict[str, object] = {}
if CELERY_BROKER_URL.startswith("filesystem://"):
    _broker_dir = _RUNTIME_DIR / "broker"
    for _sub in ("queue", "processed", "control"):
        (_broker_dir / _sub).mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_broker_dir / "queue"),
        "data_folder_out": str(_broker_dir / "queue"),
        "processed_folder": str(_broker_dir / "processed"),
        "control_folder": str(_broker_dir / "control"),
        "store_processed": False,
        "polling_interval": 0.1,
    }
elif CELERY_BROKER_URL.startswith(("redis://", "rediss://")):
    # An unacknowledged message comes back after this long if its worker vanished.
    # The engine's own sweeps recover stale runs sooner, from the database.
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "visibility_timeout": int(os.environ.get("CELERY_VISIBILITY_TIMEOUT", "3600")),
    }

# A Redis that accepts connections but never answers (hung, or a half-open socket after a
# failover) must not hold a request, an emit() or a drain: every client of it (the broker's
# publishes, the cache, the channel layer) gives up after FLOWDESK_REDIS_SOCKET_TIMEOUT
# seconds, without retrying on the timeout, and what could not be published is left to the
# sweeps. Longer than the worker's 1 s BRPOP poll.
REDIS_SOCKET_TIMEOUT = float(os.environ.get("FLOWDESK_REDIS_SOCKET_TIMEOUT", "2"))
if CELERY_BROKER_URL.startswith(("redis://", "rediss://")):
    CELERY_BROKER_TRANSPORT_OPTIONS |= {
        "socket_timeout": REDIS_SOCKET_TIMEOUT,
        "socket_connect_timeout": REDIS_SOCKET_TIMEOUT,
        "retry_on_timeout": False,
    }
    CELERY_BROKER_CONNECTION_TIMEOUT = REDIS_SOCKET_TIMEOUT
if _cache_url:  # the Redis cache
    CACHES["default"]["OPTIONS"] = {
        "socket_timeout": REDIS_SOCKET_TIMEOUT,
        "socket_connect_timeout": REDIS_SOCKET_TIMEOUT,
    }
if _channels_redis_url:  # the Redis channel layer
    _channels_config["hosts"] = [
        {
            "address": _channels_redis_url,
            "socket_timeout": REDIS_SOCKET_TIMEOUT,
            "socket_connect_timeout": REDIS_SOCKET_TIMEOUT,
        }
    ]

CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_IGNORE_RESULT = True
CELERY_RESULT_BACKEND = None
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TIMEZONE = TIME_ZONE
CELERY_TASK_DEFAULT_QUEUE = "steps"
CELERY_TASK_QUEUES = (
    Queue("steps", Exchange("steps"), routing_key="steps"),
    Queue("sweeps", Exchange("sweeps"), routing_key="sweeps"),
)
CELERY_TASK_ROUTES = {"flowdesk.sweep.*": {"queue": "sweeps"}}
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
# Keep database connections across tasks (see config.celery.refresh_db_connections).
CELERY_DB_REUSE_MAX = 10**9
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
# Beat writes each schedule's last run to the database every 3 minutes, or after this many
# sends (0: only by time).
CELERY_BEAT_SYNC_EVERY = int(os.environ.get("CELERY_BEAT_SYNC_EVERY", "0"))


# Declared here, synced into django-celery-beat's tables when beat starts. Each sweep's
# interval can be set in seconds: FLOWDESK_SWEEP_OUTBOX_SECONDS, FLOWDESK_SWEEP_WAKE_SECONDS,
# FLOWDESK_SWEEP_STALE_SECONDS, FLOWDESK_SWEEP_SLA_SECONDS. A message a sweep sends expires
# after two intervals, so sweeps never pile up behind a busy worker.
class BeatEntry(TypedDict):
    task: str
    schedule: timedelta
    options: dict[str, str | float]


def _sweep(task: str, env: str, default: float) -> BeatEntry:
    seconds = float(os.environ.get(env) or default)
    return {
        "task": task,
        "schedule": timedelta(seconds=seconds),
        "options": {"queue": "sweeps", "expires": 2 * seconds},
    }


CELERY_BEAT_SCHEDULE: dict[str, BeatEntry] = {
    "outbox-redispatch": _sweep("flowdesk.sweep.outbox", "FLOWDESK_SWEEP_OUTBOX_SECONDS", 15),
    "runs-wake-due": _sweep("flowdesk.sweep.wake_due", "FLOWDESK_SWEEP_WAKE_SECONDS", 10),
    "runs-resume-stale": _sweep("flowdesk.sweep.stale_runs", "FLOWDESK_SWEEP_STALE_SECONDS", 60),
    "sla-sweep": _sweep("flowdesk.sweep.sla", "FLOWDESK_SWEEP_SLA_SECONDS", 60),
}

# --- The engine -----------------------------------------------------------------------


class FlowdeskSettings(TypedDict):
    """The engine's own settings (``settings.FLOWDESK``), each explained below."""

    MAX_CAUSATION_DEPTH: int
    OUTBOX_GRACE_SECONDS: int
    STALE_RUN_SECONDS: int
    DISPATCH_BATCH_SIZE: int
    DISPATCH_DOORBELL_SECONDS: int
    DISPATCH_COALESCE_SECONDS: float
    DISPATCH_INLINE_SECONDS: float
    SWEEP_BATCH_SIZE: int
    WEBHOOK_ALLOW_HOSTS: list[str]
    ACTION_MODULES: list[str]
    EVENT_TYPES: list[str]
    WAKE_MESSAGE_MAX_SECONDS: float


FLOWDESK: FlowdeskSettings = {
    # Events chained by workflows past this depth fail the run instead of looping.
    "MAX_CAUSATION_DEPTH": int(os.environ.get("FLOWDESK_MAX_CAUSATION_DEPTH", "10")),
    # An event not dispatched after this long is picked up by the outbox sweep.
    "OUTBOX_GRACE_SECONDS": int(os.environ.get("FLOWDESK_OUTBOX_GRACE_SECONDS", "10")),
    # A running step not heard of for this long is considered lost with its worker. Longer
    # than the longest external call a step may make (webhooks are capped at 300 s);
    # long steps (exports) refresh ``updated_at`` as they go.
    "STALE_RUN_SECONDS": int(os.environ.get("FLOWDESK_STALE_RUN_SECONDS", "600")),
    # Events dispatched per transaction when workers drain the outbox.
    "DISPATCH_BATCH_SIZE": int(os.environ.get("FLOWDESK_DISPATCH_BATCH_SIZE", "25")),
    # While a drain message is on its way, new events do not publish another; after this
    # long without a worker taking it (lost, or stuck behind a backlog), they do again.
    "DISPATCH_DOORBELL_SECONDS": 5,
    # A drain message waits until a batch's worth of events has rung, or this long after
    # the first of them, before it claims, so that events committed meanwhile join its
    # batch instead of each paying a batch's fixed cost (and p99 stays well under 1 s).
    "DISPATCH_COALESCE_SECONDS": float(os.environ.get("FLOWDESK_DISPATCH_COALESCE_SECONDS", "0.1")),
    # A batch starts its runs' steps itself for this long; later runs go to other workers.
    "DISPATCH_INLINE_SECONDS": float(os.environ.get("FLOWDESK_DISPATCH_INLINE_SECONDS", "1")),
    "SWEEP_BATCH_SIZE": int(os.environ.get("FLOWDESK_SWEEP_BATCH_SIZE", "500")),
    # Hosts call_webhook may reach even though they resolve to private addresses.
    "WEBHOOK_ALLOW_HOSTS": env_list("FLOWDESK_WEBHOOK_ALLOW_HOSTS"),
    # Extra modules that register step types (host code's own ``@step_type``s).
    "ACTION_MODULES": env_list("FLOWDESK_ACTION_MODULES"),
    # Domain events declared without code (free-form payloads), for clients that post
    # them to /api/v1/events/; host code declares its own with automation.catalogue.
    "EVENT_TYPES": env_list("FLOWDESK_EVENT_TYPES"),
    # Short waits also get a broker message so they resume on time; all waits are swept.
    "WAKE_MESSAGE_MAX_SECONDS": float(os.environ.get("FLOWDESK_WAKE_MESSAGE_MAX_SECONDS", "600")),
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    # Every known secret value is masked in every record, whichever library logs it.
    "filters": {
        "quiet_sweeps": {"()": "config.celery.QuietSweepsFilter"},
        "mask_secrets": {"()": "automation.secrets.SecretMaskFilter"},
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": "plain",
            "filters": ["mask_secrets"],
        }
    },
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "INFO")},
    "loggers": {
        "django.db.backends": {"level": "WARNING"},
        # Beat's "Sending due task" and the worker's "received"/"succeeded" lines for the
        # sweeps are DEBUG (a sweep that did work logs its counts at INFO itself).
        "celery.beat": {"filters": ["quiet_sweeps"]},
        "celery.worker.strategy": {"filters": ["quiet_sweeps"]},
        "celery.app.trace": {"filters": ["quiet_sweeps"]},
        # The filesystem transport has no host and says so on every connection.
        "kombu.connection": {"level": "ERROR"},
    },
}
