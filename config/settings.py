"""Settings, read from the environment.

Development and tests run with DJANGO_DEBUG=1 (the Makefile sets it) and then fall back to the embedded
services that `bin/localservices.py` starts. Outside DEBUG every secret and service URL must be given:
a missing one stops start-up with ImproperlyConfigured rather than running on a guess.
"""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path
from urllib.parse import unquote, urlparse

from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent


def env_bool(name: str, default: bool = False) -> bool:
    """Read a boolean environment variable ("1", "true", "yes", "on" are true)."""
    value = os.environ.get(name)
    if value is None:
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def env_list(name: str, default: list[str]) -> list[str]:
    """Read a comma-separated environment variable."""
    value = os.environ.get(name)
    if value is None:
        return default
    return [item.strip() for item in value.split(",") if item.strip()]


def env_required(name: str, *, debug_default: str) -> str:
    """Read a variable that production must set; DEBUG falls back to the local default."""
    value = os.environ.get(name)
    if value:
        return value
    if DEBUG:
        return debug_default
    raise ImproperlyConfigured(
        f"{name} is not set. Set it in the environment (see README, 'Configuration'), "
        "or set DJANGO_DEBUG=1 for a local development run."
    )


def database_from_url(url: str) -> dict:
    """Turn postgres://user:password@host:port/name into a Django DATABASES entry."""
    parsed = urlparse(url)
    if parsed.scheme not in {"postgres", "postgresql", "pgsql"}:
        raise ImproperlyConfigured(f"DATABASE_URL must be a postgres:// URL, got scheme {parsed.scheme!r}")
    return {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": unquote(parsed.path.lstrip("/")),
        "USER": unquote(parsed.username or ""),
        "PASSWORD": unquote(parsed.password or ""),
        "HOST": parsed.hostname or "",
        "PORT": str(parsed.port or ""),
        "CONN_MAX_AGE": int(os.environ.get("DATABASE_CONN_MAX_AGE", "60")),
        "CONN_HEALTH_CHECKS": True,
    }


# Test runs (pytest sets PYTEST_VERSION) use the development defaults unless told otherwise.
DEBUG = env_bool("DJANGO_DEBUG", "PYTEST_VERSION" in os.environ)

LOCAL_PG_PORT = os.environ.get("LABELAPP_PG_PORT", "54329")
LOCAL_VALKEY_PORT = os.environ.get("LABELAPP_VALKEY_PORT", "63799")

SECRET_KEY = env_required("DJANGO_SECRET_KEY", debug_default="dev-only-insecure-key-do-not-use-in-production")
ALLOWED_HOSTS = env_list("DJANGO_ALLOWED_HOSTS", ["127.0.0.1", "localhost", "testserver"] if DEBUG else [])
CSRF_TRUSTED_ORIGINS = env_list("DJANGO_CSRF_TRUSTED_ORIGINS", [])

DATABASES = {
    "default": database_from_url(
        env_required("DATABASE_URL", debug_default=f"postgres://labelapp@127.0.0.1:{LOCAL_PG_PORT}/labelapp")
    )
}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REDIS_URL = env_required("REDIS_URL", debug_default=f"redis://127.0.0.1:{LOCAL_VALKEY_PORT}")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "django.contrib.postgres",
    "rest_framework",
    "rest_framework.authtoken",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_htmx",
    "axes",
    "django_prometheus",
    # Bottom to top (README, "Architecture"): shared pieces, the catalogue, the models, the labelling workflow.
    "labelapp.common",
    "labelapp.catalogue",
    "similarity",
    "classifier",
    "labelapp.workflow",
]

MIDDLEWARE = [
    # django-prometheus times each request between its Before (first) and After (near last) middleware.
    "django_prometheus.middleware.PrometheusBeforeMiddleware",
    "django.middleware.security.SecurityMiddleware",
    # A view that finds the database away answers 503 with Retry-After (labelapp/common/middleware.py).
    "labelapp.common.middleware.DatabaseUnavailableMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "django_prometheus.middleware.PrometheusAfterMiddleware",
    # Last, as django-axes asks: it turns a login refused for a locked-out (username, address) into the 429 page.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"

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
                "labelapp.common.context_processors.roles",
            ],
        },
    },
]

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "login"

# Login throttling (django-axes): AXES_FAILURE_LIMIT wrong passwords for one username from one address lock that
# pair out of the site and admin logins for AXES_COOLOFF_MINUTES (HTTP 429, templates/registration/locked_out.html);
# a success resets the count. Attempts live in the database, so every gunicorn worker sees them. Unlock at once with
# `manage.py axes_reset_username NAME` (or axes_reset, axes_reset_ip). AxesStandaloneBackend must come first.
AUTHENTICATION_BACKENDS = ["axes.backends.AxesStandaloneBackend", "django.contrib.auth.backends.ModelBackend"]
AXES_FAILURE_LIMIT = int(os.environ.get("AXES_FAILURE_LIMIT", "10"))
AXES_COOLOFF_TIME = timedelta(minutes=float(os.environ.get("AXES_COOLOFF_MINUTES", "15")))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_TEMPLATE = "registration/locked_out.html"
AXES_HTTP_RESPONSE_CODE = 429
# The client's address (django-ipware): REMOTE_ADDR unless a reverse proxy sets X-Forwarded-For (README, "Roles").
AXES_IPWARE_META_PRECEDENCE_ORDER = tuple(env_list("AXES_IPWARE_META_PRECEDENCE_ORDER", ["REMOTE_ADDR"]))
AXES_IPWARE_PROXY_ORDER = os.environ.get("AXES_IPWARE_PROXY_ORDER", "right-most")
_axes_proxy_count = os.environ.get("AXES_IPWARE_PROXY_COUNT", "")
AXES_IPWARE_PROXY_COUNT = int(_axes_proxy_count) if _axes_proxy_count else None

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = Path(os.environ.get("STATIC_ROOT", BASE_DIR / "staticfiles"))
STATICFILES_DIRS = [
    BASE_DIR / "static",
    # htmx comes from the npm registry (package.json), never vendored into the repository.
    ("vendor/htmx", BASE_DIR / "node_modules" / "htmx.org" / "dist"),
]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": (
            "django.contrib.staticfiles.storage.StaticFilesStorage"
            if DEBUG
            else "whitenoise.storage.CompressedManifestStaticFilesStorage"
        )
    },
}
MEDIA_URL = os.environ.get("MEDIA_URL", "/media/")
MEDIA_ROOT = Path(os.environ.get("MEDIA_ROOT", BASE_DIR / "media"))
# Trained models and other ML artefacts; written by the ml worker, read by the web process.
ARTEFACT_ROOT = Path(os.environ.get("ARTEFACT_ROOT", BASE_DIR / "artefacts"))

# The cache degrades instead of failing (labelapp/common/cache.py): with Valkey away, each process serves from its
# own memory for CACHE_RETRY_SECONDS, then tries again; short socket timeouts keep a dead server cheap.
CACHE_RETRY_SECONDS = float(os.environ.get("CACHE_RETRY_SECONDS", "5"))
CACHES = {
    "default": {
        "BACKEND": "labelapp.common.cache.FailoverRedisCache",
        "LOCATION": os.environ.get("CACHE_URL", f"{REDIS_URL}/1"),
        "KEY_PREFIX": os.environ.get("CACHE_KEY_PREFIX", "labelapp"),
        "OPTIONS": {"RETRY_SECONDS": CACHE_RETRY_SECONDS, "socket_connect_timeout": 0.5, "socket_timeout": 1.0},
    }
}

# Celery: Valkey/Redis as broker and result backend; TensorFlow work goes to its own "ml" queue.
CELERY_BROKER_URL = os.environ.get("CELERY_BROKER_URL", f"{REDIS_URL}/0")
CELERY_RESULT_BACKEND = os.environ.get("CELERY_RESULT_BACKEND", f"{REDIS_URL}/0")
CELERY_TASK_DEFAULT_QUEUE = os.environ.get("CELERY_DEFAULT_QUEUE", "default")
CELERY_ML_QUEUE = os.environ.get("CELERY_ML_QUEUE", "ml")
CELERY_TASK_ROUTES = {
    # Housekeeping that loads no model stays on the default queue, so a long training cannot delay it.
    "classifier.tasks.train_runs_reap_task": {"queue": CELERY_TASK_DEFAULT_QUEUE},
    "classifier.tasks.model_versions_prune_task": {"queue": CELERY_TASK_DEFAULT_QUEUE},
    "similarity.tasks.embeddings_sync_categories_task": {"queue": CELERY_TASK_DEFAULT_QUEUE},
    "similarity.tasks.embeddings_categories_sync_dirty_task": {"queue": CELERY_TASK_DEFAULT_QUEUE},
    "similarity.tasks.embedding_jobs_reap_task": {"queue": CELERY_TASK_DEFAULT_QUEUE},
    "classifier.tasks.*": {"queue": CELERY_ML_QUEUE},
    "similarity.tasks.*": {"queue": CELERY_ML_QUEUE},
    # Filling a round scores the pool with the active model (TensorFlow).
    "labelapp.workflow.tasks.labelling_round_fill_task": {"queue": CELERY_ML_QUEUE},
}
CELERY_TASK_ACKS_LATE = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# Publishing gives up after this long when the broker does not answer; the outbox keeps the message.
CELERY_BROKER_CONNECTION_TIMEOUT = float(os.environ.get("CELERY_BROKER_CONNECTION_TIMEOUT", "2"))
CELERY_TASK_ALWAYS_EAGER = env_bool("CELERY_TASK_ALWAYS_EAGER", False)
CELERY_TASK_EAGER_PROPAGATES = True
# Prometheus (labelapp/common/metrics.py): /metrics on the web answers staff sessions and `Authorization: Bearer
# METRICS_TOKEN` ("" = no token accepted); a worker serves its task metrics on CELERY_METRICS_PORT (0 = off).
METRICS_TOKEN = os.environ.get("METRICS_TOKEN", "")
CELERY_METRICS_PORT = int(os.environ.get("CELERY_METRICS_PORT", "0"))
CELERY_METRICS_ADDR = os.environ.get("CELERY_METRICS_ADDR", "127.0.0.1")
# prometheus_client reads this itself when imported; set it (an empty folder per service) where one service runs
# several processes — a prefork worker, gunicorn's workers — so the exporter sums every process's counts.
PROMETHEUS_MULTIPROC_DIR = os.environ.get("PROMETHEUS_MULTIPROC_DIR", "")
# The outbox (labelapp/common/dispatch.py): how often beat's relay sends what waits, and how long a process
# stops sending at once after the broker failed it.
OUTBOX_RELAY_SECONDS = float(os.environ.get("OUTBOX_RELAY_SECONDS", "10"))
OUTBOX_BACKOFF_SECONDS = float(os.environ.get("OUTBOX_BACKOFF_SECONDS", "5"))
CELERY_BEAT_SCHEDULE: dict = {
    "relay-outbox": {"task": "labelapp.common.tasks.outbox_relay_task", "schedule": OUTBOX_RELAY_SECONDS},
    "sync-dirty-category-copies": {"task": "similarity.tasks.embeddings_categories_sync_dirty_task",
                                   "schedule": 60},
    "reap-stale-imports": {"task": "labelapp.catalogue.tasks.import_runs_reap_task", "schedule": 15 * 60},
    "refresh-source-trust": {"task": "labelapp.catalogue.tasks.trust_refresh_task", "schedule": 15 * 60},
    "reap-stale-embedding-jobs": {"task": "similarity.tasks.embedding_jobs_reap_task", "schedule": 5 * 60},
    "reap-stale-train-runs": {"task": "classifier.tasks.train_runs_reap_task", "schedule": 5 * 60},
    "prune-model-versions": {"task": "classifier.tasks.model_versions_prune_task", "schedule": 24 * 3600},
    "expire-labelling-leases": {"task": "labelapp.workflow.tasks.queue_leases_expire_task", "schedule": 60},
    "reap-labelling-rounds": {"task": "labelapp.workflow.tasks.labelling_rounds_reap_task", "schedule": 60},
}

# Classifier training (classifier/services/runs.py, pipeline.py). The feature config says which product fields the
# model reads and how; the demo's own (demo/classifier.toml) leaves out the Myntra feed category, which is the
# answer there.
CLASSIFIER_FEATURE_CONFIG = Path(os.environ.get("CLASSIFIER_FEATURE_CONFIG",
                                                BASE_DIR / "classifier/core/configs/default.toml"))
CLASSIFIER_DEFAULT_ARCHITECTURE = os.environ.get("CLASSIFIER_DEFAULT_ARCHITECTURE", "wide_deep")
CLASSIFIER_EPOCHS = int(os.environ.get("CLASSIFIER_EPOCHS", "15"))
CLASSIFIER_BATCH_SIZE = int(os.environ.get("CLASSIFIER_BATCH_SIZE", "256"))
CLASSIFIER_LEARNING_RATE = float(os.environ.get("CLASSIFIER_LEARNING_RATE", "3e-3"))
CLASSIFIER_PATIENCE = int(os.environ.get("CLASSIFIER_PATIENCE", "2"))
CLASSIFIER_PREDICT_CHUNK = int(os.environ.get("CLASSIFIER_PREDICT_CHUNK", "5000"))
CLASSIFIER_KEEP_VERSIONS = int(os.environ.get("CLASSIFIER_KEEP_VERSIONS", "3"))
CLASSIFIER_STALE_AFTER_S = int(os.environ.get("CLASSIFIER_STALE_AFTER_S", "900"))

# Similarity (similarity/selectors/settings.py)
SIMILARITY_BACKBONE = os.environ.get("SIMILARITY_BACKBONE", "efficientnet_lite0")
SIMILARITY_MODEL_VERSION = os.environ.get("SIMILARITY_MODEL_VERSION", "")  # "" = the backbone's own version
SIMILARITY_TEXT_MODEL_VERSION = os.environ.get("SIMILARITY_TEXT_MODEL_VERSION", "")  # "" = the newest text model
SIMILARITY_TEXT_DIM = int(os.environ.get("SIMILARITY_TEXT_DIM", "256"))
SIMILARITY_TEXT_FIT_MAX_PRODUCTS = int(os.environ.get("SIMILARITY_TEXT_FIT_MAX_PRODUCTS", "200000"))
SIMILARITY_EMBED_BATCH_SIZE = int(os.environ.get("SIMILARITY_EMBED_BATCH_SIZE", "64"))
SIMILARITY_EMBED_WORKERS = int(os.environ.get("SIMILARITY_EMBED_WORKERS", "2"))
SIMILARITY_JOB_CHUNK_SIZE = int(os.environ.get("SIMILARITY_JOB_CHUNK_SIZE", "512"))
SIMILARITY_HYBRID_TEXT_WEIGHT = float(os.environ.get("SIMILARITY_HYBRID_TEXT_WEIGHT", "0.3"))
SIMILARITY_EXACT_SCAN_MIN_ROWS = int(os.environ.get("SIMILARITY_EXACT_SCAN_MIN_ROWS", "1000"))
SIMILARITY_EXACT_SCAN_MAX_ROWS = int(os.environ.get("SIMILARITY_EXACT_SCAN_MAX_ROWS", "3000"))
SIMILARITY_EXACT_SCAN_COST_RATIO = float(os.environ.get("SIMILARITY_EXACT_SCAN_COST_RATIO", "6.0"))
SIMILARITY_MAX_SCAN_TUPLES = int(os.environ.get("SIMILARITY_MAX_SCAN_TUPLES", "20000"))
SIMILARITY_CACHE_TIMEOUT_S = int(os.environ.get("SIMILARITY_CACHE_TIMEOUT_S", "600"))
# Largest header a sequential JPEG may claim, at import and when embedded: it is decoded at 1/2..1/8 scale, so
# memory follows the reduced size (similarity/core/images.py says why 400 Mpx); other images stay within ~40 Mpx.
IMAGE_JPEG_MAX_PIXELS = int(os.environ.get("IMAGE_JPEG_MAX_PIXELS", "400000000"))

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.PageNumberPagination",
    "PAGE_SIZE": 50,
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
    # drf-spectacular's, plus the 401/403/404/429 each endpoint's configuration implies.
    "DEFAULT_SCHEMA_CLASS": "labelapp.common.schema.AutoSchema",
    "DEFAULT_THROTTLE_RATES": {
        "similar": os.environ.get("SIMILAR_API_RATE", "6000/min"),
    },
    "EXCEPTION_HANDLER": "labelapp.common.apis.exception_handler",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Labelapp API",
    "DESCRIPTION": "Catalogue, taxonomy, labels and similar products.",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    # The schema and the docs page are for logged-in users (a token or a session), not the whole internet.
    "SERVE_PERMISSIONS": ["rest_framework.permissions.IsAuthenticated"],
    "ENUM_NAME_OVERRIDES": {"CheckResultEnum": "labelapp.common.apis.CHECK_RESULTS"},
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
}

# Imports: URL images are fetched with these limits; a failure is recorded on the product.
IMPORT_IMAGE_TIMEOUT_S = float(os.environ.get("IMPORT_IMAGE_TIMEOUT_S", "10"))
IMPORT_IMAGE_MAX_BYTES = int(os.environ.get("IMPORT_IMAGE_MAX_BYTES", str(20 * 1024 * 1024)))
# Image URLs are fetched from public addresses only; these host names may resolve to private ones (an internal CDN).
IMPORT_IMAGE_ALLOWED_HOSTS = env_list("IMPORT_IMAGE_ALLOWED_HOSTS", [])
# Largest upload (feed + mapping) the import page and API accept. 200 MiB holds a full affiliate catalogue
# (~400k rows of CSV); the web process keeps two copies on disk per upload; bigger files: manage.py import_products.
IMPORT_UPLOAD_MAX_BYTES = int(os.environ.get("IMPORT_UPLOAD_MAX_BYTES", str(200 * 1024 * 1024)))
IMPORT_BATCH_SIZE = int(os.environ.get("IMPORT_BATCH_SIZE", "1000"))
# A run still "running" this long after it started lost its worker: the reaper marks it failed.
IMPORT_STALE_AFTER_S = int(os.environ.get("IMPORT_STALE_AFTER_S", str(6 * 3600)))
# Labelling: how long a labeller holds a queue item before it returns to the queue for others.
LABELLING_LEASE_SECONDS = int(os.environ.get("LABELLING_LEASE_SECONDS", "600"))
FILE_UPLOAD_MAX_MEMORY_SIZE = 10 * 1024 * 1024
DATA_UPLOAD_MAX_MEMORY_SIZE = 10 * 1024 * 1024

# Production hardening; `manage.py check --deploy` is clean with DJANGO_DEBUG unset.
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_SSL_REDIRECT = env_bool("DJANGO_SECURE_SSL_REDIRECT", not DEBUG)
SESSION_COOKIE_SECURE = env_bool("DJANGO_SESSION_COOKIE_SECURE", not DEBUG)
CSRF_COOKIE_SECURE = env_bool("DJANGO_CSRF_COOKIE_SECURE", not DEBUG)
SECURE_HSTS_SECONDS = int(os.environ.get("DJANGO_SECURE_HSTS_SECONDS", "0" if DEBUG else "31536000"))
SECURE_HSTS_INCLUDE_SUBDOMAINS = not DEBUG
SECURE_HSTS_PRELOAD = not DEBUG
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "INFO")},
    "loggers": {"django.db.backends": {"level": "WARNING"}},
}
