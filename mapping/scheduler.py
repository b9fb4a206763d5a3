"""How long a failing binding waits before its next try (backoff).

Due-ness lives in the database (design.md, "Scheduling"): a binding is due when its
schedule's ``next_fetch_at`` has passed (empty while disabled or waiting for an edit or a
sign-in; a new binding's is its creation) and no fetch holds its lease. Workers claim due
bindings themselves (``mapping.claim``, issue 13); the fetch sets the next time when it
ends (``mapping.status``), with the backoff below after a failure.
"""

from __future__ import annotations

import random

from django.conf import settings


def backoff_seconds(failures: int, interval_minutes: int) -> float:
    """Delay before retry number `failures` (1-based): doubling from a minute, capped, jittered."""
    base = float(settings.FETCH_BACKOFF_BASE_SECONDS)
    cap = max(float(settings.FETCH_BACKOFF_CAP_SECONDS), interval_minutes * 60)
    delay = min(cap, base * 2 ** min(max(failures, 1) - 1, 30))
    # +-10 % so the bindings of one ISP that failed together do not retry together.
    return delay * random.uniform(0.9, 1.1)
