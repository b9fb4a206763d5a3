"""Project-wide system checks: limits that parse, a cache the web workers share, private files.

`manage.py check --deploy` runs the deploy-tagged ones; scripts/run.sh and compose run
`migrate`, which runs the others.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from django.conf import settings
from django.core import checks

from accounts import throttle

from .secretfiles import readable_by_others, sqlite_file

if TYPE_CHECKING:
    from django.apps import AppConfig

_PER_PROCESS = {
    "django.core.cache.backends.locmem.LocMemCache": "keeps its counters inside each process",
    "django.core.cache.backends.dummy.DummyCache": "stores nothing",
}
_NOT_ATOMIC = {
    "django.core.cache.backends.filebased.FileBasedCache",
    "django.core.cache.backends.db.DatabaseCache",
}


@checks.register(checks.Tags.security)
def check_limits(
    app_configs: Sequence[AppConfig] | None, **kwargs: object
) -> list[checks.CheckMessage]:
    """The rate limits parse and the counts are positive."""
    errors: list[checks.CheckMessage] = []
    for name in ("LOGIN_RATE_LIMIT", "DETECT_RATE_LIMIT", "FETCH_NOW_RATE_LIMIT"):
        try:
            throttle.parse_rate(getattr(settings, name))
        except ValueError as exc:
            errors.append(checks.Error(f"{name}: {exc}", id="aamail.E001"))
    for name, least in (
        ("TRUSTED_PROXY_COUNT", 0),
        ("DETECT_CONCURRENCY", 1),
        ("WEB_CONCURRENCY", 1),
        ("WEB_THREADS", 1),
        # Issue 13: a claimer needs a session; an acceptable lag of 0 would cry wolf at
        # every tick, and a tick (SCHEDULER_TICK_SECONDS) is the least any binding waits.
        ("FETCH_SESSIONS_PER_PROCESS", 1),
        ("FETCH_CLAIMER_SECONDS", 1),
        ("SCHEDULER_TICK_SECONDS", 1),
        ("FETCH_LAG_ACCEPTABLE_SECONDS", 1),
    ):
        if getattr(settings, name) < least:
            errors.append(checks.Error(f"{name} must be at least {least}.", id="aamail.E002"))
    if settings.FETCH_LAG_ACCEPTABLE_SECONDS < settings.SCHEDULER_TICK_SECONDS:
        errors.append(
            checks.Error(
                "FETCH_LAG_ACCEPTABLE_SECONDS must be at least SCHEDULER_TICK_SECONDS: a binding "
                "can wait one tick before a claimer looks for it.",
                id="aamail.E003",
            )
        )
    return errors


@checks.register(checks.Tags.caches, deploy=True)
def check_shared_cache(
    app_configs: Sequence[AppConfig] | None, **kwargs: object
) -> list[checks.CheckMessage]:
    """Login throttling and Detect's limits count in a cache every web worker sees."""
    backend = settings.CACHES["default"]["BACKEND"]
    workers = settings.WEB_CONCURRENCY
    problems: list[checks.CheckMessage] = []
    fix = "Set CACHE_URL=redis://<host>:6379/1 (compose does), or WEB_CONCURRENCY=1."
    if backend.endswith("DummyCache"):
        problems.append(
            checks.Error(
                "CACHE_URL is a dummy cache: login throttling and Detect's rate limit would "
                "count nothing.",
                hint=fix,
                id="aamail.E010",
            )
        )
    elif backend in _PER_PROCESS and workers > 1:
        limit = throttle.parse_rate(settings.LOGIN_RATE_LIMIT)[0]
        problems.append(
            checks.Error(
                f"CACHE_URL {_PER_PROCESS[backend]}, and WEB_CONCURRENCY={workers} web "
                f"processes would each allow the whole budget: {workers * limit} password "
                f"guesses instead of {limit}, {workers}x the Detect runs.",
                hint=fix,
                id="aamail.E011",
            )
        )
    elif backend in _NOT_ATOMIC and workers > 1:
        problems.append(
            checks.Warning(
                f"CACHE_URL ({backend.rsplit('.', 1)[-1]}) cannot count atomically: "
                "concurrent requests may slip past the login throttle.",
                hint=fix,
                id="aamail.W011",
            )
        )
    threads = workers * settings.WEB_THREADS
    if threads <= settings.DETECT_CONCURRENCY:
        problems.append(
            checks.Warning(
                f"DETECT_CONCURRENCY={settings.DETECT_CONCURRENCY} Detects may hold all "
                f"{threads} web threads (WEB_CONCURRENCY x WEB_THREADS) for up to "
                f"{settings.DETECT_DEADLINE_SECONDS:g} s, and the console stalls meanwhile.",
                hint="Lower DETECT_CONCURRENCY or raise WEB_THREADS.",
                id="aamail.W012",
            )
        )
    return problems


def secret_files() -> list[Path]:
    """Every file of this installation that holds a secret, whether it exists or not."""
    var = Path(settings.VAR_DIR)
    files = [
        var / "secret_key",
        var / "isp_secret_key",
        var / "initial-admin-password",
        Path(settings.BASE_DIR) / ".env",
    ]
    database = settings.DATABASES["default"]
    if database["ENGINE"].endswith("sqlite3"):
        path = sqlite_file(database["NAME"])
        if path is not None:
            files += [path, *(Path(f"{path}{end}") for end in ("-journal", "-wal", "-shm"))]
    if getattr(settings, "MAIL_TLS_KEY_FILE", ""):
        files.append(Path(settings.MAIL_TLS_KEY_FILE))
    return files


@checks.register(checks.Tags.security, deploy=True)
def check_secret_files(
    app_configs: Sequence[AppConfig] | None, **kwargs: object
) -> list[checks.CheckMessage]:
    """No file with a secret (nor var/) is readable by every user of the machine."""
    warnings: list[checks.CheckMessage] = []
    for path in secret_files():
        mode = readable_by_others(path)
        if mode is not None:
            warnings.append(
                checks.Warning(
                    f"{path} holds secrets and every user of this machine may read it "
                    f"(mode {mode:04o}).",
                    hint=f"chmod 600 {path} (640 where a group such as Dovecot's must read it).",
                    id="aamail.W020",
                )
            )
    var = Path(settings.VAR_DIR)
    mode = readable_by_others(var)
    if mode is not None:
        warnings.append(
            checks.Warning(
                f"{var} may be listed by every user of this machine (mode {mode:04o}).",
                hint=f"chmod 711 {var}",
                id="aamail.W021",
            )
        )
    return warnings


@checks.register(checks.Tags.security, deploy=True)
def check_generated_secrets(
    app_configs: Sequence[AppConfig] | None, **kwargs: object
) -> list[checks.CheckMessage]:
    """A deployment sets its own keys: a key generated under var/ lives and dies with it."""
    if settings.DEBUG:
        return []
    problems = []
    if settings.SECRET_KEY_GENERATED:
        problems.append(
            checks.Error(
                "SECRET_KEY is not set: the key in use was generated into var/secret_key.",
                hint="Set SECRET_KEY, or SECRET_KEY_FILE naming a file that holds it.",
                id="aamail.E030",
            )
        )
    if settings.ISP_SECRET_KEYS_GENERATED:
        problems.append(
            checks.Error(
                "ISP_SECRET_KEYS is not set: the ISP passwords are encrypted with a key "
                "generated into var/isp_secret_key, lost with that directory.",
                hint="Set ISP_SECRET_KEYS (or ISP_SECRET_KEYS_FILE); "
                "`manage.py rotate_isp_keys --generate` prints a new key.",
                id="aamail.E031",
            )
        )
    return problems
