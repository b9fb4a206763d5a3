"""Fixed-window rate limits in tests (accounts/throttle.py)."""

from __future__ import annotations

import time

from accounts import throttle


def fresh_window(rate: str, need: float = 10.0) -> None:
    """Wait, if needed, until the current window of `rate` has `need` seconds left.

    Windows end at multiples of their length; a test that counts up to a limit and
    crosses one starts again from zero and sees no refusal (it happened once in CI).
    """
    _, seconds = throttle.parse_rate(rate)
    _, left = throttle._window(seconds)  # the limiter's own windows
    if left < need:
        time.sleep(left + 0.05)
