"""AI Core settings: one module, driven by environment variables (see README "Configuration")."""

from datetime import timedelta
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from config.env import env_bool, env_choice, env_int, env_list, env_networks, env_str, installation_secret


def _check_fernet_keys(keys: list[str]) -> None:
    from cryptography.fernet import Fernet

    for key in keys:
        try:
            Fernet(key)
        except ValueError:
            raise ImproperlyConfigured(
                "AICORE_CREDENTIALS_KEY must be Fernet keys (32 url-safe base64-encoded bytes), comma-separated"
            ) from None


BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(env_str("AICORE_VAR_DIR", str(BASE_DIR / "var")))
VAR_DIR.mkdir(parents=True, exist_ok=True)

AICORE_ENV = env_choice("AICORE_ENV", "development", {"development", "test", "production"})
PRODUCTION = AICORE_ENV == "production"
DEBUG = env_bool("DEBUG", default=False)

if PRODUCTION:
    SECRET_KEY = env_str("SECRET_KEY")  # no production default, on purpose
else:
    # Development: a random key made on first run and kept under var/ (never one written in the repository,
    # which would sign tokens valid on every installation). Tests set their own random SECRET_KEY.
    SECRET_KEY = env_str("SECRET_KEY", "") or installation_secret(VAR_DIR / "secret_key")
if PRODUCTION and len(SECRET_KEY) < 32:
    raise ImproperlyConfigured("SECRET_KEY must be at least 32 characters in production")

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["127.0.0.1", "localhost", "testserver", "[::1]"])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "web",  # first: its admin/base_site.html (the favicon) overrides the admin's own
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework_simplejwt.token_blacklist",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",  # Swagger UI and Redoc as local static files: /api/docs/ works offline
    "business",
    "ai_core",
    "ai_providers",
    "ai_openai",
    "ai_usage",
    "gateway",
    "webhooks",
    "batches",
]
# `make bench` only: a bare DRF ModelViewSet served beside the API as the benchmark's baseline.
AICORE_BENCH_BASELINE = env_bool("AICORE_BENCH_BASELINE", default=False)
if AICORE_BENCH_BASELINE:
    INSTALLED_APPS.append("bench.baseline")

MIDDLEWARE = [
    "business.middleware.DatabaseUnavailableMiddleware",
    "business.middleware.RequestSizeLimitMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "config.urls"
CSRF_FAILURE_VIEW = "business.api.errors.csrf_failure"
WSGI_APPLICATION = "config.wsgi.application"
ASGI_APPLICATION = "config.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ]
        },
    }
]

# --- Database -----------------------------------------------------------------------------------------
DATABASE_URL = env_str("DATABASE_URL", f"sqlite:///{VAR_DIR / 'aicore.sqlite3'}")
DATABASES = {"default": dj_database_url.parse(DATABASE_URL, conn_max_age=env_int("DB_CONN_MAX_AGE", 60))}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # WAL lets readers run beside the single writer; IMMEDIATE takes the write lock when a transaction
    # starts, so two writers queue up on `timeout` instead of failing with "database is locked".
    DATABASES["default"]["OPTIONS"] = {
        "timeout": 30,
        "transaction_mode": "IMMEDIATE",
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    # A file, not :memory:, so worker subprocesses and threads in tests see the same database.
    DATABASES["default"]["TEST"] = {"NAME": str(VAR_DIR / f"test_aicore_{env_str('AICORE_TEST_TAG', 'main')}.sqlite3")}
IS_POSTGRES = DATABASES["default"]["ENGINE"].startswith("django.db.backends.postgresql")
if IS_POSTGRES:
    DATABASES["default"]["TEST"] = {"NAME": f"test_aicore_{env_str('AICORE_TEST_TAG', 'main')}"}

# Off by default in the test process itself (its threads and the test database teardown expect plain
# connections); worker processes started by the tests turn it on (DB_POOL=1).
if IS_POSTGRES and env_bool("DB_POOL", default=AICORE_ENV != "test"):
    # Django's psycopg pool: a thread holds a connection only while it queries (the engine hands it back
    # before every provider call), so hundreds of in-flight calls share a handful of connections.
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {
        "min_size": env_int("DB_POOL_MIN_SIZE", 1, minimum=0),
        "max_size": env_int("DB_POOL_MAX_SIZE", 8, minimum=1),
        "timeout": env_int("DB_POOL_TIMEOUT_SECONDS", 60, minimum=1),
    }

# The hot hand-written statements (business.sql.prepared_cursor) run prepared on PostgreSQL: planned once per
# connection. Turn off behind a pooler that cannot keep prepared statements (PgBouncer in transaction mode
# before 1.21).
DB_PREPARE_HOT_STATEMENTS = env_bool("DB_PREPARE_HOT_STATEMENTS", default=True)
if IS_POSTGRES and DB_PREPARE_HOT_STATEMENTS:
    # Only server-side-bound cursors can prepare, and Django binds its own queries client-side: 0 prepares
    # those few statements on their first run.
    DATABASES["default"].setdefault("OPTIONS", {})["prepare_threshold"] = 0

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
AUTH_USER_MODEL = "business.User"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator", "OPTIONS": {"min_length": 8}},
]
if env_bool("AICORE_FAST_PASSWORD_HASHER", default=False):
    PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

LANGUAGE_CODE = "en-us"
TIME_ZONE = env_str("TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "static"
# The console's chart library, from the npm registry (package.json; `make run` runs npm ci): /static/vendor/chart.js/.
STATICFILES_DIRS = [("vendor/chart.js", BASE_DIR / "node_modules" / "chart.js" / "dist")]

# Bodies larger than this are refused with 413 before any parsing (RequestSizeLimitMiddleware).
DATA_UPLOAD_MAX_MEMORY_SIZE = env_int("AICORE_MAX_BODY_BYTES", 2 * 1024 * 1024, minimum=1024)
AICORE_MAX_INPUT_BYTES = env_int("AICORE_MAX_INPUT_BYTES", 512 * 1024, minimum=1024)
AICORE_MAX_JSON_DEPTH = env_int("AICORE_MAX_JSON_DEPTH", 32, minimum=4)
# Bulk submission (POST /ai/batches/): its body may be larger than any other request's.
AICORE_MAX_BATCH_BODY_BYTES = env_int("AICORE_MAX_BATCH_BODY_BYTES", 256 * 1024 * 1024, minimum=1024)
AICORE_BATCH_MAX_JOBS = env_int("AICORE_BATCH_MAX_JOBS", 50_000, minimum=1)
AICORE_BATCH_MAX_ERRORS_LISTED = env_int("AICORE_BATCH_MAX_ERRORS_LISTED", 1000, minimum=1)
AICORE_BATCH_INSERT_ROWS = env_int("AICORE_BATCH_INSERT_ROWS", 2000, minimum=1)
# Provider Batch API routing (batches.routing) of completion_window "24h" jobs: a provider batch is sent once
# this many jobs of one (company, provider, model) wait, or once the oldest has waited this long (bounded, so a
# lone job does not wait the whole window); at most this many jobs per provider batch (OpenAI's limit: 50 000).
AICORE_PROVIDER_BATCH_MIN_JOBS = env_int("AICORE_PROVIDER_BATCH_MIN_JOBS", 1000, minimum=1)
AICORE_PROVIDER_BATCH_MAX_WAIT_SECONDS = env_int("AICORE_PROVIDER_BATCH_MAX_WAIT_SECONDS", 300, minimum=0)
AICORE_PROVIDER_BATCH_MAX_JOBS = env_int("AICORE_PROVIDER_BATCH_MAX_JOBS", 50_000, minimum=1)
AICORE_PROVIDER_BATCH_POLL_SECONDS = env_int("AICORE_PROVIDER_BATCH_POLL_SECONDS", 60, minimum=0)
# Threads writing an ended provider batch's answers to its jobs (PostgreSQL; each holds a connection meanwhile).
AICORE_PROVIDER_BATCH_WRITERS = env_int("AICORE_PROVIDER_BATCH_WRITERS", 4, minimum=1)
# What happens to the unfinished jobs of an expired or failed provider batch: back to the normal path, or timeout.
AICORE_PROVIDER_BATCH_ON_EXPIRY = env_choice("AICORE_PROVIDER_BATCH_ON_EXPIRY", "requeue", {"requeue", "timeout"})
# Job creation reuses an active job type read this many seconds ago (per process; a save in the admin clears
# it at once in that process, elsewhere the change applies within this delay). 0 = always read (tests).
AICORE_JOB_TYPE_CACHE_SECONDS = env_int("AICORE_JOB_TYPE_CACHE_SECONDS", 0 if AICORE_ENV == "test" else 5, minimum=0)
# An authenticated brand API key is reused this many seconds per process (business.services.api_keys_memo): a
# revocation made in another process is honoured within this delay (in this one: at once). 0 = always read.
AICORE_API_KEY_CACHE_SECONDS = env_int("AICORE_API_KEY_CACHE_SECONDS", 0 if AICORE_ENV == "test" else 5, minimum=0)
# A brand's active webhook endpoints are reused this many seconds per process at each job's end
# (webhooks.services.endpoints_memo): an endpoint created, changed or deleted in another process applies to the
# jobs ending here within this delay (in the same process: at once). 0 = always read.
AICORE_WEBHOOK_ENDPOINT_CACHE_SECONDS = env_int(
    "AICORE_WEBHOOK_ENDPOINT_CACHE_SECONDS", 0 if AICORE_ENV == "test" else 5, minimum=0
)
# A gateway call refused provider capacity waits for it this long unless its X-AICore-Max-Wait says otherwise
# (0 to 300 s), then answers 429 with Retry-After.
AICORE_GATEWAY_MAX_WAIT_SECONDS = env_int("AICORE_GATEWAY_MAX_WAIT_SECONDS", 30, minimum=0)
# At most this many /v1/ requests are handled at once per API process, and as many streams' calls run (a call
# holds its thread while the provider answers, a stream its request's until the first token); past it they
# queue for a thread. The threads are kept and reused (config.asgi, gateway.views).
AICORE_GATEWAY_MAX_THREADS = env_int("AICORE_GATEWAY_MAX_THREADS", 256, minimum=1)
# /v1/'s own middleware (config.asgi.GatewayChain): MIDDLEWARE without what only a browser's session needs (a
# bearer-key JSON API has no session, no CSRF cookie, no session user, no flash messages). Kept: the database
# and size guards, the security headers, Content-Length; a middleware added to MIDDLEWARE applies to /v1/ too.
AICORE_GATEWAY_SKIPPED_MIDDLEWARE = (
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
)
AICORE_GATEWAY_MIDDLEWARE = [m for m in MIDDLEWARE if m not in AICORE_GATEWAY_SKIPPED_MIDDLEWARE]
# Provider catalogue, prices and companies' credentials, read at every job's creation and end (business.memo).
AICORE_CATALOGUE_CACHE_SECONDS = env_int("AICORE_CATALOGUE_CACHE_SECONDS", 0 if AICORE_ENV == "test" else 5, minimum=0)
# A `?search=` count is exact up to this many matches; past it, PostgreSQL's estimate (X-Count-Estimated).
AICORE_SEARCH_EXACT_COUNT_LIMIT = env_int("AICORE_SEARCH_EXACT_COUNT_LIMIT", 10_000, minimum=1)

# --- REST API -----------------------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        # First: it takes `Bearer aic_…` (brand API keys) and leaves every other token to the JWT class.
        "business.api.authentication.ApiKeyAuthentication",
        "business.api.authentication.JWTBrandAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": [
        "rest_framework.permissions.IsAuthenticated",
        "business.api.permissions.ApiKeyScopes",
    ],
    "DEFAULT_PARSER_CLASSES": ["business.api.parsers.SafeJSONParser"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
    "DEFAULT_PAGINATION_CLASS": "business.api.pagination.StandardPagination",
    "PAGE_SIZE": 20,
    "EXCEPTION_HANDLER": "business.api.exception_handler.api_exception_handler",
    "DEFAULT_SCHEMA_CLASS": "business.api.schema.ErrorAwareAutoSchema",
    "UNAUTHENTICATED_USER": None,
    # No OPTIONS metadata: it re-runs views on a cloned request that has no brand (a 500), and clients
    # read the OpenAPI document instead. OPTIONS answers 405.
    "DEFAULT_METADATA_CLASS": None,
}
if DEBUG:
    REST_FRAMEWORK["DEFAULT_RENDERER_CLASSES"].append("rest_framework.renderers.BrowsableAPIRenderer")

SPECTACULAR_SETTINGS = {
    "TITLE": "AI Core API",
    "DESCRIPTION": (
        "The central hub for AI jobs: submit, follow, and account for AI work per brand.\n\n"
        "Authenticate with `POST /auth/login/`, then send `Authorization: Bearer <access>` and "
        "`X-Brand-ID: <brand id>` on every `/ai/` request. Another brand's object is always a 404. "
        'Every error answers `{"detail", "error_code", ...}`. Timestamps are ISO 8601 in UTC with a `Z` suffix.'
    ),
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
    "ENUM_NAME_OVERRIDES": {
        "JobStatusEnum": "ai_core.models.JobStatus",
        "CompletionWindowEnum": "ai_core.models.CompletionWindow",
    },
    "PREPROCESSING_HOOKS": ["business.api.schema.exclude_aliases"],
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "ai_core.api.events.document_streams",
        "gateway.schema.document_gateway",
    ],
    # Served from this app's static files (drf-spectacular-sidecar), never from a CDN.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
}

SIMPLE_JWT = {
    "ACCESS_TOKEN_LIFETIME": timedelta(minutes=env_int("JWT_ACCESS_MINUTES", 30, minimum=1)),
    "REFRESH_TOKEN_LIFETIME": timedelta(days=env_int("JWT_REFRESH_DAYS", 7, minimum=1)),
    "ROTATE_REFRESH_TOKENS": True,
    "BLACKLIST_AFTER_ROTATION": True,
    "UPDATE_LAST_LOGIN": False,
    # Tokens carry a fingerprint of the password hash: a password change (API, admin, aicore_user) revokes
    # every access and refresh token issued before it (business.api.authentication.token_revoked).
    "CHECK_REVOKE_TOKEN": True,
    "SIGNING_KEY": SECRET_KEY,
}

# Failed-login throttling (per username and per client IP, over a sliding window).
LOGIN_FAILURES_PER_USERNAME = env_int("LOGIN_FAILURES_PER_USERNAME", 5, minimum=1)
LOGIN_FAILURES_PER_IP = env_int("LOGIN_FAILURES_PER_IP", 20, minimum=1)
LOGIN_FAILURE_WINDOW_SECONDS = env_int("LOGIN_FAILURE_WINDOW_SECONDS", 15 * 60, minimum=1)
# Proxies (addresses or CIDRs) whose X-Forwarded-For is believed for the client IP (business.proxies); from
# any other peer the header is ignored. Empty: the socket's peer is the client. uvicorn itself never
# rewrites the peer from forwarded headers (aicore_run), so this is the one place that decides.
AICORE_TRUSTED_PROXIES = env_networks("AICORE_TRUSTED_PROXIES")

# --- Providers -----------------------------------------------------------------------------------------
# Global fallback credentials: used for a company that has not stored its own key.
OPENAI_API_KEY = env_str("OPENAI_API_KEY", "")
OPENAI_BASE_URL = env_str("OPENAI_BASE_URL", "")  # vLLM, Ollama, LiteLLM, Azure-style OpenAI-compatible servers
OPENAI_ORGANIZATION = env_str("OPENAI_ORGANIZATION", "")
ANTHROPIC_API_KEY = env_str("ANTHROPIC_API_KEY", "")
ANTHROPIC_BASE_URL = env_str("ANTHROPIC_BASE_URL", "")
# Fernet key(s) encrypting company credentials at rest; comma-separated for rotation (the first encrypts).
# Outside production a key is derived from SECRET_KEY so `make run` needs no set-up; production must set it.
AICORE_CREDENTIALS_KEYS = env_list("AICORE_CREDENTIALS_KEY")
if PRODUCTION and not AICORE_CREDENTIALS_KEYS:
    raise ImproperlyConfigured("AICORE_CREDENTIALS_KEY (a Fernet key) is required in production")
_check_fernet_keys(AICORE_CREDENTIALS_KEYS)
# A company-supplied base URL resolving to a private, loopback or link-local address is refused (SSRF)
# unless the operator allows it here (on-premises vLLM/Ollama). Hosts listed are allowed whatever they resolve to.
AICORE_ALLOW_PRIVATE_PROVIDER_URLS = env_bool("AICORE_ALLOW_PRIVATE_PROVIDER_URLS", default=False)
AICORE_PROVIDER_HOST_ALLOWLIST = env_list("AICORE_PROVIDER_HOST_ALLOWLIST", [])
# Connect timeout of provider calls; the whole call is bounded by the job type's timeout.
AICORE_PROVIDER_CONNECT_TIMEOUT = env_int("AICORE_PROVIDER_CONNECT_TIMEOUT", 10, minimum=1)
# Output tokens reserved against quotas when neither the request nor the catalogue bounds them.
AICORE_DEFAULT_MAX_OUTPUT_TOKENS = env_int("AICORE_DEFAULT_MAX_OUTPUT_TOKENS", 4096, minimum=1)

# --- Celery -------------------------------------------------------------------------------------------
# With no broker configured, an embedded one (kombu's SQLAlchemy transport on a SQLite file) needs no server.
CELERY_BROKER_URL = env_str("CELERY_BROKER_URL", f"sqla+sqlite:///{VAR_DIR / 'celery-broker.sqlite3'}")
CELERY_TASK_IGNORE_RESULT = True
CELERY_RESULT_BACKEND = None
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
# No prefetch reduction after a broker reconnect. With it (Celery's default), a worker that reconnects while
# tasks run lowers its prefetch and raises it again from each ack's callback: on the threads pool that callback
# runs in the pool thread, whose basic.qos then reads the consumer's AMQP socket while the event loop reads it
# too. The two readers split the frames between them and both wait forever, the acks are never sent, and with
# its prefetch window full RabbitMQ sends that worker nothing more: consumption stopped after a RabbitMQ restart
# (test_broker_outage). Without the reduction, a reconnected worker may take a few wake-ups more than it has
# free threads; they wait in the worker (a wake-up only claims the best job once a thread runs it).
CELERY_WORKER_ENABLE_PREFETCH_COUNT_REDUCTION = False
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# A running task is not cancelled when the broker connection drops: the job row is the truth, not the message.
CELERY_WORKER_CANCEL_LONG_RUNNING_TASKS_ON_CONNECTION_LOSS = False
# Publishing happens in API requests: with the broker down it must give up fast (the sweeper re-dispatches).
CELERY_BROKER_CONNECTION_TIMEOUT = 2
CELERY_TASK_PUBLISH_RETRY_POLICY = {"max_retries": 1, "interval_start": 0, "interval_step": 0.25, "interval_max": 0.25}
# Provider calls wait on the network: many threads per process, few database connections (see the pool).
CELERY_WORKER_POOL = env_choice("AICORE_WORKER_POOL", "threads", {"threads", "prefork", "solo"})
CELERY_WORKER_CONCURRENCY = env_int("AICORE_WORKER_CONCURRENCY", 64 if IS_POSTGRES else 8, minimum=1)

# --- Execution engine (ai_core.engine) ----------------------------------------------------------------
# No job runs longer than this, whatever its type says (on RabbitMQ, set consumer_timeout above it).
AICORE_MAX_JOB_SECONDS = env_int("AICORE_MAX_JOB_SECONDS", 3600, minimum=1)
AICORE_HEARTBEAT_MS = env_int("AICORE_HEARTBEAT_MS", 5000, minimum=50)
AICORE_CANCEL_POLL_MS = env_int("AICORE_CANCEL_POLL_MS", 500, minimum=50)
AICORE_REAP_AFTER_MS = env_int("AICORE_REAP_AFTER_MS", 30_000, minimum=100)
AICORE_SWEEP_INTERVAL_MS = env_int("AICORE_SWEEP_INTERVAL_MS", 5000, minimum=50)
AICORE_SWEEP_PENDING_AFTER_MS = env_int("AICORE_SWEEP_PENDING_AFTER_MS", 30_000, minimum=100)
AICORE_RETRY_BASE_MS = env_int("AICORE_RETRY_BASE_MS", 1000, minimum=0)
AICORE_RETRY_MAX_MS = env_int("AICORE_RETRY_MAX_MS", 60_000, minimum=0)
# A provider's circuit breaker (ai_core.engine.circuit): open after this many consecutive 5xx/timeout/network
# failures of its calls, for this long after the last one; jobs with fallback models skip it meanwhile.
AICORE_CIRCUIT_FAILURES = env_int("AICORE_CIRCUIT_FAILURES", 5, minimum=1)
AICORE_CIRCUIT_OPEN_SECONDS = env_int("AICORE_CIRCUIT_OPEN_SECONDS", 30, minimum=1)
AICORE_CIRCUIT_CACHE_SECONDS = env_int("AICORE_CIRCUIT_CACHE_SECONDS", 0 if AICORE_ENV == "test" else 1, minimum=0)
# A job with fallback models runs on its next one rather than wait longer than this for provider capacity.
AICORE_FALLBACK_AFTER_WAIT_SECONDS = env_int("AICORE_FALLBACK_AFTER_WAIT_SECONDS", 60, minimum=0)
# The executor of a worker process (ai_core.engine.aio): "asyncio", the default (one event loop per process runs
# up to AICORE_ENGINE_IN_FLIGHT calls as coroutines; a wake-up only hands itself to the loop; its database work
# runs on AICORE_ENGINE_DB_THREADS threads, claims and finishes in batches of up to AICORE_ENGINE_BATCH; calls of
# clients without a coroutine path run on AICORE_ENGINE_SYNC_THREADS threads), or "threads" (each wake-up's job
# runs on a pool thread of the Celery threads pool: for deployments whose custom handlers must run on a thread of
# their own).
AICORE_ENGINE_EXECUTOR = env_choice("AICORE_ENGINE_EXECUTOR", "asyncio", {"threads", "asyncio"})
AICORE_ENGINE_IN_FLIGHT = env_int("AICORE_ENGINE_IN_FLIGHT", 500, minimum=1)
AICORE_ENGINE_DB_THREADS = env_int("AICORE_ENGINE_DB_THREADS", 4, minimum=1)
AICORE_ENGINE_SYNC_THREADS = env_int("AICORE_ENGINE_SYNC_THREADS", 32, minimum=1)
AICORE_ENGINE_BATCH = env_int("AICORE_ENGINE_BATCH", 100, minimum=1)
# Wake-ups: the jobs made claimable in one transaction (a bulk submission, a batch, a sweep) publish at most this
# many (0: one per job), enough for every worker to wake (ai_core.dispatch.publish_jobs); a woken worker keeps
# claiming while jobs are claimable. On the threads executor one wake-up then runs at most AICORE_WAKE_UP_MAX_JOBS
# jobs and starts none after AICORE_WAKE_UP_MAX_SECONDS (its message stays unacknowledged meanwhile), then hands
# on one wake-up if work remains (runner.run_wake_up). The default coalesces on the asyncio executor only; the
# threads executor keeps one wake-up per job and one job per wake-up unless this is set (opt-in: its draining
# loop is not yet proven under provider-capacity waits, see docs/ARCHITECTURE.md, Dispatch). The API processes
# and the workers must agree: set it (or AICORE_ENGINE_EXECUTOR) for both.
AICORE_WAKE_UPS_PER_COMMIT = env_int(
    "AICORE_WAKE_UPS_PER_COMMIT",
    max(32, CELERY_WORKER_CONCURRENCY) if AICORE_ENGINE_EXECUTOR == "asyncio" else 0,
    minimum=0,
)
AICORE_WAKE_UP_MAX_JOBS = env_int("AICORE_WAKE_UP_MAX_JOBS", 100, minimum=1)
AICORE_WAKE_UP_MAX_SECONDS = env_int("AICORE_WAKE_UP_MAX_SECONDS", 60, minimum=0)
# On a warm shutdown the loop stops claiming and lets its calls end for this long; the rest the reaper re-queues.
AICORE_ENGINE_DRAIN_SECONDS = env_int("AICORE_ENGINE_DRAIN_SECONDS", 30, minimum=0)
if AICORE_REAP_AFTER_MS < 3 * AICORE_HEARTBEAT_MS:
    raise ImproperlyConfigured("AICORE_REAP_AFTER_MS must be at least 3 heartbeats (AICORE_HEARTBEAT_MS)")

# --- Provider capacity (ai_providers.capacity) --------------------------------------------------------
# Off only to measure what the machinery costs (bench): without it nothing is limited nor learned.
AICORE_CAPACITY_ENABLED = env_bool("AICORE_CAPACITY_ENABLED", True)
# How long a process trusts what it read of an endpoint's limits (a limit configured or learned elsewhere
# applies here within this delay; a local save at once).
AICORE_CAPACITY_CACHE_SECONDS = env_int("AICORE_CAPACITY_CACHE_SECONDS", 2, minimum=0)
# A minute's request limit is also kept over this shorter window (limit x seconds / 60, at least 1 a window).
AICORE_CAPACITY_SMOOTHING_SECONDS = env_int("AICORE_CAPACITY_SMOOTHING_SECONDS", 1, minimum=1)
# A limit learned from a provider's headers applies this long after the last answer that stated it.
AICORE_CAPACITY_LEARNED_SECONDS = env_int("AICORE_CAPACITY_LEARNED_SECONDS", 600, minimum=1)
# A call's concurrent slot is held this long past its holder's last heartbeat (a process killed mid-call).
AICORE_CAPACITY_LEASE_MS = env_int("AICORE_CAPACITY_LEASE_MS", 3 * AICORE_HEARTBEAT_MS, minimum=100)
if AICORE_CAPACITY_LEASE_MS < 2 * AICORE_HEARTBEAT_MS:
    raise ImproperlyConfigured("AICORE_CAPACITY_LEASE_MS must cover at least 2 heartbeats (AICORE_HEARTBEAT_MS)")
# Redis without kombu's ack emulation: a message leaves Redis when a worker takes it. The emulation (an
# "unacked" hash re-delivered after visibility_timeout) buys nothing here — a message only wakes a worker, and
# the reaper and the sweeper repair a lost one — and it is what killed every worker when Redis went away
# under acks-late messages: Celery 5.7 closes the broken connection after collecting it, and closing
# the consumer's channel again restores the unacknowledged messages through a connection that no longer has
# its URL (AttributeError in kombu's _connparams, not a connection error, so the worker exits). Without it,
# restoring is in-process bookkeeping that can fail without taking the worker down, and an ack is no Redis
# command at all (two writes fewer per job). The embedded SQLAlchemy transport passes its options to
# create_engine, so they are set for Redis only.
CELERY_BROKER_TRANSPORT_OPTIONS = {}
if CELERY_BROKER_URL.startswith(("redis://", "rediss://")):
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "ack_emulation": False,
        "socket_connect_timeout": 2,
        "socket_timeout": 10,
    }
# One Redis client per channel, not per publish (kernel/adapters/kombu.py: kombu's private _create_client, kept
# for its measured gain on job creation, docs/PERFORMANCE.md). 0: kombu's own transport.
if CELERY_BROKER_URL.startswith("redis://") and env_bool("AICORE_SHARED_REDIS_CLIENT", default=True):
    CELERY_BROKER_TRANSPORT = "kernel.adapters.kombu:RedisTransport"
# Job wake-ups published by kernel/adapters/celery.py (a message built once per process, kept producers) rather
# than send_task per call: the one use of Celery internals, kept for its measured gain (docs/PERFORMANCE.md).
# 0: send_task, Celery's public path.
AICORE_DIRECT_WAKE_UPS = env_bool("AICORE_DIRECT_WAKE_UPS", default=True)

LOG_FORMAT = env_choice("LOG_FORMAT", "json" if PRODUCTION else "plain", {"json", "plain"})
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"job_context": {"()": "kernel.logs.ContextFilter"}},
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s %(context)s"},
        "json": {"()": "kernel.logs.JsonFormatter"},
    },
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": LOG_FORMAT, "filters": ["job_context"]}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
    # The SDKs' HTTP clients log every request at INFO: noise at our volume (they never log keys either way).
    "loggers": {"django.request": {"level": "ERROR"}, "httpx2": {"level": "WARNING"}, "httpx": {"level": "WARNING"}},
}

# --- Live events (SSE) --------------------------------------------------------------------------------
AICORE_SSE_POLL_MS = env_int("AICORE_SSE_POLL_MS", 500, minimum=50)
AICORE_SSE_HEARTBEAT_SECONDS = env_int("AICORE_SSE_HEARTBEAT_SECONDS", 15, minimum=1)
# A stream closes after this long; EventSource reconnects with Last-Event-ID and loses nothing.
AICORE_SSE_MAX_SECONDS = env_int("AICORE_SSE_MAX_SECONDS", 300, minimum=1)
AICORE_SSE_RETRY_MS = env_int("AICORE_SSE_RETRY_MS", 2000, minimum=100)

# --- Webhooks -----------------------------------------------------------------------------------------
# Targets on private, loopback or link-local addresses are refused unless allowed here (hosts or CIDRs).
AICORE_WEBHOOK_ALLOWED_HOSTS = env_list("AICORE_WEBHOOK_ALLOWED_HOSTS", [])
AICORE_WEBHOOK_ALLOW_PRIVATE = env_bool("AICORE_WEBHOOK_ALLOW_PRIVATE", default=False)
AICORE_WEBHOOK_MAX_ATTEMPTS = env_int("AICORE_WEBHOOK_MAX_ATTEMPTS", 8, minimum=1)
# Retry n waits about base * 4**(n-1) seconds (10 s, 40 s, 2.7 min, 11 min, 43 min, 2.8 h, …), capped.
AICORE_WEBHOOK_RETRY_BASE_SECONDS = env_int("AICORE_WEBHOOK_RETRY_BASE_SECONDS", 10, minimum=0)
AICORE_WEBHOOK_RETRY_MAX_SECONDS = env_int("AICORE_WEBHOOK_RETRY_MAX_SECONDS", 6 * 3600, minimum=0)
AICORE_WEBHOOK_TIMEOUT_SECONDS = env_int("AICORE_WEBHOOK_TIMEOUT_SECONDS", 10, minimum=1)

# --- Operations ---------------------------------------------------------------------------------------
# GET /metrics requires "Authorization: Bearer <token>" (brand names appear in labels); only development
# serves it without one, and production does not start without it.
AICORE_METRICS_TOKEN = env_str("AICORE_METRICS_TOKEN", "")
if PRODUCTION and not AICORE_METRICS_TOKEN:
    raise ImproperlyConfigured("AICORE_METRICS_TOKEN is required in production (it guards /metrics)")
AICORE_READYZ_TIMEOUT_SECONDS = env_int("AICORE_READYZ_TIMEOUT_SECONDS", 2, minimum=1)
# A worker whose heartbeat (ai_core.WorkerHeartbeat, stamped every upkeep round) is older than this is not
# counted as alive. /readyz answers 503 "no worker heartbeat" when none is alive, except where no worker is
# expected: the test suite (most tests run no worker) unless AICORE_READYZ_REQUIRE_WORKER says otherwise.
AICORE_WORKER_STALE_SECONDS = env_int("AICORE_WORKER_STALE_SECONDS", 30, minimum=1)
AICORE_READYZ_REQUIRE_WORKER = env_bool("AICORE_READYZ_REQUIRE_WORKER", default=AICORE_ENV != "test")
if AICORE_WORKER_STALE_SECONDS * 1000 < 3 * AICORE_SWEEP_INTERVAL_MS:
    raise ImproperlyConfigured(
        "AICORE_WORKER_STALE_SECONDS must cover at least 3 upkeep rounds (AICORE_SWEEP_INTERVAL_MS)"
    )

# --- Web dashboard ------------------------------------------------------------------------------------
LOGIN_URL = "/login/"
LOGIN_REDIRECT_URL = "/dashboard/"
LOGOUT_REDIRECT_URL = "/login/"
# The ASGI app serves /static/ itself (admin CSS under `make run`); put a web server in front in production.
AICORE_SERVE_STATIC = env_bool("AICORE_SERVE_STATIC", default=not PRODUCTION)
