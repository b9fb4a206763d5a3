"""The product's one limiter: counters and places in the shared cache (CACHES["default"]).

Everything that must not be tried too often or too many times at once goes through here:

- password guesses (console login, Django admin login, the current-password check on /me/),
  counted per account name and per client address (settings.LOGIN_RATE_LIMIT);
- Detect runs per console user (settings.DETECT_RATE_LIMIT), and how many Detects may be in
  flight at once across every web process (settings.DETECT_CONCURRENCY);
- Fetch now presses per console user (settings.FETCH_NOW_RATE_LIMIT): each one opens a
  connection to an ISP, so the button must not become a way to knock on servers.

Counters are fixed windows ("N/S": at most N in each window of S seconds) built on
cache.add() + cache.incr(), which are atomic on Redis and under LocMemCache's lock. They hold
only while every web process sees the same cache: the deploy check (aamail/checks.py)
refuses a per-process cache when more than one web worker is configured.

The client address is REMOTE_ADDR, or, behind TRUSTED_PROXY_COUNT reverse proxies, the
address the outermost trusted proxy saw (X-Forwarded-For counted from the right): entries
further left are whatever the client wrote, so trusting them would let a stranger spend
anyone's budget, or lock every colleague out through the shared proxy address.
"""

from __future__ import annotations

import contextlib
import hashlib
import ipaddress
import secrets
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass

from django.conf import settings
from django.core.cache import caches
from django.core.cache.backends.base import BaseCache
from django.http import HttpRequest

DETECT_BUSY = "Detect is busy, try again in a moment."


def parse_rate(rate: str) -> tuple[int, int]:
    """ "10/60" -> (10, 60); raise ValueError in words for anything else."""
    count, sep, seconds = (rate or "").partition("/")
    if not sep or not count.strip().isdigit() or not seconds.strip().isdigit():
        raise ValueError(f"A rate limit must look like 10/60 (times/seconds), not {rate!r}.")
    count_n, seconds_n = int(count), int(seconds)
    if count_n < 1 or seconds_n < 1:
        raise ValueError(f"A rate limit needs at least 1 time per at least 1 second: {rate!r}.")
    return count_n, seconds_n


def wait_in_words(seconds: int) -> str:
    """ "45 seconds", "1 minute", "5 minutes": how long a refused person waits."""
    if seconds < 60:
        return f"{seconds} second{'s' if seconds != 1 else ''}"
    minutes = -(-seconds // 60)
    return f"{minutes} minute{'s' if minutes != 1 else ''}"


# --- the client's address ------------------------------------------------------------------


def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    text = text.strip()
    if text.startswith("[") and "]" in text:  # "[2001:db8::1]:4711"
        text = text[1 : text.index("]")]
    elif text.count(":") == 1:  # "192.0.2.1:4711"
        text = text.partition(":")[0]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        return address.ipv4_mapped
    return address


def client_address(request: HttpRequest | None) -> str:
    """The client's IP address, read as settings.TRUSTED_PROXY_COUNT says; "" if unknown."""
    if request is None:
        return ""
    hops = settings.TRUSTED_PROXY_COUNT
    if hops > 0:
        header = request.META.get("HTTP_X_FORWARDED_FOR", "")
        forwarded = [part for part in header.split(",") if part.strip()]
        # Fewer entries than trusted proxies: the request did not pass through all of them,
        # so nothing in the header was written by a proxy we trust.
        if len(forwarded) >= hops:
            address = _ip(forwarded[-hops])
            if address is not None:
                return str(address)
    address = _ip(request.META.get("REMOTE_ADDR", ""))
    return str(address) if address is not None else ""


def _address_bucket(address: str) -> str:
    # One IPv6 customer usually holds a whole /64: count the /64, or a new address per
    # guess would never be throttled.
    parsed = _ip(address)
    if isinstance(parsed, ipaddress.IPv6Address):
        return str(ipaddress.ip_network(f"{parsed}/64", strict=False))
    return address or "unknown"


# --- fixed-window counters ----------------------------------------------------------------


def _cache() -> BaseCache:
    return caches["default"]


def _window(seconds: int) -> tuple[int, int]:
    """(start of the current window, seconds until it ends)."""
    now = int(time.time())
    start = now - now % seconds
    return start, start + seconds - now


def _counter(scope: str, key: str, start: int) -> str:
    # Hashed: keys hold user input (names, addresses) that no cache key may contain as such.
    digest = hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()[:32]
    return f"throttle:{scope}:{digest}:{start}"


def _incr(cache_key: str, timeout: int) -> int:
    cache = _cache()
    cache.add(cache_key, 0, timeout)
    try:
        return cache.incr(cache_key)
    except ValueError:  # expired between add() and incr()
        if cache.add(cache_key, 1, timeout):
            return 1
        return cache.incr(cache_key)


def hit(scope: str, key: str, rate: str) -> int:
    """Count one event of `scope` for `key`; 0 when within `rate`, else seconds to wait."""
    limit, seconds = parse_rate(rate)
    start, left = _window(seconds)
    count = _incr(_counter(scope, key, start), seconds + 1)
    return left if count > limit else 0


@dataclass
class PasswordAttempt:
    """One counted password guess; `wait` > 0 means it was refused before any check."""

    wait: int
    counters: tuple[str, ...]

    def forget(self) -> None:
        """Take the guess back: it was right, or it was never checked."""
        cache = _cache()
        for cache_key in self.counters:
            # ValueError: the window ended meanwhile, nothing left to take back.
            with contextlib.suppress(ValueError):
                cache.decr(cache_key)


def password_attempt(request: HttpRequest | None, *, name: str) -> PasswordAttempt:
    """Count a password guess for account `name` and for the client's address."""
    limit, seconds = parse_rate(settings.LOGIN_RATE_LIMIT)
    start, left = _window(seconds)
    # Counted before the check, and given back when the password was right: guesses sent
    # in parallel cannot all slip in before the first failure is recorded.
    counters = (
        _counter("password-name", (name or "").strip().lower()[:254], start),
        _counter("password-address", _address_bucket(client_address(request)), start),
    )
    counts = [_incr(cache_key, seconds + 1) for cache_key in counters]
    attempt = PasswordAttempt(wait=0, counters=counters)
    if any(count > limit for count in counts):
        # A refused guess counts nowhere: an address over its budget must not keep spending
        # the budget of the names it tries.
        attempt.forget()
        attempt.wait = left
    return attempt


# --- Detect -------------------------------------------------------------------------------


def detect_hit(request: HttpRequest) -> int:
    """Count one Detect run for the console user; 0 when allowed, else seconds to wait."""
    return hit("detect", str(request.user.pk), settings.DETECT_RATE_LIMIT)


def fetch_now_hit(request: HttpRequest) -> int:
    """Count one Fetch now press for the console user; 0 when allowed, else seconds to wait."""
    return hit("fetch-now", str(request.user.pk), settings.FETCH_NOW_RATE_LIMIT)


@contextmanager
def places(scope: str, *, count: int, hold_seconds: int) -> Iterator[bool]:
    """Hold one of `count` places of `scope` across every process; yields False when full.

    A place not given back (a killed process) frees itself after `hold_seconds`, which must
    exceed the longest run it guards.
    """
    cache = _cache()
    token = secrets.token_hex(8)
    held = None
    for number in range(count):
        cache_key = f"throttle:{scope}:place:{number}"
        if cache.add(cache_key, token, hold_seconds):
            held = cache_key
            break
    try:
        yield held is not None
    finally:
        if held is not None and cache.get(held) == token:
            cache.delete(held)


def detect_place() -> AbstractContextManager[bool]:
    """One of DETECT_CONCURRENCY places for a Detect run; yields False: answer DETECT_BUSY."""
    return places(
        "detect",
        count=settings.DETECT_CONCURRENCY,
        # Detect ends by its deadline; the margin covers a slow start and the report.
        hold_seconds=int(settings.DETECT_DEADLINE_SECONDS) + 30,
    )
