"""Django settings for testbed, read from the environment (see README, "Configuration").

Embedded default (no variables set): SQLite under var/ in WAL mode with IMMEDIATE
transactions, and a Celery broker on the local filesystem. Production sets DATABASE_URL,
REDIS_URL (or CELERY_BROKER_URL), SECRET_KEY, DEBUG=0 and ALLOWED_HOSTS.
"""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path

from csp.constants import NONE, SELF, UNSAFE_INLINE

from testbed.env import (
    SettingError,
    database_from_env,
    env_bool,
    env_int,
    env_list,
    env_networks,
    env_str,
    next_redis_db,
    url_from_env,
)
from testbed.spreadsheets import ADMIN_FORMATS

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(env_str("TESTBED_VAR_DIR", str(BASE_DIR / "var")))

DEBUG = env_bool("DEBUG", True)
_DEV_SECRET = "dev-only-insecure-secret-key-change-me-for-any-real-deployment"  # noqa: S105
SECRET_KEY = env_str("SECRET_KEY", _DEV_SECRET if DEBUG else "")
if not SECRET_KEY:
    raise SettingError(
        "SECRET_KEY is not set and DEBUG is off: set SECRET_KEY to a long random string, e.g. "
        "python -c 'import secrets; print(secrets.token_urlsafe(50))'."
    )
if not DEBUG and SECRET_KEY == _DEV_SECRET:
    raise SettingError(
        "SECRET_KEY is the development key while DEBUG is off: set SECRET_KEY to a secret value."
    )
if len(SECRET_KEY) < 32:
    raise SettingError(
        "SECRET_KEY is shorter than 32 characters: set SECRET_KEY to a long random string."
    )

ALLOWED_HOSTS = env_list(
    "ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]", "testserver"] if DEBUG else []
)
if not DEBUG and not ALLOWED_HOSTS:
    raise SettingError(
        "ALLOWED_HOSTS is not set and DEBUG is off: set ALLOWED_HOSTS to the host names served, e.g. testbed.example.kr."
    )
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.postgres",
    "rest_framework",
    "knox",
    "csp",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "import_export",
    "django_celery_beat",
    "testbed",
    "equipment",
    "booking",
    "seeds",
    "django_htmx",
    "portal",
    "integrations.webhooks",
    "integrations.calendars",
    "integrations.slurm",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    # One read of the read-mostly cache's generation per request (testbed/readcache.py).
    "testbed.readcache.ReadCacheMiddleware",
    "django_permissions_policy.PermissionsPolicyMiddleware",
    "csp.middleware.CSPMiddleware",
    # 413 problem+json for an oversized API body before anything reads it (testbed/api/parsers.py).
    "testbed.api.parsers.BodySizeLimitMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # A view that fails because PostgreSQL is away answers 503, not 500 (testbed/unavailable.py).
    "testbed.unavailable.DatabaseUnavailableMiddleware",
]

if not DEBUG:
    # Serves the collected static files (admin, API docs) in production without another server;
    # with DEBUG on, runserver serves them from the apps.
    MIDDLEWARE.insert(1, "whitenoise.middleware.WhiteNoiseMiddleware")

ROOT_URLCONF = "testbed.urls"
WSGI_APPLICATION = "testbed.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "testbed" / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.template.context_processors.i18n",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

if not DEBUG and not env_str("DATABASE_URL", "") and not env_bool("TESTBED_ALLOW_EMBEDDED", False):
    raise SettingError(
        "DATABASE_URL is not set and DEBUG is off: set DATABASE_URL=postgres://USER:PASS@HOST:5432/NAME "
        "(the embedded SQLite database is for trying the product; TESTBED_ALLOW_EMBEDDED=1 accepts it)."
    )
DATABASES = {"default": database_from_env("DATABASE_URL", VAR_DIR / "testbed.sqlite3")}
# Keep connections open between requests and tasks (a new PostgreSQL connection costs milliseconds).
DATABASES["default"]["CONN_MAX_AGE"] = env_int("DB_CONN_MAX_AGE", 60, minimum=0)
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# The model backend, refusing an account for a while after repeated wrong passwords (API and
# admin alike): testbed/login_guard.py.
AUTHENTICATION_BACKENDS = ["testbed.login_guard.LockoutModelBackend"]
# Wrong passwords for one account within the window before its sign-ins are refused until the
# window ends. Counted per account, so other people behind the same address can still sign in.
LOGIN_ACCOUNT_MAX_FAILURES = env_int("LOGIN_ACCOUNT_MAX_FAILURES", 10, minimum=1)
LOGIN_ACCOUNT_WINDOW_SECONDS = env_int("LOGIN_ACCOUNT_WINDOW_SECONDS", 900, minimum=1)

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "ko"
LANGUAGES = [("ko", "한국어"), ("en", "English")]
LOCALE_PATHS = [BASE_DIR / "locale"]
TIME_ZONE = "Asia/Seoul"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
# Front-end packages come from npm (package.json, installed by `make install` and the image build)
# and are served from here, never from a CDN.
_HTMX_DIST = BASE_DIR / "node_modules" / "htmx.org" / "dist"
STATICFILES_DIRS = [("vendor/htmx", _HTMX_DIST)] if _HTMX_DIST.is_dir() else []
LOGIN_URL = "/login/"
LOGIN_REDIRECT_URL = "/"
STATIC_ROOT = Path(env_str("STATIC_ROOT", str(BASE_DIR / "staticfiles")))
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"
        if DEBUG
        else "whitenoise.storage.CompressedManifestStaticFilesStorage"
    },
}

# --- Redis / Celery -------------------------------------------------------------------------
REDIS_URL = env_str("REDIS_URL", "")
if REDIS_URL:
    url_from_env("REDIS_URL", REDIS_URL, schemes={"redis", "rediss"}, need_host=True)
CELERY_BROKER_URL = url_from_env(
    "CELERY_BROKER_URL",
    REDIS_URL or "filesystem://",
    schemes={"redis", "rediss", "amqp", "filesystem", "memory"},
)
CELERY_RESULT_BACKEND = env_str("CELERY_RESULT_BACKEND", REDIS_URL or "")
if not CELERY_RESULT_BACKEND:
    CELERY_RESULT_BACKEND = None  # type: ignore[assignment]
if CELERY_BROKER_URL.startswith("filesystem://"):
    _queue_dir = VAR_DIR / "celery"
    for _sub in ("out", "processed", "control"):
        (_queue_dir / _sub).mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_queue_dir / "out"),
        "data_folder_out": str(_queue_dir / "out"),
        "processed_folder": str(_queue_dir / "processed"),
        "control_folder": str(_queue_dir / "control"),
        "store_processed": False,
        "polling_interval": 0.2,
    }
CELERY_TASK_ALWAYS_EAGER = False
# The queue web processes publish to and workers consume (tests give each run its own).
CELERY_TASK_DEFAULT_QUEUE = env_str("CELERY_TASK_DEFAULT_QUEUE", "celery")
# Work that waits on other systems (webhook receivers, Slurm, the mail server) has a queue of its
# own, served by its own worker (docker-compose.yml `worker-integrations`), so a slow receiver can
# never hold up booking decisions, which the default queue's workers do alone.
TESTBED_INTEGRATIONS_QUEUE = env_str("TESTBED_INTEGRATIONS_QUEUE", "integrations")
CELERY_TASK_ROUTES = {
    "webhooks.*": {"queue": TESTBED_INTEGRATIONS_QUEUE},
    "slurm.*": {"queue": TESTBED_INTEGRATIONS_QUEUE},
    "booking.send_booking_email": {"queue": TESTBED_INTEGRATIONS_QUEUE},
}
CELERY_TASK_ACKS_LATE = True
# Outcomes live in the database; storing task results would cost a Redis write (and a result
# subscription on the sender) per booking. Tasks whose result is read say ignore_result=False.
CELERY_TASK_IGNORE_RESULT = True
# Celery's Django fixup closes every database connection before and after each task unless this
# is set, so each booking decision paid for a new PostgreSQL connection (a backend fork and a
# cold catalogue cache). testbed/celery.py handles connections the way Django handles requests
# instead (close_old_connections: CONN_MAX_AGE and health checks), so the fixup's own recycling
# is pushed out of the way.
CELERY_DB_REUSE_MAX = 1_000_000_000
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TIMEZONE = TIME_ZONE
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# A task running when the broker connection drops (Redis restarted) is cancelled and, being
# acks_late and idempotent, delivered again, instead of acknowledged on a connection that is gone
# (kombu's Redis transport could crash the worker there; the fault drill restart_redis).
CELERY_WORKER_CANCEL_LONG_RUNNING_TASKS_ON_CONNECTION_LOSS = True

# The cache gets its own Redis database (the broker's number + 1 unless CACHE_URL says), so that
# clearing the cache (FLUSHDB) can never drop queued Celery messages or their bindings.
CACHE_URL = env_str("CACHE_URL", next_redis_db(REDIS_URL) if REDIS_URL else "")
if CACHE_URL:
    url_from_env("CACHE_URL", CACHE_URL, schemes={"redis", "rediss"}, need_host=True)
CACHES = {
    "default": (
        {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": CACHE_URL}
        if CACHE_URL
        else {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}
    )
}

# Sign-in attempts per client address (see TRUSTED_PROXIES), in DRF's rate notation.
LOGIN_RATE = env_str("LOGIN_RATE", "30/min")
if not re.fullmatch(r"[1-9][0-9]*/(s|sec|second|m|min|minute|h|hour|d|day)", LOGIN_RATE):
    raise SettingError(
        f"LOGIN_RATE={LOGIN_RATE!r} is not a rate: set LOGIN_RATE to a count per period, e.g. 30/min or 200/hour."
    )

# --- REST framework -------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "testbed.api.auth.BearerTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": [
        "rest_framework.permissions.IsAuthenticated",
        "testbed.api.permissions.KeyScopes",
    ],
    "DEFAULT_PAGINATION_CLASS": "testbed.api.pagination.StandardPagination",
    "PAGE_SIZE": 50,
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "testbed.api.errors.problem_exception_handler",
    "DATETIME_FORMAT": "iso-8601",
    # JSON nested deeper than 32 levels or over TESTBED_MAX_BODY_BYTES is refused (400/413).
    "DEFAULT_PARSER_CLASSES": [
        "testbed.api.parsers.BoundedJSONParser",
        "rest_framework.parsers.FormParser",
        "rest_framework.parsers.MultiPartParser",
    ],
    "DEFAULT_RENDERER_CLASSES": [
        "testbed.api.renderers.JSONRenderer",
        "testbed.api.negotiation.BrowsableAPIRenderer",
    ],
    "DEFAULT_CONTENT_NEGOTIATION_CLASS": "testbed.api.negotiation.FormatNegotiation",
    "TEST_REQUEST_DEFAULT_FORMAT": "json",
    # Throttles key anonymous callers on testbed.security.client_address (TRUSTED_PROXIES).
    "DEFAULT_THROTTLE_RATES": {"login": LOGIN_RATE},
}

# API sign-in tokens (django-rest-knox): stored as SHA-512 digests, never in clear. A token
# lives TOKEN_TTL_HOURS from its last use (sliding, at most TOKEN_MAX_TTL_HOURS after sign-in),
# so a person signs in about once a working day and a leaked token dies within hours; scripts
# and integrations use organisation API keys (tbk_...), which are scoped and revocable instead.
TOKEN_TTL_HOURS = env_int("TOKEN_TTL_HOURS", 12, minimum=1)
TOKEN_MAX_TTL_HOURS = env_int("TOKEN_MAX_TTL_HOURS", 168, minimum=1)
if TOKEN_MAX_TTL_HOURS < TOKEN_TTL_HOURS:
    raise SettingError(
        f"TOKEN_MAX_TTL_HOURS={TOKEN_MAX_TTL_HOURS} is shorter than TOKEN_TTL_HOURS={TOKEN_TTL_HOURS}: "
        "set TOKEN_MAX_TTL_HOURS to TOKEN_TTL_HOURS or more."
    )
REST_KNOX = {
    "TOKEN_TTL": timedelta(hours=TOKEN_TTL_HOURS),
    "AUTO_REFRESH": env_bool("TOKEN_AUTO_REFRESH", True),
    "AUTO_REFRESH_MAX_TTL": timedelta(hours=TOKEN_MAX_TTL_HOURS),
    # Write the new expiry at most once a minute per token, not on every request.
    "MIN_REFRESH_INTERVAL": 60,
    "AUTH_HEADER_PREFIX": "Bearer",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "testbed API",
    "DESCRIPTION": "Booking and scheduling for Korea's shared AI infrastructure.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    # Two choice sets answer as `status` (bookings, webhook deliveries): name each one.
    "ENUM_NAME_OVERRIDES": {
        "BookingStatusEnum": "booking.choices.BookingStatus",
        "WebhookDeliveryStatusEnum": "integrations.webhooks.models.DeliveryStatus",
    },
    # Error responses (problem+json) for every operation, and fixes where the generated schema
    # and what is sent disagree (testbed/api/schema.py).
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "testbed.api.schema.postprocess_problem_responses",
        "integrations.webhooks.api.event_schemas.postprocess_webhook_events",
    ],
}
# The largest request body the API reads (a full telemetry batch of 10,000 samples is ~2 MB);
# larger answers 413. Django's own limit for form bodies (the admin) is the same.
TESTBED_MAX_BODY_BYTES = env_int("TESTBED_MAX_BODY_BYTES", 5 * 1024 * 1024, minimum=1024)
DATA_UPLOAD_MAX_MEMORY_SIZE = TESTBED_MAX_BODY_BYTES

# Admin import/export (django-import-export): our formats write CSV/TSV as utf-8-sig and quote
# formula-like text (testbed/spreadsheets.py). The library's own escaping stays off: it only
# strips a leading "=" (data loss) and misses + - @.
IMPORT_EXPORT_FORMATS = ADMIN_FORMATS
IMPORT_EXPORT_ESCAPE_FORMULAE_ON_EXPORT = False

EMAIL_BACKEND = env_str("EMAIL_BACKEND", "django.core.mail.backends.console.EmailBackend")
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", "testbed@localhost")

# How long a booking may stay `pending` before the sweeper re-queues its allocation task.
TESTBED_PENDING_SWEEP_SECONDS = env_int("TESTBED_PENDING_SWEEP_SECONDS", 20, minimum=5)
# PostgreSQL lock_timeout for the allocation transaction, in milliseconds.
TESTBED_LOCK_TIMEOUT_MS = env_int("TESTBED_LOCK_TIMEOUT_MS", 2000, minimum=10)

LOG_LEVEL = env_str("LOG_LEVEL", "INFO").upper()
if LOG_LEVEL not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
    raise SettingError(
        f"LOG_LEVEL={LOG_LEVEL!r} is not a level: use DEBUG, INFO, WARNING, ERROR or CRITICAL."
    )

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {"django.db.backends": {"level": "WARNING"}},
}

# --- HTTP security ---------------------------------------------------------------------------
# Addresses of the reverse proxies in front of the web processes (IPs or CIDRs, comma-separated).
# Only a request from one of them has its X-Forwarded-For read (the right-most address that is
# not a proxy is the client) and its X-Forwarded-Proto trusted; anyone else's headers are ignored.
TRUSTED_PROXIES = env_networks("TRUSTED_PROXIES")
_proxy_ssl_header = env_str(
    "SECURE_PROXY_SSL_HEADER", "X-Forwarded-Proto" if TRUSTED_PROXIES else ""
)
if _proxy_ssl_header and not re.fullmatch(r"[A-Za-z0-9-]+", _proxy_ssl_header):
    raise SettingError(
        f"SECURE_PROXY_SSL_HEADER={_proxy_ssl_header!r} is not a header name: use e.g. X-Forwarded-Proto "
        "(the proxy must set it to https), or leave it empty when no proxy terminates TLS."
    )
if _proxy_ssl_header:
    SECURE_PROXY_SSL_HEADER = ("HTTP_" + _proxy_ssl_header.upper().replace("-", "_"), "https")

X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
if not DEBUG:
    SESSION_COOKIE_SECURE = env_bool("SESSION_COOKIE_SECURE", True)
    CSRF_COOKIE_SECURE = env_bool("CSRF_COOKIE_SECURE", True)
    SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", True)
    # The container health check calls /healthz over plain HTTP from inside.
    SECURE_REDIRECT_EXEMPT = [r"^healthz$"]
    SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 31_536_000, minimum=0)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", True)
    SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", False)
    if not SECURE_HSTS_PRELOAD:
        # Preloading is a commitment only the domain's owner can make (hstspreload.org); off by
        # default is a decision, not an oversight, so its deploy-check warning is silenced.
        SILENCED_SYSTEM_CHECKS = ["security.W021"]

# Content-Security-Policy (django-csp 4): everything from this origin, no inline script (the
# Swagger UI is served as a separate script, ReDoc without its inline init); inline styles are
# allowed because Swagger UI, ReDoc and the admin set style attributes. ReDoc runs its search
# in a blob: worker; both docs pages use data: images.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [SELF],
        "script-src": [SELF],
        "style-src": [SELF, UNSAFE_INLINE],
        "img-src": [SELF, "data:"],
        "font-src": [SELF, "data:"],
        "connect-src": [SELF],
        "worker-src": [SELF, "blob:"],
        "object-src": [NONE],
        "base-uri": [SELF],
        "form-action": [SELF],
        "frame-ancestors": [NONE],
    }
}
# Permissions-Policy (django-permissions-policy): the portal uses none of these browser features.
PERMISSIONS_POLICY: dict[str, list[str]] = {
    feature: []
    for feature in (
        "accelerometer",
        "autoplay",
        "camera",
        "display-capture",
        "geolocation",
        "gyroscope",
        "magnetometer",
        "microphone",
        "payment",
        "usb",
    )
}

# Turn the allocation locks off only to demonstrate that the exclusion constraint still holds.
TESTBED_ALLOCATION_LOCKING = env_bool("TESTBED_ALLOCATION_LOCKING", True)
# Fault drill: pause this long between reading availability and writing the decision, to widen
# the window in which racing workers could collide (tests and bench/ only; 0 in production).
TESTBED_DECIDE_DELAY_MS = env_int("TESTBED_DECIDE_DELAY_MS", 0, minimum=0)
# How many pending bookings one allocation task may decide in its transaction: the one it was
# queued for plus others nobody holds (1 decides one at a time).
TESTBED_ALLOCATION_BATCH = env_int("TESTBED_ALLOCATION_BATCH", 32, minimum=1)
# Pending bookings are split by resource into this many shards; each has at most one queued
# allocation task at a time, woken through a Redis flag that expires after FLAG_TTL seconds
# unless its task renews it (booking/services/wakeup.py, docs/allocation.md).
TESTBED_ALLOCATION_SHARDS = env_int("TESTBED_ALLOCATION_SHARDS", 4, minimum=1)
# Off: every commit queues a task (no flag); only for drills that need concurrent deciders.
TESTBED_ALLOCATION_COALESCE = env_bool("TESTBED_ALLOCATION_COALESCE", True)
TESTBED_ALLOCATION_FLAG_TTL = env_int("TESTBED_ALLOCATION_FLAG_TTL", 10, minimum=1)
# The address users reach the portal at (links in webhook bodies, calendar feeds, emails).
TESTBED_PUBLIC_URL = env_str("PUBLIC_URL", "").rstrip("/")
# Webhooks (integrations/webhooks): the delays (seconds, jitter added) before each retry of a
# failed delivery; how long an endpoint may keep failing before it is disabled (the last retry
# is brought forward to fit); one attempt's time limit; days the delivery log is kept. Plain
# http:// to localhost only with TESTBED_WEBHOOKS_ALLOW_HTTP (tests) or DEBUG.
TESTBED_WEBHOOKS_RETRY_SCHEDULE = env_str(
    "TESTBED_WEBHOOKS_RETRY_SCHEDULE", "5,300,1800,7200,18000,36000,36000"
)
if not re.fullmatch(r"\d+(\.\d+)?(,\d+(\.\d+)?)*", TESTBED_WEBHOOKS_RETRY_SCHEDULE):
    raise SettingError(
        f"TESTBED_WEBHOOKS_RETRY_SCHEDULE={TESTBED_WEBHOOKS_RETRY_SCHEDULE!r} is not a list of "
        "seconds: set it to comma-separated delays, e.g. 5,300,1800,7200,18000,36000,36000."
    )
TESTBED_WEBHOOKS_RETRY_WINDOW_SECONDS = env_int(
    "TESTBED_WEBHOOKS_RETRY_WINDOW_SECONDS", 86400, minimum=1
)
TESTBED_WEBHOOKS_TIMEOUT_SECONDS = env_int("TESTBED_WEBHOOKS_TIMEOUT_SECONDS", 10, minimum=1)
TESTBED_WEBHOOKS_LOG_DAYS = env_int("TESTBED_WEBHOOKS_LOG_DAYS", 30, minimum=1)
TESTBED_WEBHOOKS_ALLOW_HTTP = env_bool("TESTBED_WEBHOOKS_ALLOW_HTTP", False)

# Periodic work; django-celery-beat's DatabaseScheduler installs these and operators may edit them.
CELERY_BEAT_SCHEDULE = {
    "sweep-pending": {"task": "booking.sweep_pending", "schedule": 10.0},
    "mark-no-shows": {"task": "booking.mark_no_shows", "schedule": 60.0},
    "expire-unapproved": {"task": "booking.expire_unapproved", "schedule": 60.0},
    "start-pool-sessions": {"task": "booking.start_pool_sessions", "schedule": 60.0},
    "complete-ended": {"task": "booking.complete_ended", "schedule": 60.0},
    "allocate-due-rounds": {"task": "booking.allocate_due_rounds", "schedule": 60.0},
    "flag-idle": {"task": "booking.flag_idle", "schedule": 300.0},
    "reclaim-idle": {"task": "booking.reclaim_idle", "schedule": 300.0},
    "rollup-usage": {"task": "booking.rollup_usage", "schedule": 900.0},
    "quota-reminders": {"task": "booking.quota_reminders", "schedule": 3600.0},
    "webhooks-retry-due": {"task": "webhooks.retry_due", "schedule": 30.0},
    "webhooks-prune-log": {"task": "webhooks.prune_log", "schedule": 86400.0},
    "slurm-reconcile-all": {"task": "slurm.reconcile_all", "schedule": 120.0},
}
