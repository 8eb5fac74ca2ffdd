"""finetune settings, read top to bottom from environment variables.

Defaults work on a developer machine with no `.env`: PostgreSQL and Redis on 127.0.0.1, files on the local disk.
Production values come from `.env` / docker-compose. A secret may also be read from a file named by `NAME_FILE`.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from urllib.parse import unquote, urlparse

from cryptography.fernet import Fernet
from django.core.exceptions import ImproperlyConfigured

from finetune.env import env_bool, env_int, env_list, env_str
from finetune.observability import init_sentry, logging_config

BASE_DIR = Path(__file__).resolve().parent.parent


# No usage telemetry from the Hugging Face libraries (huggingface_hub, transformers, TRL) in any process that loads
# these settings; read by huggingface_hub when it is first imported, so it is set before anything imports it.
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

# Tests (pytest, or a worker/daphne process a test started) use their own database and Redis numbers.
TESTING = env_bool("FINETUNE_TESTING", False) or "pytest" in sys.modules

DEBUG = env_bool("DEBUG", True)
SECRET_KEY = env_str(
    "SECRET_KEY", "dev-insecure-secret-key-change-me-0123456789abcdefghijklmnopqrstuvwxyz", required=True
)
if not DEBUG and SECRET_KEY.startswith("dev-insecure"):
    raise ImproperlyConfigured("SECRET_KEY must be set to a real secret when DEBUG is off")
# The placeholders of .env.example are refused: a copied example file must not run with a published secret.
EXAMPLE_VALUES = {"SECRET_KEY": "change-me-to-a-long-random-string", "FINETUNE_ADMIN_PASSWORD": "change-me"}
for _name, _example in EXAMPLE_VALUES.items():
    if (SECRET_KEY if _name == "SECRET_KEY" else os.environ.get(_name)) == _example:
        raise ImproperlyConfigured(
            f'{_name} still has the example value from .env.example; set a real one (e.g. python -c "import '
            f'secrets; print(secrets.token_urlsafe(50))"), or remove the line to use the default.'
        )
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]", "testserver"])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])
SITE_URL = env_str("SITE_URL", "http://127.0.0.1:8000")

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "channels",
    "storages",
    "django_prometheus",
    "accounts",
    "datasets_app",
    "models_app",
    "training",
    "dashboard",
]

MIDDLEWARE = [
    "django_prometheus.middleware.PrometheusBeforeMiddleware",  # web request metrics for /metrics
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "finetune.middleware.RejectNulQueryMiddleware",  # ?x=%00 under /api/: 400
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "finetune.middleware.PageMessageMiddleware",  # Django's MessageMiddleware, skipped under /api/
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_prometheus.middleware.PrometheusAfterMiddleware",
    "finetune.middleware.ApiErrorMiddleware",  # last: sees every view's exception first
]

ROOT_URLCONF = "finetune.urls"
WSGI_APPLICATION = "finetune.wsgi.application"
ASGI_APPLICATION = "finetune.asgi.application"

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
            ],
        },
    },
]

# --- PostgreSQL (psycopg 3). DATABASE_URL wins over the POSTGRES_* variables.
_db_url = env_str("DATABASE_URL")
if _db_url:
    _u = urlparse(_db_url)
    _db = {
        "NAME": unquote(_u.path.lstrip("/")),
        "USER": unquote(_u.username or ""),
        "PASSWORD": unquote(_u.password or ""),
        "HOST": _u.hostname or "",
        "PORT": str(_u.port or ""),
    }
else:
    _db = {
        "NAME": env_str("POSTGRES_DB", "finetune"),
        "USER": env_str("POSTGRES_USER", "postgres"),
        "PASSWORD": env_str("POSTGRES_PASSWORD", ""),
        "HOST": env_str("POSTGRES_HOST", "127.0.0.1"),
        "PORT": env_str("POSTGRES_PORT", "5432"),
    }
# Web processes (python -m finetune.serve sets DB_POOL_MAX_SIZE for them) share a psycopg pool per process: a request
# borrows one connection and gives it back when it ends, so the web tier never holds more than workers x pool size.
# A request that cannot get one within DB_POOL_TIMEOUT_S answers 503 (finetune.middleware). Celery processes run one
# task per process and keep one persistent connection each (DB_POOL_MAX_SIZE=0).
DB_POOL_MAX_SIZE = env_int("DB_POOL_MAX_SIZE", 0)
DB_POOL_MIN_SIZE = env_int("DB_POOL_MIN_SIZE", 1)
DB_POOL_TIMEOUT_S = float(env_str("DB_POOL_TIMEOUT_S", "5"))
DB_STATEMENT_TIMEOUT_MS = env_int("DB_STATEMENT_TIMEOUT_MS", 0)  # 0: none (web processes: 30 s)
_db_options: dict[str, object] = {"application_name": env_str("DB_APPLICATION_NAME", "finetune")}
if DB_STATEMENT_TIMEOUT_MS > 0:
    _db_options["options"] = f"-c statement_timeout={DB_STATEMENT_TIMEOUT_MS}"
if DB_POOL_MAX_SIZE > 0:
    _db_options["pool"] = {
        "min_size": min(DB_POOL_MIN_SIZE, DB_POOL_MAX_SIZE),
        "max_size": DB_POOL_MAX_SIZE,
        "timeout": DB_POOL_TIMEOUT_S,
        "max_idle": 120.0,  # idle connections above min_size are closed after this
        "max_lifetime": 1800.0,
    }
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.postgresql",
        **_db,
        "OPTIONS": _db_options,
        "CONN_MAX_AGE": 0 if DB_POOL_MAX_SIZE > 0 else env_int("CONN_MAX_AGE", 60),
        # With the pool this checks each connection as it is borrowed (one short round trip, measured as no change
        # in throughput), so a PostgreSQL restart costs no request an error.
        "CONN_HEALTH_CHECKS": True,
        # Fixed test database name: subprocesses (daphne, Celery worker) started by tests connect to it by name,
        # and Channels' live-server test case otherwise picks the wrong one (django/channels#2176).
        "TEST": {"NAME": env_str("POSTGRES_TEST_DB", "test_finetune")},
    }
}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
AUTH_USER_MODEL = "accounts.User"

# --- Web tier (python -m finetune.serve): WEB_WORKERS daphne processes on one socket (default: one per core), each
# running at most WEB_THREADS requests at once; a request that waits longer than WEB_QUEUE_TIMEOUT_S for its turn
# answers 503 with Retry-After. README: "Serving many users".
WEB_THREADS = env_int("WEB_THREADS", 6)
WEB_QUEUE_TIMEOUT_S = float(env_str("WEB_QUEUE_TIMEOUT_S", "10"))
# Per-user caches of the dashboard's statistics and analytics (seconds; 0 turns them off).
# (Off by default in tests, which change data between two reads; tests/test_fast_paths.py turns stats on to check it.)
DASHBOARD_STATS_CACHE_S = env_int("DASHBOARD_STATS_CACHE_S", 0 if TESTING else 10)  # the UI polls every 10 s
DASHBOARD_ANALYTICS_CACHE_S = env_int("DASHBOARD_ANALYTICS_CACHE_S", 0 if TESTING else 60)
# Metric points and log lines per backfill request (the client pages by `after_seq`).
METRICS_PAGE_MAX = env_int("METRICS_PAGE_MAX", 5000)
BACKFILL_CACHE_S = env_int("BACKFILL_CACHE_S", 300)  # pages that can no longer change are cached this long

# --- Redis: separate database numbers for the Celery broker, the Channels layer and the cache.
# Tests use other numbers so a test run never flushes a running development server.
REDIS_URL = env_str("REDIS_URL", "redis://127.0.0.1:6379").rstrip("/")
_redis_base = REDIS_URL.rsplit("/", 1)[0] if urlparse(REDIS_URL).path.strip("/").isdigit() else REDIS_URL
REDIS_BROKER_DB = env_int("REDIS_BROKER_DB", 10 if TESTING else 0)
REDIS_CHANNELS_DB = env_int("REDIS_CHANNELS_DB", 11 if TESTING else 1)
REDIS_CACHE_DB = env_int("REDIS_CACHE_DB", 12 if TESTING else 2)

CACHES = {
    "default": {
        "BACKEND": "finetune.cache.FastRedisCache",  # Django's RedisCache, reusing its Redis clients
        "LOCATION": f"{_redis_base}/{REDIS_CACHE_DB}",
        "KEY_PREFIX": "finetune",
    }
}
CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "channels_redis.core.RedisChannelLayer",
        # Reads wait longer than channels-redis' 5 s BZPOPMIN (redis-py 8's 5 s default killed idle websockets). A Redis
        # restart leaves pooled connections dead: a command retries once, at once, on a new one (Retry(NoBackoff(), 1)).
        "CONFIG": {
            "hosts": [
                {
                    "address": f"{_redis_base}/{REDIS_CHANNELS_DB}",
                    "socket_timeout": 30,
                    "retry_on_error": [ConnectionError],
                }
            ],
            "capacity": 2000,
            "expiry": 60,
        },
    }
}

# --- Celery: two queues. `training` runs one job per worker process (one per GPU), late acks, redelivery when a
# worker dies; the visibility timeout is longer than any run (training jobs also hold their own lease in the DB).
CELERY_BROKER_URL = env_str("CELERY_BROKER_URL", f"{_redis_base}/{REDIS_BROKER_DB}")
CELERY_RESULT_BACKEND = None
CELERY_TASK_IGNORE_RESULT = True
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": env_int("CELERY_VISIBILITY_TIMEOUT", 48 * 3600)}
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_TASK_DEFAULT_QUEUE = "default"
CELERY_TASK_ROUTES = {"training.tasks.run_*": {"queue": "training"}}
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_SEND_TASK_EVENTS = True
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TIMEZONE = "UTC"
CELERY_BEAT_SCHEDULE = {
    "clear-expired-sessions": {"task": "dashboard.tasks.clear_expired_sessions", "schedule": 6 * 3600.0},
    "recover-training-jobs": {
        "task": "training.tasks.recover_jobs",
        "schedule": float(env_int("TRAINING_RECOVERY_INTERVAL_SECONDS", 30)),
    },
    "sweep-orphan-checkpoints": {  # checkpoints of succeeded or deleted jobs whose deletion did not run
        "task": "training.tasks.sweep_checkpoints",
        "schedule": float(env_int("CHECKPOINT_SWEEP_INTERVAL_SECONDS", 3600)),
    },
    "reclaim-model-tasks": {  # exports, pushes and Ollama imports whose worker died
        "task": "models_app.tasks.exports.reclaim_stale",
        "schedule": float(env_int("MODEL_TASKS_RECLAIM_INTERVAL_SECONDS", 600)),
    },
}

# --- Files: the local filesystem by default, S3/MinIO with STORAGE_BACKEND=s3.
MEDIA_ROOT = Path(env_str("MEDIA_ROOT", str(BASE_DIR / "var" / ("test-media" if TESTING else "media"))))
MEDIA_URL = "/media/"
STATIC_URL = "/static/"
STATIC_ROOT = Path(env_str("STATIC_ROOT", str(BASE_DIR / "var" / "staticfiles")))
STATICFILES_DIRS = [BASE_DIR / "static"]
FRONTEND_BUILD_DIR = BASE_DIR / "static" / "frontend"
FRONTEND_DEV_URL = env_str("FRONTEND_DEV_URL", "")  # e.g. http://127.0.0.1:5173 to use the Vite dev server
STORAGE_BACKEND = env_str("STORAGE_BACKEND", "filesystem")
if STORAGE_BACKEND == "s3":
    AWS_STORAGE_BUCKET_NAME = env_str("AWS_STORAGE_BUCKET_NAME", "finetune", required=True)
    AWS_S3_ENDPOINT_URL = env_str("AWS_S3_ENDPOINT_URL")  # MinIO: http://minio:9000
    AWS_ACCESS_KEY_ID = env_str("AWS_ACCESS_KEY_ID")
    AWS_SECRET_ACCESS_KEY = env_str("AWS_SECRET_ACCESS_KEY")
    AWS_S3_REGION_NAME = env_str("AWS_S3_REGION_NAME", "us-east-1")
    AWS_DEFAULT_ACL = None
    AWS_QUERYSTRING_AUTH = True
    AWS_QUERYSTRING_EXPIRE = env_int("AWS_QUERYSTRING_EXPIRE", 600)
    _default_storage = {"BACKEND": "storages.backends.s3.S3Storage"}
elif STORAGE_BACKEND == "filesystem":
    _default_storage = {"BACKEND": "django.core.files.storage.FileSystemStorage"}
else:
    raise ImproperlyConfigured(f"STORAGE_BACKEND must be 'filesystem' or 's3', got {STORAGE_BACKEND!r}")
STORAGES = {
    "default": _default_storage,
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
WHITENOISE_USE_FINDERS = DEBUG or TESTING

# --- Datasets: uploads stream to a temporary file on disk (never held in memory), then to storage.
DATASET_MAX_UPLOAD_BYTES = env_int("DATASET_MAX_UPLOAD_BYTES", 2 * 1024**3)
DATASET_MAX_FILES = env_int("DATASET_MAX_FILES", 10)
DATASET_MAX_LINE_BYTES = env_int("DATASET_MAX_LINE_BYTES", 16 * 1024**2)
DATASET_MAX_DECOMPRESSED_BYTES = env_int("DATASET_MAX_DECOMPRESSED_BYTES", 20 * 1024**3)
DATASET_DEFAULT_MAX_LENGTH = env_int("DATASET_DEFAULT_MAX_LENGTH", 2048)
FILE_UPLOAD_HANDLERS = [
    "datasets_app.uploads.SizeLimitUploadHandler",
    "django.core.files.uploadhandler.TemporaryFileUploadHandler",
]
FILE_UPLOAD_TEMP_DIR = env_str("FILE_UPLOAD_TEMP_DIR") or None
DATA_UPLOAD_MAX_NUMBER_FILES = env_int("DATA_UPLOAD_MAX_NUMBER_FILES", 100)

# --- Artifacts (checkpoints, final models, Hub snapshots): stored through STORAGES["default"] under server-made keys;
# every host that needs one fetches it into its own size-bounded cache (finetune/artifacts.py). A training worker
# trains in a scratch folder under TRAINING_RUNS_DIR and removes it when the attempt ends.
ARTIFACT_CACHE_DIR = Path(
    env_str("ARTIFACT_CACHE_DIR", str(BASE_DIR / "var" / ("test-artifact-cache" if TESTING else "artifact-cache")))
)
ARTIFACT_CACHE_MAX_BYTES = int(float(env_str("ARTIFACT_CACHE_MAX_GB", "20")) * (1 << 30))

# --- Training jobs
TRAINING_RUNS_DIR = Path(env_str("TRAINING_RUNS_DIR", str(BASE_DIR / "var" / ("test-runs" if TESTING else "runs"))))
TRAINING_LEASE_SECONDS = env_int("TRAINING_LEASE_SECONDS", 60)
TRAINING_HEARTBEAT_SECONDS = env_int("TRAINING_HEARTBEAT_SECONDS", 10)
TRAINING_MAX_ATTEMPTS = env_int("TRAINING_MAX_ATTEMPTS", 3)
TRAINING_DEVICE_MEMORY_GB = env_int("TRAINING_DEVICE_MEMORY_GB", 0)  # 0: this host's RAM (CPU training)
TRAINING_RECOVERY_INTERVAL_SECONDS = env_int("TRAINING_RECOVERY_INTERVAL_SECONDS", 30)
# Modal GPU prices (USD per hour; a settings table operators keep current) and relative speed vs an A10G.
MODAL_GPU_PRICES_USD_PER_HOUR = {
    "T4": 0.59,
    "L4": 0.80,
    "A10G": 1.10,
    "A100-40GB": 2.10,
    "A100-80GB": 2.50,
    "H100": 3.95,
}
MODAL_GPU_MEMORY_GB = {"T4": 16, "L4": 24, "A10G": 24, "A100-40GB": 40, "A100-80GB": 80, "H100": 80}
MODAL_CLIENT = env_str("MODAL_CLIENT", "training.runners.modal.ModalClient")  # dotted path; tests swap it
MODAL_CALLBACK_TOKEN_MAX_AGE = env_int("MODAL_CALLBACK_TOKEN_MAX_AGE", 7 * 24 * 3600)
MODAL_HEARTBEAT_TIMEOUT_S = env_int("MODAL_HEARTBEAT_TIMEOUT_S", 900)  # a silent Modal run is recovered
MODAL_ARTIFACT_MAX_BYTES = int(float(env_str("MODAL_ARTIFACT_MAX_GB", "100")) * (1 << 30))  # one upload from a run
MODAL_RUNS_DIR = env_str("MODAL_RUNS_DIR", "")  # where the remote entrypoint keeps runs ("" = /runs on Modal)
# Experiment tracking: the MLflow server of jobs with report_to ["mlflow"] ("" = MLflow not offered).
MLFLOW_TRACKING_URI = env_str("MLFLOW_TRACKING_URI", "")
MLFLOW_EXPERIMENT_NAME = env_str("MLFLOW_EXPERIMENT_NAME", "finetune")
MODAL_GPU_SPEED = {"T4": 0.5, "L4": 0.8, "A10G": 1.0, "A100-40GB": 2.2, "A100-80GB": 2.5, "H100": 4.0}

# --- Playground: generation runs in `inference` workers, which keep loaded models in an LRU cache
# per process, evicting the least recently used one when the process RSS passes PLAYGROUND_MAX_RSS_MB (0 = no
# ceiling) or the machine's available memory falls below PLAYGROUND_MIN_FREE_MB.
PLAYGROUND_CACHE_MAX_MODELS = env_int("PLAYGROUND_CACHE_MAX_MODELS", 2)
PLAYGROUND_MIN_FREE_MB = env_int("PLAYGROUND_MIN_FREE_MB", 1024)
PLAYGROUND_MAX_RSS_MB = env_int("PLAYGROUND_MAX_RSS_MB", 8192)
PLAYGROUND_MAX_PROMPT_TOKENS = env_int("PLAYGROUND_MAX_PROMPT_TOKENS", 4096)
PLAYGROUND_TIMEOUT_S = env_int("PLAYGROUND_TIMEOUT_S", 120)  # the web side waits this long for the next event
# CPU threads per inference process (0 = half the cores). Batch-1 generation gains little from more threads, and an
# oversubscribed CPU loses a lot: SmolLM2-135M on 2 busy cores, 8.9 tok/s with 1 thread vs 1.3 tok/s with 2.
PLAYGROUND_TORCH_THREADS = env_int("PLAYGROUND_TORCH_THREADS", 0)

# --- Auth and sessions
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator", "OPTIONS": {"min_length": 8}},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "/login"
SESSION_COOKIE_AGE = env_int("SESSION_COOKIE_AGE", 14 * 24 * 3600)
# Secure cookies, HTTPS redirect and HSTS follow the scheme of SITE_URL (each can be set on its own): the default
# http://127.0.0.1:8000 still signs in with DEBUG off, an https:// site gets all of them.
SITE_IS_HTTPS = SITE_URL.lower().startswith("https://")
SESSION_COOKIE_SECURE = env_bool("SESSION_COOKIE_SECURE", SITE_IS_HTTPS)
CSRF_COOKIE_SECURE = env_bool("CSRF_COOKIE_SECURE", SITE_IS_HTTPS)
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", SITE_IS_HTTPS and not DEBUG)
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 31536000 if SITE_IS_HTTPS and not DEBUG else 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", SECURE_HSTS_SECONDS > 0)
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", False)
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https") if env_bool("BEHIND_PROXY", False) else None
SECURE_REDIRECT_EXEMPT = [r"^api/health/$"]
X_FRAME_OPTIONS = "DENY"
CSRF_FAILURE_VIEW = "finetune.exceptions.csrf_failure"

# Sign-in protection: per-IP and per-username throttles, and a lockout after a run of failed attempts.
LOGIN_RATE_PER_IP = env_str("LOGIN_RATE_PER_IP", "30/min")
LOGIN_RATE_PER_USERNAME = env_str("LOGIN_RATE_PER_USERNAME", "10/min")
LOGIN_LOCKOUT_THRESHOLD = env_int("LOGIN_LOCKOUT_THRESHOLD", 5)
LOGIN_LOCKOUT_SECONDS = env_int("LOGIN_LOCKOUT_SECONDS", 15 * 60)
# API tokens resolved once per web process and reused while no token or user changed (accounts.authentication);
# this bounds an entry's age in seconds (0: look the token up on every request).
API_TOKEN_CACHE_S = env_int("API_TOKEN_CACHE_S", 30)

# Secrets at rest (users' Hugging Face tokens): Fernet keys, newest first. `manage.py rotate_secrets` re-encrypts
# every stored secret under the newest key. Without keys in DEBUG, one key is derived from SECRET_KEY.
SECRET_ENCRYPTION_KEYS = env_list("FINETUNE_ENCRYPTION_KEYS", [])
if not SECRET_ENCRYPTION_KEYS and not DEBUG:
    raise ImproperlyConfigured("FINETUNE_ENCRYPTION_KEYS must be set when DEBUG is off (Fernet keys, newest first)")
for _position, _key in enumerate(SECRET_ENCRYPTION_KEYS, start=1):  # checked now, not at the first decrypt
    try:
        Fernet(_key)
    except (ValueError, TypeError):
        raise ImproperlyConfigured(
            f"FINETUNE_ENCRYPTION_KEYS: key {_position} is not a Fernet key (32 url-safe base64-encoded bytes); make "
            'one with: python -c "from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())"',
        ) from None

# --- Hugging Face Hub (models_app/hub/), and the shared model cache Hub downloads land in (huggingface_hub's cache
# layout, one folder per repo). Default: $FINETUNE_CACHE_DIR/hub when set, else var/model-cache (tests: their own).
HF_ENDPOINT = env_str("HF_ENDPOINT", "https://huggingface.co").rstrip("/")
HF_TIMEOUT_S = float(env_str("HF_TIMEOUT_S", "10"))
_model_cache_default = BASE_DIR / "var" / ("test-model-cache" if TESTING else "model-cache")
if os.getenv("FINETUNE_CACHE_DIR") and not TESTING:
    _model_cache_default = Path(os.environ["FINETUNE_CACHE_DIR"]) / "hub"
FINETUNE_MODEL_CACHE = Path(env_str("FINETUNE_MODEL_CACHE", str(_model_cache_default)))
HF_DOWNLOAD_MAX_WORKERS = env_int("HF_DOWNLOAD_MAX_WORKERS", 4)
HF_DOWNLOAD_MAX_BYTES = env_int("HF_DOWNLOAD_MAX_BYTES", 100 * 10**9)  # larger base models are refused (0: no cap)
HF_ACCESS_CACHE_S = env_int("HF_ACCESS_CACHE_S", 300)  # how long "may this user read this private/gated repo" is kept
HF_SEARCH_MAX_RESULTS = env_int("HF_SEARCH_MAX_RESULTS", 50)
# A push still queued/running after this long is taken as lost (its worker died) and may be retried.
HF_PUSH_STALE_SECONDS = env_int("HF_PUSH_STALE_SECONDS", 3 * 3600)
# Push uploads: "xet" (hf_xet) or "lfs" (Git LFS; the default when HF_HUB_DISABLE_XET=1): models_app/hub/client.py.
HF_UPLOAD_PROTOCOL = env_str("HF_UPLOAD_PROTOCOL") or ("lfs" if env_bool("HF_HUB_DISABLE_XET", False) else "xet")

# --- Exports and Ollama import
EXPORT_LINK_TTL_S = env_int("EXPORT_LINK_TTL_S", 300)  # lifetime of a signed download link
EXPORT_STALE_S = env_int("EXPORT_STALE_S", 3 * 3600)  # a running export/import older than this is presumed dead
EXPORT_WORK_DIR = env_str("EXPORT_WORK_DIR") or None  # scratch space for exports (None: the system temp dir)
# Golden prompts of the GGUF verification (empty: the engine's three defaults) and tokens generated per prompt.
EXPORT_VERIFY_PROMPTS = env_list("EXPORT_VERIFY_PROMPTS", [])
EXPORT_VERIFY_MAX_NEW_TOKENS = env_int("EXPORT_VERIFY_MAX_NEW_TOKENS", 24)
OLLAMA_HOST = env_str("OLLAMA_HOST", "http://127.0.0.1:11434")
OLLAMA_TIMEOUT_S = float(env_str("OLLAMA_TIMEOUT_S", "30"))  # connect/read timeout of short calls
OLLAMA_GENERATE_TIMEOUT_S = float(env_str("OLLAMA_GENERATE_TIMEOUT_S", "600"))  # create/generate (model load)
OLLAMA_QUANTIZATION = env_str("OLLAMA_QUANTIZATION", "q8_0")  # GGUF quantization imported into Ollama
OLLAMA_NUM_CTX = env_int("OLLAMA_NUM_CTX", 4096)  # cap of the Modelfile's num_ctx

# Quotas (defaults; operators override per user).
DEFAULT_QUOTAS = {
    "concurrent_jobs": env_int("QUOTA_CONCURRENT_JOBS", 2),
    "storage_bytes": env_int("QUOTA_STORAGE_BYTES", 20 * 1024**3),
    "gpu_minutes_local_per_month": env_int("QUOTA_GPU_MINUTES_LOCAL", 6000),
    "gpu_minutes_modal_per_month": env_int("QUOTA_GPU_MINUTES_MODAL", 600),
    "modal_spend_usd_per_month": env_int("QUOTA_MODAL_SPEND_USD", 50),
}

# The first administrator, created by `manage.py ensure_admin` (called by `make run`) when none exists.
ADMIN_USERNAME = env_str("FINETUNE_ADMIN_USERNAME", "admin")
ADMIN_EMAIL = env_str("FINETUNE_ADMIN_EMAIL", "admin@example.com")
ADMIN_PASSWORD = env_str("FINETUNE_ADMIN_PASSWORD")

# --- DRF and the OpenAPI schema
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        # Token first: an unauthenticated request then gets 401 with `WWW-Authenticate: Token`.
        "accounts.authentication.ApiTokenAuthentication",
        "accounts.authentication.CsrfSessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_PAGINATION_CLASS": "finetune.pagination.Pagination",
    "PAGE_SIZE": 25,
    "DEFAULT_SCHEMA_CLASS": "finetune.schema.AutoSchema",  # every operation documents the API's errors
    "EXCEPTION_HANDLER": "finetune.exceptions.api_exception_handler",
    "DEFAULT_RENDERER_CLASSES": ["finetune.redaction.JSONRenderer"]
    + (["rest_framework.renderers.BrowsableAPIRenderer"] if DEBUG and not TESTING else []),
    "DEFAULT_THROTTLE_RATES": {
        "login_ip": LOGIN_RATE_PER_IP,
        "login_username": LOGIN_RATE_PER_USERNAME,
        "register_ip": env_str("REGISTER_RATE_PER_IP", "20/hour"),
    },
    # Trust X-Forwarded-For only behind a proxy (BEHIND_PROXY): then the client is the address the proxy appended
    # (NUM_PROXIES proxies in a row); otherwise REMOTE_ADDR. Throttles and the sign-in lockout key on it.
    "NUM_PROXIES": env_int("NUM_PROXIES", 1) if env_bool("BEHIND_PROXY", False) else 0,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "finetune API",
    "DESCRIPTION": "Self-hosted multi-user LLM fine-tuning: accounts, datasets, training jobs, models.",
    "VERSION": "0.1.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
    "SERVE_PERMISSIONS": ["rest_framework.permissions.AllowAny"],
    # The enums' hook (drf-spectacular's default), then: request strings take no NUL character (finetune/schema.py).
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "finetune.schema.forbid_nul_in_request_strings",
    ],
}
# --- Models from the Hub: the catalogue's and the model tasks' `status` choice sets get their own schema names.
SPECTACULAR_SETTINGS["ENUM_NAME_OVERRIDES"] = {
    **SPECTACULAR_SETTINGS.get("ENUM_NAME_OVERRIDES", {}),  # type: ignore[dict-item]
    "BaseModelStatusEnum": "models_app.models.BaseModel.Status",
    "ModelTaskStatusEnum": "models_app.models.TaskStatus",
    "SweepStatusEnum": ["running", "finished"],
    "BackendChoiceEnum": ["local", "modal"],
}

# --- i18n
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

# --- Email (console in development)
EMAIL_BACKEND = env_str("EMAIL_BACKEND", "django.core.mail.backends.console.EmailBackend")
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", "finetune <noreply@localhost>")

# --- Job notifications: email + optional per-user webhook when a job succeeds or fails.
EMAIL_FILE_PATH = env_str("EMAIL_FILE_PATH", str(BASE_DIR / "var" / "mail"))  # for the filebased backend
# Tests: a queue no general test worker consumes (a notification task reading a job while a test's teardown truncates
# the tables deadlocked them); the notification tests start a worker on a queue of their own.
NOTIFICATIONS_QUEUE = env_str("NOTIFICATIONS_QUEUE", "test-notifications" if TESTING else "default")
NOTIFY_WEBHOOK_TIMEOUT_S = env_int("NOTIFY_WEBHOOK_TIMEOUT_S", 5)
NOTIFY_WEBHOOK_RETRIES = env_int("NOTIFY_WEBHOOK_RETRIES", 2)
NOTIFY_WEBHOOK_RETRY_DELAY_S = env_int("NOTIFY_WEBHOOK_RETRY_DELAY_S", 30)
# Webhooks to loopback, private, link-local (cloud metadata) or otherwise non-public addresses are refused, at save
# and again at delivery, unless this is on (default: on only with DEBUG or in tests, where receivers run locally).
NOTIFY_WEBHOOK_ALLOW_PRIVATE = env_bool("NOTIFY_WEBHOOK_ALLOW_PRIVATE", DEBUG or TESTING)

# --- Logs (LOG_FORMAT plain | json, with job_id/user_id/task_id) and Sentry (SENTRY_DSN): finetune/observability.py
LOGGING = logging_config(env_str("LOG_FORMAT", "plain"), env_str("LOG_LEVEL", "INFO"))
SENTRY_ENABLED = init_sentry(
    env_str("SENTRY_DSN"),
    environment=env_str("SENTRY_ENVIRONMENT", "production"),
    traces_sample_rate=float(env_str("SENTRY_TRACES_SAMPLE_RATE", "0")),
)
# --- Prometheus at /metrics (dashboard/metrics.py): a scraper sends `Authorization: Bearer METRICS_TOKEN` or comes from
# an address in METRICS_ALLOWED_IPS (addresses or CIDRs); with neither set, /metrics answers 403 to everyone.
METRICS_TOKEN = env_str("METRICS_TOKEN", "")
METRICS_ALLOWED_IPS = env_list("METRICS_ALLOWED_IPS", [])
