"""The per-user limit on Detect runs (settings.DETECT_RATE_LIMIT)."""

from __future__ import annotations

import pytest

from mapping import ratelimit


def test_it_allows_n_runs_per_window_then_says_how_long_to_wait():
    assert [ratelimit.hit("detect", 7, "3/60") for _ in range(3)] == [0, 0, 0]
    wait = ratelimit.hit("detect", 7, "3/60")
    assert 1 <= wait <= 60
    assert ratelimit.hit("detect", 8, "3/60") == 0  # another user has their own budget


def test_it_reads_the_setting(settings):
    settings.DETECT_RATE_LIMIT = "1/30"
    assert ratelimit.hit("detect", 1) == 0
    assert ratelimit.hit("detect", 1) > 0


@pytest.mark.parametrize("rate", ["10", "ten/60", "0/60", "5/0", ""])
def test_it_refuses_a_malformed_rate(rate):
    with pytest.raises(ValueError, match="rate limit"):
        ratelimit.parse_rate(rate)
