"""A small per-user rate limit on Django's cache, for Detect (settings.DETECT_RATE_LIMIT).

Fixed windows: at most N runs per user in each window of S seconds ("N/S"). Each Detect
makes the server open connections to a host the user picked, so a console user must not be
able to turn it into a port scanner or a password-guessing loop against an ISP.
"""

from __future__ import annotations

import time

from django.conf import settings
from django.core.cache import cache


def parse_rate(rate: str) -> tuple[int, int]:
    """ "10/60" -> (10, 60); raise ValueError in words for anything else."""
    count, sep, seconds = rate.partition("/")
    if not sep or not count.strip().isdigit() or not seconds.strip().isdigit():
        raise ValueError(f"A rate limit must look like 10/60 (runs/seconds), not {rate!r}.")
    count_n, seconds_n = int(count), int(seconds)
    if count_n < 1 or seconds_n < 1:
        raise ValueError(f"A rate limit needs at least 1 run per at least 1 second: {rate!r}.")
    return count_n, seconds_n


def hit(scope: str, key: str | int, rate: str | None = None) -> int:
    """Count one run of `scope` for `key`; return 0 if allowed, else seconds to wait."""
    limit, window = parse_rate(rate or settings.DETECT_RATE_LIMIT)
    now = int(time.time())
    window_start = now - now % window
    cache_key = f"ratelimit:{scope}:{key}:{window_start}"
    # add() only creates the counter; incr() is atomic on memcached/redis and under
    # locmem's lock, so two concurrent requests cannot both see a free slot.
    cache.add(cache_key, 0, timeout=window + 1)
    try:
        count = cache.incr(cache_key)
    except ValueError:  # expired between add() and incr()
        cache.add(cache_key, 1, timeout=window + 1)
        count = 1
    if count > limit:
        return max(1, window_start + window - now)
    return 0
