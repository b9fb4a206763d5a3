"""One settings module; production differs only by environment (see README, Configuration)."""

from pathlib import Path

import environ
from celery.schedules import crontab

from aamail.env import StrictEnv
from aamail.secretfiles import generated_secret, private_dir, private_file, sqlite_file

BASE_DIR = Path(__file__).resolve().parent.parent

# Every setting is read here, once; NAME_FILE works for each (aamail/env.py).
env = StrictEnv()
# A local .env is read if present; real deployments set the environment instead.
environ.Env.read_env(BASE_DIR / ".env", overwrite=False)

# Generated keys, the embedded SQLite database, the broker and the Maildirs by default.
# Created 0711 and every secret in it 0600 (aamail/secretfiles.py).
VAR_DIR = Path(env.str("VAR_DIR", default="") or BASE_DIR / "var").absolute()

DEBUG = env.bool("DEBUG", default=False)


def _random_key() -> str:
    import secrets

    return secrets.token_urlsafe(50)


def _fernet_key() -> str:
    from cryptography.fernet import Fernet

    return Fernet.generate_key().decode()


# Without SECRET_KEY (or SECRET_KEY_FILE) a per-checkout key is generated under var/ so the
# embedded default starts with nothing configured; the deploy check refuses a generated key
# when DEBUG is off (aamail/checks.py): production must set it.
SECRET_KEY_GENERATED = not env.str("SECRET_KEY", default="")
SECRET_KEY = env.str("SECRET_KEY", default="") or generated_secret(
    VAR_DIR / "secret_key", _random_key
)
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "formtools",
    "django_htmx",
    "audit",  # issue 12: the audit log, below every app (each records into it)
    "domains",
    "accounts",
    "mapping",
    "mailservice",
    "ops",  # the Overview and /metrics (issue 12): reads every app, nothing reads it
    "alerts",  # issue 12: alerts read every app's state, so they sit on top
    "aamail",  # the project's own system checks (aamail/checks.py)
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
]

ROOT_URLCONF = "aamail.urls"
WSGI_APPLICATION = "aamail.wsgi.application"

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
                "accounts.access.console_context",
            ],
        },
    },
]

DATABASES = {
    "default": env.db("DATABASE_URL", default=f"sqlite:///{VAR_DIR / 'aamail.sqlite3'}"),
}
# Persistent connections (issue 13): a Celery worker's claimer and its session threads keep
# theirs (see CELERY_DB_REUSE_MAX); ?conn_max_age= in DATABASE_URL wins over CONN_MAX_AGE.
DATABASES["default"].setdefault("CONN_MAX_AGE", env.int("CONN_MAX_AGE", default=60))
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Workers and the web process share the file: wait for a lock instead of failing.
    DATABASES["default"].setdefault("OPTIONS", {})["timeout"] = 20
    # Not WAL (issue 13 asked for it): Dovecot's auth worker reads this file as another
    # user, and a WAL reader needs write access to the -shm file (docs/mail-service.md).
    _sqlite = sqlite_file(DATABASES["default"]["NAME"])
    if _sqlite is not None:
        # SQLite would create the file with the umask's 0644 (sessions, hashes, ISP
        # ciphertexts readable by every local user); its journals copy the file's mode.
        if _sqlite.parent == VAR_DIR:
            private_dir(VAR_DIR)
        if _sqlite.parent.is_dir():
            private_file(_sqlite)
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_USER_MODEL = "auth.User"
AUTHENTICATION_BACKENDS = [
    "django.contrib.auth.backends.ModelBackend",
    "accounts.backends.MailAccountBackend",
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "console-home"
LOGOUT_REDIRECT_URL = "login"

# Argon2 first: Dovecot verifies Django's argon2 hashes as stored (mail-service.md).
PASSWORD_HASHERS = [
    # Argon2id at 19 MiB: each IMAP/SMTP login verifies it in Dovecot (mail-service.md §6.13).
    "accounts.hashers.MailArgon2PasswordHasher",
    "django.contrib.auth.hashers.PBKDF2PasswordHasher",
]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = env.str("TIME_ZONE", default="UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = env.path("STATIC_ROOT", default=VAR_DIR / "static")
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"
        if not DEBUG
        else "django.contrib.staticfiles.storage.StaticFilesStorage"
    },
}
WHITENOISE_USE_FINDERS = DEBUG

# Security: all of these are on unless the environment says otherwise (check --deploy).
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=False)
SESSION_COOKIE_SECURE = env.bool("SESSION_COOKIE_SECURE", default=False)
CSRF_COOKIE_SECURE = env.bool("CSRF_COOKIE_SECURE", default=False)
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = SECURE_HSTS_SECONDS > 0
SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", default=False)
SECURE_PROXY_SSL_HEADER = (
    ("HTTP_X_FORWARDED_PROTO", "https") if env.bool("BEHIND_TLS_PROXY", default=False) else None
)
# HSTS preload is a commitment for the whole parent domain: the operator opts in with
# SECURE_HSTS_PRELOAD, so its absence is not a deployment error.
SILENCED_SYSTEM_CHECKS = ["security.W021"]
SESSION_COOKIE_HTTPONLY = True
X_FRAME_OPTIONS = "DENY"

# --- Mail storage -----------------------------------------------------------------------
MAIL_ROOT = env.path("MAIL_ROOT", default=VAR_DIR / "mail")
# Owner of Maildir files, shared with Dovecot (Debian's "mail" user is 8:8). None: keep
# the worker's own uid/gid (embedded default, tests).
MAIL_UID = env.int("MAIL_UID", default=None)
MAIL_GID = env.int("MAIL_GID", default=None)

# --- ISP password encryption ------------------------------------------------------------
# Comma-separated Fernet keys, newest first (MultiFernet): add a new key in front, run
# `manage.py rotate_isp_keys`, then drop the old one. Never derived from SECRET_KEY, so a
# SECRET_KEY rotation never loses the stored ISP passwords.
ISP_SECRET_KEYS_GENERATED = not env.list("ISP_SECRET_KEYS", default=[])
ISP_SECRET_KEYS = env.list("ISP_SECRET_KEYS", default=[]) or [
    generated_secret(VAR_DIR / "isp_secret_key", _fernet_key)
]

# --- Celery ---------------------------------------------------------------------------
# Embedded default: kombu's filesystem transport, which needs no server.
_BROKER_DIR = VAR_DIR / "broker"
CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default="filesystem://")
if CELERY_BROKER_URL.startswith("filesystem://"):
    private_dir(VAR_DIR)
    for sub in ("out", "processed", "control"):
        (_BROKER_DIR / sub).mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_BROKER_DIR / "out"),
        "data_folder_out": str(_BROKER_DIR / "out"),
        "processed_folder": str(_BROKER_DIR / "processed"),
        "control_folder": str(_BROKER_DIR / "control"),
        "store_processed": False,
    }
else:
    # Redis redelivers unacknowledged tasks after visibility_timeout; every fetch is bounded
    # far below it (FETCH_TIME_LIMIT) so a running fetch is never handed out twice by it.
    CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 3600}
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_RESULT_BACKEND = None
CELERY_TASK_IGNORE_RESULT = True
# A task whose worker dies is delivered again; the fetch is idempotent (UIDL rows).
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_ALWAYS_EAGER = env.bool("CELERY_TASK_ALWAYS_EAGER", default=False)
CELERY_TIMEZONE = TIME_ZONE
FETCH_TIME_LIMIT = env.int("FETCH_TIME_LIMIT", default=1200)
CELERY_TASK_TIME_LIMIT = FETCH_TIME_LIMIT + 60
CELERY_TASK_SOFT_TIME_LIMIT = FETCH_TIME_LIMIT
CELERY_TASK_ROUTES = {
    "mapping.tasks.binding_fetch": {"queue": "fetch"},
    "mapping.tasks.fetch_claim": {"queue": "fetch"},
}
# Issue 13: the database is the queue. Beat sends one claimer task per tick; a worker process
# running it claims due bindings itself and fetches them FETCH_SESSIONS_PER_PROCESS at a
# time for up to FETCH_CLAIMER_SECONDS (mapping/claimer.py). Busy: as many claimers as
# ticks find free worker processes; idle: one claim statement per tick.
SCHEDULER_TICK_SECONDS = env.int("SCHEDULER_TICK_SECONDS", default=5)
FETCH_SESSIONS_PER_PROCESS = env.int("FETCH_SESSIONS_PER_PROCESS", default=16)
FETCH_CLAIMER_SECONDS = env.int("FETCH_CLAIMER_SECONDS", default=60)
# The oldest due binding may wait this long past its time before the console and /metrics
# say fetching is behind schedule (add workers or sessions: README "Sizing a deployment").
FETCH_LAG_ACCEPTABLE_SECONDS = env.int("FETCH_LAG_ACCEPTABLE_SECONDS", default=120)
# Celery's Django fix-up closes the database connection around every task unless this is
# set; with it, CONN_MAX_AGE (from DATABASE_URL's ?conn_max_age= or CONN_MAX_AGE) decides.
# A new PostgreSQL connection costs the server ~4.5 ms of CPU (bench/README-scale.md).
CELERY_DB_REUSE_MAX = env.int("CELERY_DB_REUSE_MAX", default=1000)
FETCH_BACKOFF_BASE_SECONDS = env.int("FETCH_BACKOFF_BASE_SECONDS", default=60)
FETCH_BACKOFF_CAP_SECONDS = env.int("FETCH_BACKOFF_CAP_SECONDS", default=3600)
FETCH_COMMIT_THREADS = env.int("FETCH_COMMIT_THREADS", default=8)  # concurrent fsync+rename
# One tick claims the due bindings and enqueues one fetch task each (mapping.scheduler).
CELERY_BEAT_SCHEDULE = {
    "fetch-claim": {
        "task": "mapping.tasks.fetch_claim",
        "schedule": SCHEDULER_TICK_SECONDS,
        # A tick no worker took in time is dropped, not piled up behind the busy claimers.
        "options": {"expires": SCHEDULER_TICK_SECONDS},
    },
}

# --- POP3 / Detect ----------------------------------------------------------------------
POP3_TIMEOUT = env.float("POP3_TIMEOUT", default=30.0)
# A fetch's lease, renewed at every sign of progress: a dead worker's binding is free after
# this long (at once for a fetch on the same host, mapping.lease).
FETCH_LEASE_SECONDS = env.int("FETCH_LEASE_SECONDS", default=max(60, int(3 * POP3_TIMEOUT)))
# The minimum progress rule: a server that sends less than this many bytes per that many
# seconds of waiting is a trickle, and the session ends (mapping.pop3.client).
POP3_MIN_PROGRESS_BYTES = env.int("POP3_MIN_PROGRESS_BYTES", default=1024)
POP3_MIN_PROGRESS_SECONDS = env.float("POP3_MIN_PROGRESS_SECONDS", default=30.0)
# Extra CA bundle trusted for ISP servers (on top of the system store).
ISP_CA_FILE = env.str("ISP_CA_FILE", default="") or None
# Every connection to an ISP (fetch, Detect, the relay route, OAuth endpoints) goes through
# mapping.outbound. Loopback and private addresses only when this is on (an office box
# talks to a public ISP); link-local and cloud-metadata addresses are always refused.
# DETECT_ALLOW_PRIVATE / DETECT_ALLOWED_TARGETS are the old names, read for one release.
ISP_ALLOW_PRIVATE_ADDRESSES = env.bool(
    "ISP_ALLOW_PRIVATE_ADDRESSES", default=env.bool("DETECT_ALLOW_PRIVATE", default=False)
)
# Optional allow-list: "host:port" or "host:*" entries (names or addresses); empty = any
# public server. A listed server may be on a private address.
ISP_ALLOWED_TARGETS = env.list(
    "ISP_ALLOWED_TARGETS", default=env.list("DETECT_ALLOWED_TARGETS", default=[])
)
DETECT_DEADLINE_SECONDS = env.float("DETECT_DEADLINE_SECONDS", default=20.0)
DETECT_RATE_LIMIT = env.str("DETECT_RATE_LIMIT", default="10/60")  # runs per seconds, per user
FETCH_NOW_RATE_LIMIT = env.str("FETCH_NOW_RATE_LIMIT", default="30/60")  # presses, per user
# Detects in flight at once across every web process; more are answered "Detect is busy".
# Each holds a web thread for up to DETECT_DEADLINE_SECONDS: keep it below the threads.
DETECT_CONCURRENCY = env.int("DETECT_CONCURRENCY", default=3)

# --- Office mail service (Dovecot + Postfix driven by the product; docs/mail-service.md) --
MAIL_HOSTNAME = env.str("MAIL_HOSTNAME", default="localhost")
MAIL_LISTEN_ADDRESS = env.str("MAIL_LISTEN_ADDRESS", default="")
MAIL_TLS_CERT_FILE = env.str("MAIL_TLS_CERT_FILE", default="")
MAIL_TLS_KEY_FILE = env.str("MAIL_TLS_KEY_FILE", default="")
MAIL_RELAY_CA_FILE = env.str("MAIL_RELAY_CA_FILE", default="") or None
MAIL_DOVECOT_DATABASE_URL = env.str("MAIL_DOVECOT_DATABASE_URL", default="")
# {"example.com": "smtp.example.net:587"}: relay for senders of a domain with no binding.
MAIL_SMART_HOSTS = env.json("MAIL_SMART_HOSTS", default={})
# Sockets (lookup server, Dovecot's LMTP and auth) and the rendered Dovecot/Postfix files;
# every command and the web console take them from here (mailservice/layout.py).
MAIL_RUN_DIR = env.path("MAIL_RUN_DIR", default=VAR_DIR / "run")
MAIL_CONFIG_DIR = env.path("MAIL_CONFIG_DIR", default=VAR_DIR / "mail-config")
MAILMAP_SOCKET = env.str("MAILMAP_SOCKET", default="") or None
MAILMAP_ALLOWED_USERS = env.list("MAILMAP_ALLOWED_USERS", default=["postfix"])
MAILMAP_DB_WORKERS = env.int("MAILMAP_DB_WORKERS", default=8)
MAILMAP_LOOKUP_TIMEOUT = env.float("MAILMAP_LOOKUP_TIMEOUT", default=10.0)
MAILMAP_MAX_REQUEST = env.int("MAILMAP_MAX_REQUEST", default=4096)
MAILMAP_IDLE_TIMEOUT = env.float("MAILMAP_IDLE_TIMEOUT", default=300.0)
# Answer lookups from an in-memory snapshot invalidated by database change notifications
# (docs/mail-service.md); off = one database query per lookup.
MAILMAP_SNAPSHOT = env.bool("MAILMAP_SNAPSHOT", default=True)
MAIL_DOVECOT_CONFIG = env.str("MAIL_DOVECOT_CONFIG", default="")
DOVEADM_HTTP_URL = env.str("DOVEADM_HTTP_URL", default="")
DOVEADM_API_KEY = env.str("DOVEADM_API_KEY", default="")
DOVEADM_HTTP_PORT = env.int("DOVEADM_HTTP_PORT", default=8080)
MAIL_SMTP_PORT = env.int("MAIL_SMTP_PORT", default=25)
MAIL_SUBMISSION_PORT = env.int("MAIL_SUBMISSION_PORT", default=587)
MAIL_SUBMISSIONS_PORT = env.int("MAIL_SUBMISSIONS_PORT", default=465)
MAIL_IMAP_PORT = env.int("MAIL_IMAP_PORT", default=143)
MAIL_IMAPS_PORT = env.int("MAIL_IMAPS_PORT", default=993)
MAIL_POP3_PORT = env.int("MAIL_POP3_PORT", default=110)
MAIL_POP3S_PORT = env.int("MAIL_POP3S_PORT", default=995)
MAIL_DOVECOT_STATE_DIR = env.str("MAIL_DOVECOT_STATE_DIR", default="/var/lib/dovecot")
MAIL_DOVECOT_LOG = env.str("MAIL_DOVECOT_LOG", default="/dev/stderr")
MAIL_POSTFIX_QUEUE_DIR = env.str("MAIL_POSTFIX_QUEUE_DIR", default="/var/spool/postfix")
MAIL_POSTFIX_DATA_DIR = env.str("MAIL_POSTFIX_DATA_DIR", default="/var/lib/postfix")
MAIL_POSTFIX_LOG = env.str("MAIL_POSTFIX_LOG", default="/dev/stdout")
MAIL_AUTH_CACHE_TTL = env.str("MAIL_AUTH_CACHE_TTL", default="5 min")
MAIL_AUTH_WORKER_LIMIT = env.int("MAIL_AUTH_WORKER_LIMIT", default=4)
MAIL_MESSAGE_SIZE_LIMIT = env.int("MAIL_MESSAGE_SIZE_LIMIT", default=52_428_800)

# --- Web server, limits and the cache they share (accounts/throttle.py) ------------------
# Failed password checks per account name and per client address, per seconds.
LOGIN_RATE_LIMIT = env.str("LOGIN_RATE_LIMIT", default="10/300")
# Reverse proxies in front of gunicorn that append to X-Forwarded-For (0: none, the client
# address is REMOTE_ADDR). Only the entry the outermost of them wrote is believed.
TRUSTED_PROXY_COUNT = env.int("TRUSTED_PROXY_COUNT", default=0)
# gunicorn reads these through aamail/webserver.py: worker processes, and threads in each
# (gthread), so a Detect waiting on a slow ISP holds one thread, not the console.
WEB_CONCURRENCY = env.int("WEB_CONCURRENCY", default=1)
WEB_THREADS = env.int("WEB_THREADS", default=8)

# --- OAuth2 sign-in for ISP mailboxes (Microsoft 365, Google, generic; docs/oauth2.md) -----
# The console's public base URL; the redirect URI registered with each provider is exactly
# <base>/oauth/callback/<provider>/ (never derived from the request's Host header).
OAUTH_REDIRECT_BASE_URL = env.str("OAUTH_REDIRECT_BASE_URL", default="")
OAUTH_MICROSOFT_CLIENT_ID = env.str("OAUTH_MICROSOFT_CLIENT_ID", default="")
OAUTH_MICROSOFT_CLIENT_SECRET = env.str("OAUTH_MICROSOFT_CLIENT_SECRET", default="")
# "common", "organizations", "consumers" or the directory (tenant) id of the office.
OAUTH_MICROSOFT_TENANT = env.str("OAUTH_MICROSOFT_TENANT", default="organizations")
OAUTH_MICROSOFT_AUTHORITY = env.str(
    "OAUTH_MICROSOFT_AUTHORITY", default="https://login.microsoftonline.com"
)
OAUTH_GOOGLE_CLIENT_ID = env.str("OAUTH_GOOGLE_CLIENT_ID", default="")
OAUTH_GOOGLE_CLIENT_SECRET = env.str("OAUTH_GOOGLE_CLIENT_SECRET", default="")
OAUTH_GOOGLE_AUTHORIZE_URL = env.str(
    "OAUTH_GOOGLE_AUTHORIZE_URL", default="https://accounts.google.com/o/oauth2/v2/auth"
)
OAUTH_GOOGLE_TOKEN_URL = env.str(
    "OAUTH_GOOGLE_TOKEN_URL", default="https://oauth2.googleapis.com/token"
)
OAUTH_GOOGLE_REVOKE_URL = env.str(
    "OAUTH_GOOGLE_REVOKE_URL", default="https://oauth2.googleapis.com/revoke"
)
# Another ISP speaking OAUTHBEARER (RFC 7628): its endpoints, scopes and client.
OAUTH_GENERIC_LABEL = env.str("OAUTH_GENERIC_LABEL", default="")
OAUTH_GENERIC_CLIENT_ID = env.str("OAUTH_GENERIC_CLIENT_ID", default="")
OAUTH_GENERIC_CLIENT_SECRET = env.str("OAUTH_GENERIC_CLIENT_SECRET", default="")
OAUTH_GENERIC_AUTHORIZE_URL = env.str("OAUTH_GENERIC_AUTHORIZE_URL", default="")
OAUTH_GENERIC_TOKEN_URL = env.str("OAUTH_GENERIC_TOKEN_URL", default="")
OAUTH_GENERIC_DEVICE_URL = env.str("OAUTH_GENERIC_DEVICE_URL", default="")
OAUTH_GENERIC_REVOKE_URL = env.str("OAUTH_GENERIC_REVOKE_URL", default="")
OAUTH_GENERIC_SCOPES = env.list("OAUTH_GENERIC_SCOPES", default=[])
OAUTH_GENERIC_MECHANISM = env.str("OAUTH_GENERIC_MECHANISM", default="OAUTHBEARER")
OAUTH_HTTP_TIMEOUT = env.float("OAUTH_HTTP_TIMEOUT", default=10.0)  # per token request
OAUTH_SIGN_IN_SECONDS = env.int("OAUTH_SIGN_IN_SECONDS", default=600)  # state/PKCE lifetime

# --- Operations: Overview, poison-message quarantine, retention, metrics (issue 12) --------
# A message whose RETR is refused, or whose download breaks at the same place, this many runs
# in a row is set aside (mapping/quarantine.py): not retried every run, never deleted at
# the ISP, listed with "retry", "download as .eml" and "forget".
QUARANTINE_AFTER_FAILURES = env.int("QUARANTINE_AFTER_FAILURES", default=3)
# The bytes of a message that was read but could not be delivered are kept (in the
# database, readable through the console by that domain's administrators) up to this size.
QUARANTINE_KEEP_BYTES = env.int("QUARANTINE_KEEP_BYTES", default=MAIL_MESSAGE_SIZE_LIMIT)
# Fetch history (one FetchRun row per run) older than this is pruned by beat in batches;
# the daily totals behind the Overview's chart are kept longer.
FETCH_HISTORY_DAYS = env.int("FETCH_HISTORY_DAYS", default=30)
FETCH_DAILY_DAYS = env.int("FETCH_DAILY_DAYS", default=400)
FETCH_PRUNE_BATCH = env.int("FETCH_PRUNE_BATCH", default=5000)  # rows per DELETE
FETCH_PRUNE_MAX_BATCHES = env.int("FETCH_PRUNE_MAX_BATCHES", default=50)  # per beat run
CELERY_BEAT_SCHEDULE["fetch-history-prune"] = {
    "task": "mapping.tasks.fetch_history_prune",
    "schedule": env.int("FETCH_PRUNE_EVERY_SECONDS", default=600),
}
# /metrics (Prometheus text format) answers only with "Authorization: Bearer <token>";
# unset, /metrics does not exist (404).
METRICS_TOKEN = env.str("METRICS_TOKEN", default="")
# Where each process (web, every Celery worker process) keeps its fetch counters for
# /metrics to add up (prometheus_client's multiprocess mode): shared by web and workers.
METRICS_DIR = env.path("METRICS_DIR", default=VAR_DIR / "metrics")

# --- Issue 15: outgoing mail of senders who sign in (Postfix pipe transport isp_oauth) -------
# The unprivileged user Postfix runs the submitter as: the only user, besides root, the token
# socket answers (create it: adduser --system --group --no-create-home aamail-relay).
MAIL_OAUTH_RELAY_USER = env.str("MAIL_OAUTH_RELAY_USER", default="aamail-relay")
# The interpreter pipe(8) runs the standard-library submitter with: readable by that user,
# outside any private home (oauth2.md §4 snag 7).
MAIL_OAUTH_SUBMIT_PYTHON = env.str("MAIL_OAUTH_SUBMIT_PYTHON", default="/usr/bin/python3")
# Where the lookup server hands out access tokens; default MAIL_RUN_DIR/oauth-token/token.sock.
MAIL_OAUTH_TOKEN_SOCKET = env.str("MAIL_OAUTH_TOKEN_SOCKET", default="") or None

# Rate limits and Detect's places live here: one process (the embedded default) may keep
# them in memory; more than one needs a cache they share, e.g. redis://127.0.0.1:6379/1
# (the deploy check refuses anything else).
CACHES = {
    "default": env.cache("CACHE_URL", default="locmemcache://"),
}
# Several installations may share one Redis: give each its own prefix.
CACHES["default"]["KEY_PREFIX"] = env.str("CACHE_KEY_PREFIX", default="aamail")

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
}

# --- Operations: outgoing mail visible, alerts, audit log (issue 12) ----------------------
# How often `manage.py relaywatch` (and the relay watch inside `mailserver`) reads Postfix's
# queue and bounce notices (mailservice/relaywatch.py).
RELAY_WATCH_SECONDS = env.int("RELAY_WATCH_SECONDS", default=60)
# Audit log events older than this are deleted by a daily beat task (audit.tasks).
AUDIT_RETENTION_DAYS = env.int("AUDIT_RETENTION_DAYS", default=365)
CELERY_BEAT_SCHEDULE["audit-prune"] = {"task": "audit.tasks.audit_prune", "schedule": 86400}
# Every time on a page is shown in TIME_ZONE with the zone named ("2026-11-25 14:03 CET"):
# aamail/formats/ replaces the locale's formats, which carry no zone.
FORMAT_MODULE_PATH = ["aamail.formats"]
# Alerts (alerts/): a beat task compares failing bindings with what was told, every
# ALERT_SCAN_SECONDS; a daily digest at ALERT_DIGEST_HOUR (TIME_ZONE) lists what stays
# broken. E-mails go out through Django's EMAIL_* settings; each alert and its webhook POST
# are retried ALERT_RETRIES times with backoff. CONSOLE_URL (e.g. https://mail.example.com)
# puts a link to the POP3 remote tab into each e-mail.
ALERT_SCAN_SECONDS = env.int("ALERT_SCAN_SECONDS", default=60)
ALERT_DIGEST_HOUR = env.int("ALERT_DIGEST_HOUR", default=8)
ALERT_RETRIES = env.int("ALERT_RETRIES", default=8)
ALERT_WEBHOOK_TIMEOUT = env.float("ALERT_WEBHOOK_TIMEOUT", default=10.0)
ALERT_FROM_EMAIL = env.str("ALERT_FROM_EMAIL", default=f"AAMail <aamail@{MAIL_HOSTNAME}>")
CONSOLE_URL = env.str("CONSOLE_URL", default="")
EMAIL_HOST = env.str("EMAIL_HOST", default="localhost")
EMAIL_PORT = env.int("EMAIL_PORT", default=25)
EMAIL_HOST_USER = env.str("EMAIL_HOST_USER", default="")
EMAIL_HOST_PASSWORD = env.str("EMAIL_HOST_PASSWORD", default="")
EMAIL_USE_TLS = env.bool("EMAIL_USE_TLS", default=False)
EMAIL_USE_SSL = env.bool("EMAIL_USE_SSL", default=False)
EMAIL_TIMEOUT = env.int("EMAIL_TIMEOUT", default=30)
CELERY_BEAT_SCHEDULE["alerts-scan"] = {
    "task": "alerts.tasks.alerts_scan",
    "schedule": ALERT_SCAN_SECONDS,
}
CELERY_BEAT_SCHEDULE["alerts-digest"] = {
    "task": "alerts.tasks.alerts_digest",
    "schedule": crontab(hour=ALERT_DIGEST_HOUR, minute=0),
}
