"""Settings, all from the environment (12-factor).

With no environment at all the project runs embedded: SQLite, Celery tasks run
eagerly in the web process, e-mail to the console. ``DATABASE_URL`` and
``REDIS_URL`` switch to PostgreSQL and Redis with real workers. Every variable
is listed in the README. A secret may also come from ``<NAME>_FILE``.
"""

from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()


def _secret(name: str, default: str | None = None) -> str | None:
    """Read a secret from NAME or from the file named by NAME_FILE."""
    path = env.str(f"{name}_FILE", default="")
    if path:
        try:
            return Path(path).read_text().strip()
        except OSError as exc:
            raise ImproperlyConfigured(f"{name}_FILE={path} cannot be read: {exc}") from exc
    return env.str(name, default=default)


ENVIRONMENT = env.str("ENVIRONMENT", default="development")
if ENVIRONMENT not in {"development", "production"}:
    raise ImproperlyConfigured("ENVIRONMENT must be 'development' or 'production'")
PRODUCTION = ENVIRONMENT == "production"

DEBUG = env.bool("DEBUG", default=False)
_DEV_SECRET_KEY = "dev-only-insecure-key-do-not-use-in-production-0123456789abcdef"  # noqa: S105 - refused in production
SECRET_KEY = _secret("SECRET_KEY", default=None if PRODUCTION else _DEV_SECRET_KEY)
if PRODUCTION and (not SECRET_KEY or SECRET_KEY == _DEV_SECRET_KEY):
    raise ImproperlyConfigured("SECRET_KEY must be set in production")

ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=[] if PRODUCTION else ["*"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])
SITE_URL = env.str("SITE_URL", default="http://127.0.0.1:8000").rstrip("/")

INSTALLED_APPS = [
    "backoffice.apps.BackofficeAdminConfig",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "django.contrib.sites",
    "django.contrib.humanize",
    "allauth",
    "allauth.account",
    "django_otp",
    "django_otp.plugins.otp_totp",
    "django_otp.plugins.otp_static",
    "auditlog",
    "django_countries",
    "phonenumber_field",
    "django_htmx",
    "import_export",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    # Our apps, in dependency order (see ARCHITECTURE.md).
    "backoffice.apps.BackofficeConfig",
    "accounts",
    "payments",
    "kyc",
    "ib",
    "treebeard",
    "antifraud",
    "reports",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    # Before anything reads a request's body (the CSRF check does).
    "kyc.middleware.DocumentUploadMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django_otp.middleware.OTPMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "allauth.account.middleware.AccountMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "auditlog.middleware.AuditlogMiddleware",
]

# Benchmarks serve extra views from their own URLconf (tests/benchmarks/urls.py).
ROOT_URLCONF = env.str("ROOT_URLCONF", default="backoffice.urls")
WSGI_APPLICATION = "backoffice.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.template.context_processors.i18n",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "backoffice.context_processors.branding",
            ],
        },
    },
]

# --- Database -----------------------------------------------------------------
DATABASES = {"default": env.db_url("DATABASE_URL", default=f"sqlite:///{BASE_DIR / 'db.sqlite3'}")}
if DATABASES["default"]["ENGINE"].endswith("sqlite3"):
    DATABASES["default"].setdefault("OPTIONS", {})["timeout"] = 20
else:
    # A new PostgreSQL connection costs ~3.7 ms; keep them (shared/BASELINES.md).
    DATABASES["default"]["CONN_MAX_AGE"] = env.int("CONN_MAX_AGE", default=600)
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Redis: cache, sessions, Celery broker --------------------------------------
REDIS_URL = env.str("REDIS_URL", default="")
if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            "OPTIONS": {"socket_connect_timeout": 2, "socket_timeout": 2},
        }
    }
    SESSION_ENGINE = "django.contrib.sessions.backends.cached_db"
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    SESSION_ENGINE = "django.contrib.sessions.backends.db"

CELERY_BROKER_URL = REDIS_URL or "memory://"
CELERY_TASK_ALWAYS_EAGER = env.bool("CELERY_TASK_ALWAYS_EAGER", default=not REDIS_URL)
CELERY_TASK_EAGER_PROPAGATES = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_IGNORE_RESULT = True
CELERY_TIMEZONE = "UTC"
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# A web request must not hang when Redis is down: fail fast, the outbox
# sweeper delivers later.
CELERY_TASK_PUBLISH_RETRY_POLICY = {
    "max_retries": 1,
    "interval_start": 0,
    "interval_step": 0.2,
    "interval_max": 0.2,
}
CELERY_BROKER_TRANSPORT_OPTIONS = {"socket_connect_timeout": 2, "socket_timeout": 5}
CELERY_BEAT_SCHEDULE = {
    "outbox-sweep": {
        "task": "backoffice.tasks.outbox_sweep",
        "schedule": env.float("OUTBOX_SWEEP_INTERVAL", default=30.0),
    },
}
# Events not delivered after this many seconds are re-dispatched by the sweeper.
OUTBOX_REDISPATCH_AFTER = env.int("OUTBOX_REDISPATCH_AFTER", default=60)

# --- Auth -----------------------------------------------------------------------
AUTH_USER_MODEL = "accounts.User"
AUTHENTICATION_BACKENDS = [
    "django.contrib.auth.backends.ModelBackend",
    "allauth.account.auth_backends.AuthenticationBackend",
]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {
        "NAME": "django.contrib.auth.password_validation.MinimumLengthValidator",
        "OPTIONS": {"min_length": 10},
    },
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "account_login"
LOGIN_REDIRECT_URL = "room:dashboard"
SITE_ID = 1

ACCOUNT_ADAPTER = "accounts.adapter.AccountAdapter"
ACCOUNT_USER_MODEL_USERNAME_FIELD = None
ACCOUNT_LOGIN_METHODS = {"email"}
ACCOUNT_SIGNUP_FIELDS = ["email*", "password1*", "password2*"]
# Then the fields of the registration flow that applies (accounts/forms_signup.py).
ACCOUNT_FORMS = {"signup": "accounts.forms_signup.SignupForm"}
ACCOUNT_EMAIL_VERIFICATION = "mandatory"
ACCOUNT_CONFIRM_EMAIL_ON_GET = False
ACCOUNT_LOGIN_ON_EMAIL_CONFIRMATION = False
ACCOUNT_UNIQUE_EMAIL = True
ACCOUNT_SESSION_REMEMBER = None
ACCOUNT_LOGOUT_ON_PASSWORD_CHANGE = False
ACCOUNT_DEFAULT_HTTP_PROTOCOL = "https" if PRODUCTION else "http"
# Repeated sign-in failures lock the e-mail address out for a while (and
# limit one IP address across addresses). Counted in the cache (Redis).
LOGIN_ATTEMPTS_LIMIT = env.int("LOGIN_ATTEMPTS_LIMIT", default=5)
LOGIN_ATTEMPTS_TIMEOUT = env.int("LOGIN_ATTEMPTS_TIMEOUT", default=15 * 60)
ACCOUNT_RATE_LIMITS = {
    "login_failed": f"30/m/ip,{LOGIN_ATTEMPTS_LIMIT}/{LOGIN_ATTEMPTS_TIMEOUT}s/key",
}
ACCOUNT_EMAIL_SUBJECT_PREFIX = ""

OTP_TOTP_ISSUER = env.str("OTP_ISSUER", default="Back office")
OTP_TOTP_THROTTLE_FACTOR = 1
OTP_STATIC_THROTTLE_FACTOR = 1
BACKUP_CODE_COUNT = 10

# --- E-mail ---------------------------------------------------------------------
EMAIL_CONFIG = env.email_url("EMAIL_URL", default="consolemail://")
vars().update(EMAIL_CONFIG)
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="Back office <no-reply@localhost>")
SERVER_EMAIL = DEFAULT_FROM_EMAIL

# --- Internationalisation -------------------------------------------------------
LANGUAGE_CODE = "en"
LANGUAGES = [
    ("en", "English"),
    ("de", "Deutsch"),
    ("es", "Español"),
    ("fr", "Français"),
    ("it", "Italiano"),
    ("pt", "Português"),
    ("ru", "Русский"),
    ("zh-hans", "简体中文"),
    ("ar", "العربية"),
]
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
PHONENUMBER_DEFAULT_REGION = None

# --- Static and media -----------------------------------------------------------
STATIC_URL = "/static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STATICFILES_DIRS = [BASE_DIR / "static"]
MEDIA_URL = "/media/"
MEDIA_ROOT = Path(env.str("MEDIA_ROOT", default=str(BASE_DIR / "media")))
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"
        if PRODUCTION
        else "django.contrib.staticfiles.storage.StaticFilesStorage"
    },
}
WHITENOISE_USE_FINDERS = not PRODUCTION
DATA_UPLOAD_MAX_MEMORY_SIZE = 5 * 1024 * 1024

# --- Security -------------------------------------------------------------------
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_AGE = env.int("SESSION_COOKIE_AGE", default=8 * 3600)
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
if PRODUCTION:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=True)
    SECURE_REDIRECT_EXEMPT = [r"^healthz$"]  # probes from inside the network
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=31536000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    "loggers": {"django.db.backends": {"level": "INFO"}},
}

# --- Payments -------------------------------------------------------------------
# Fernet keys for secrets stored in the database (provider API keys); the first
# encrypts, all decrypt (rotation). Development derives one from SECRET_KEY.
_FIELD_KEYS = _secret("FIELD_ENCRYPTION_KEYS", default="") or ""
FIELD_ENCRYPTION_KEYS = [key.strip() for key in _FIELD_KEYS.split(",") if key.strip()]
if PRODUCTION and not FIELD_ENCRYPTION_KEYS:
    raise ImproperlyConfigured("FIELD_ENCRYPTION_KEYS must be set in production")
# PSP return and webhook URLs are built on SITE_URL (above); the sandbox PSP
# calls back to it over HTTP.
# A conversion quote holds for this many seconds.
CONVERSION_QUOTE_TTL = env.int("CONVERSION_QUOTE_TTL", default=30)
# May a client transfer money to another client's wallet? Off by default.
TRANSFERS_TO_OTHER_CLIENTS = env.bool("TRANSFERS_TO_OTHER_CLIENTS", default=False)
# Exchange rates are refreshed by beat every this many seconds.
RATES_REFRESH_INTERVAL = env.float("RATES_REFRESH_INTERVAL", default=300.0)
CELERY_BEAT_SCHEDULE["rates-refresh"] = {
    "task": "payments.tasks.rates_refresh",
    "schedule": RATES_REFRESH_INTERVAL,
}

# --- Trading accounts and platforms -------------------------------------------------
# How many active trading accounts one client may hold.
TRADING_ACCOUNTS_PER_CLIENT = env.int("TRADING_ACCOUNTS_PER_CLIENT", default=10)
# Beat: new deals are pulled from every enabled platform, cached account
# states refreshed, and transfers whose platform call did not settle checked.
DEALS_SYNC_INTERVAL = env.float("DEALS_SYNC_INTERVAL", default=60.0)
TRADING_STATE_REFRESH_INTERVAL = env.float("TRADING_STATE_REFRESH_INTERVAL", default=60.0)
TRADING_TRANSFER_SWEEP_INTERVAL = env.float("TRADING_TRANSFER_SWEEP_INTERVAL", default=30.0)
# A transfer still "sending" after this many seconds is checked with the platform.
TRADING_TRANSFER_STALE_AFTER = env.int("TRADING_TRANSFER_STALE_AFTER", default=60)
# A transfer the platform could not take (unreachable) is tried again after this.
TRADING_TRANSFER_RETRY_AFTER = env.int("TRADING_TRANSFER_RETRY_AFTER", default=30)
# The market simulator trades demo-platform accounts every this many seconds
# (0: only when run by hand with `manage.py simulate_market`).
MARKET_SIMULATOR_INTERVAL = env.float("MARKET_SIMULATOR_INTERVAL", default=0.0)
# The largest deal report file (CSV or XLSX) staff may import, in bytes.
DEAL_IMPORT_MAX_BYTES = env.int("DEAL_IMPORT_MAX_BYTES", default=200 * 1024 * 1024)
CELERY_BEAT_SCHEDULE["deals-sync"] = {
    "task": "accounts.tasks.deals_sync_all",
    "schedule": DEALS_SYNC_INTERVAL,
}
CELERY_BEAT_SCHEDULE["trading-state-refresh"] = {
    "task": "accounts.tasks.trading_accounts_refresh",
    "schedule": TRADING_STATE_REFRESH_INTERVAL,
}
CELERY_BEAT_SCHEDULE["trading-transfers-sweep"] = {
    "task": "payments.tasks.trading_transfers_sweep",
    "schedule": TRADING_TRANSFER_SWEEP_INTERVAL,
}
if MARKET_SIMULATOR_INTERVAL > 0:
    CELERY_BEAT_SCHEDULE["market-simulator"] = {
        "task": "accounts.tasks.market_simulate",
        "schedule": MARKET_SIMULATOR_INTERVAL,
    }

# --- KYC expiry -------------------------------------------------------------------
# Beat expires approvals past their date (an identity document's expiry, a proof
# of address older than its maximum age) every this many seconds; clients move
# back to the level they still satisfy. Approvals lapse at midnight, so an hour's
# delay at most is what the default allows.
# A deposit still open (started, not paid) counts against the KYC limits for
# this many hours; after that an abandoned checkout no longer holds the limit.
KYC_OPEN_DEPOSIT_HOURS = env.int("KYC_OPEN_DEPOSIT_HOURS", default=24)
if KYC_OPEN_DEPOSIT_HOURS <= 0:
    raise ImproperlyConfigured("KYC_OPEN_DEPOSIT_HOURS must be a positive number of hours")
KYC_EXPIRY_INTERVAL = env.float("KYC_EXPIRY_INTERVAL", default=3600.0)
if KYC_EXPIRY_INTERVAL <= 0:
    raise ImproperlyConfigured("KYC_EXPIRY_INTERVAL must be a positive number of seconds")
CELERY_BEAT_SCHEDULE["kyc-expiry"] = {
    "task": "kyc.tasks.submissions_expire",
    "schedule": KYC_EXPIRY_INTERVAL,
}

# --- KYC documents ----------------------------------------------------------------
# Identity documents are stored encrypted (AES-256-GCM) in a private storage that
# no URL serves; kyc.views.documents serves them to those allowed (docs/KYC_DOCUMENTS.md).
KYC_DOCUMENT_ROOT = Path(
    env.str("KYC_DOCUMENT_ROOT", default=str(BASE_DIR / "var" / "kyc-documents"))
).resolve()
for _public in (MEDIA_ROOT, STATIC_ROOT, *STATICFILES_DIRS):
    _public = Path(_public).resolve()
    if _public == KYC_DOCUMENT_ROOT or _public in KYC_DOCUMENT_ROOT.parents:
        raise ImproperlyConfigured(
            f"KYC_DOCUMENT_ROOT ({KYC_DOCUMENT_ROOT}) must not be inside a public "
            f"folder ({_public})"
        )
# Another backend (an S3 bucket without public access) may replace this one.
STORAGES["kyc_documents"] = {"BACKEND": "kyc.documents.PrivateDocumentStorage"}
# 32-byte keys, URL-safe base64 (the format of a Fernet key); the first encrypts,
# all decrypt (rotation). Development derives one from SECRET_KEY.
_KYC_KEYS = _secret("KYC_DOCUMENT_KEYS", default="") or ""
KYC_DOCUMENT_KEYS = [key.strip() for key in _KYC_KEYS.split(",") if key.strip()]
if PRODUCTION and not KYC_DOCUMENT_KEYS:
    raise ImproperlyConfigured("KYC_DOCUMENT_KEYS must be set in production")
# Uploads: the largest file in bytes, the most pixels an image may have (a
# decompression bomb declares far more), the most pages a PDF may have.
KYC_DOCUMENT_MAX_BYTES = env.int("KYC_DOCUMENT_MAX_BYTES", default=10 * 1024 * 1024)
KYC_DOCUMENT_MAX_PIXELS = env.int("KYC_DOCUMENT_MAX_PIXELS", default=40_000_000)
KYC_DOCUMENT_MAX_PDF_PAGES = env.int("KYC_DOCUMENT_MAX_PDF_PAGES", default=30)
for _name in ("KYC_DOCUMENT_MAX_BYTES", "KYC_DOCUMENT_MAX_PIXELS", "KYC_DOCUMENT_MAX_PDF_PAGES"):
    if globals()[_name] <= 0:
        raise ImproperlyConfigured(f"{_name} must be a positive number")
# The review queue shows items waiting longer than this (hours) as overdue.
KYC_REVIEW_SLA_HOURS = env.int("KYC_REVIEW_SLA_HOURS", default=24)
if KYC_REVIEW_SLA_HOURS <= 0:
    raise ImproperlyConfigured("KYC_REVIEW_SLA_HOURS must be a positive number of hours")

# django-import-export: exporting needs the model's own "export" permission
# (a list of every deposit or ledger line is more than viewing one).
IMPORT_EXPORT_EXPORT_PERMISSION_CODE = "export"
# SQLite (the embedded default) cannot hold "one markup per pair, blanks
# included" (NULLS NOT DISTINCT); PostgreSQL does, and the admin form checks it.
# Nor index INCLUDE columns (the deals' covering history index): there the
# index holds its key columns only, which is enough for a development database.
SILENCED_SYSTEM_CHECKS = ["models.W047", "models.W040"]
IMPORT_EXPORT_IMPORT_PERMISSION_CODE = "import"

# --- REST API (/api/v1/) -----------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        # Token first: its 401 (with WWW-Authenticate) is what an app expects.
        "rest_framework.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "backoffice.api.exception_handler",
    "DEFAULT_PAGINATION_CLASS": None,
    "DEFAULT_THROTTLE_RATES": {"user": "600/minute"},
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Back office API",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
}

# --- Demo data ------------------------------------------------------------------
DEMO_PASSWORD = env.str("DEMO_PASSWORD", default="demo-password-2026")
OTP_ENROL_URL_NAME = "room:security"

# --- IB programme: referral links -------------------------------------------------
# The attribution cookie a partner's link sets (its lifetime is the programme
# settings' cookie_days, edited in the admin).
IB_COOKIE_NAME = env.str("IB_COOKIE_NAME", default="ref")
if not IB_COOKIE_NAME.replace("_", "").replace("-", "").isalnum() or len(IB_COOKIE_NAME) > 40:
    raise ImproperlyConfigured("IB_COOKIE_NAME must be letters, digits, - and _ (at most 40)")

# --- IB programme: CPA, revenue share, payouts ---------------------------------------
# Beat (UTC): revenue-share periods are settled once a day after midnight, then
# scheduled payouts run (daily partners every day, weekly ones on Mondays);
# pending CPAs (minimum lots within N days) are checked every this many seconds.
from celery.schedules import crontab  # noqa: E402

IB_SETTLE_HOUR = env.int("IB_SETTLE_HOUR", default=0)
IB_PAYOUTS_HOUR = env.int("IB_PAYOUTS_HOUR", default=6)
IB_CPA_CHECK_INTERVAL = env.float("IB_CPA_CHECK_INTERVAL", default=3600.0)
if not (0 <= IB_SETTLE_HOUR <= 23 and 0 <= IB_PAYOUTS_HOUR <= 23):
    raise ImproperlyConfigured("IB_SETTLE_HOUR and IB_PAYOUTS_HOUR are hours 0-23 (UTC)")
if IB_CPA_CHECK_INTERVAL <= 0:
    raise ImproperlyConfigured("IB_CPA_CHECK_INTERVAL must be a positive number of seconds")
CELERY_BEAT_SCHEDULE["ib-revshare-settle"] = {
    "task": "ib.tasks.revshare_settle",
    "schedule": crontab(minute=30, hour=IB_SETTLE_HOUR),
}
CELERY_BEAT_SCHEDULE["ib-payouts-scheduled"] = {
    "task": "ib.tasks.payouts_scheduled",
    "schedule": crontab(minute=0, hour=IB_PAYOUTS_HOUR),
}
CELERY_BEAT_SCHEDULE["ib-cpa-check"] = {
    "task": "ib.tasks.cpa_check_pending",
    "schedule": IB_CPA_CHECK_INTERVAL,
}
