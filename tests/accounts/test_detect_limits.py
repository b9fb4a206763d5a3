"""Detect's limits on the product's one limiter: runs per user, and places across processes."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from django.test import RequestFactory

from accounts import throttle
from tests.windows import fresh_window

ROOT = Path(__file__).resolve().parents[2]
REDIS = "redis://127.0.0.1:6379/1"


def _request(user_pk: int):
    request = RequestFactory().post("/detect/")
    request.user = type("User", (), {"pk": user_pk})()
    return request


def test_it_allows_n_detects_per_user_per_window_then_says_how_long_to_wait(settings):
    settings.DETECT_RATE_LIMIT = "3/60"
    fresh_window("3/60")
    assert [throttle.detect_hit(_request(7)) for _ in range(3)] == [0, 0, 0]
    assert 1 <= throttle.detect_hit(_request(7)) <= 60
    assert throttle.detect_hit(_request(8)) == 0  # another user has their own budget


@pytest.mark.parametrize("rate", ["10", "ten/60", "0/60", "5/0", ""])
def test_it_refuses_a_malformed_rate_in_words(rate):
    with pytest.raises(ValueError, match="rate limit"):
        throttle.parse_rate(rate)


def test_it_answers_busy_beyond_detect_concurrency(settings):
    settings.DETECT_CONCURRENCY = 2
    with throttle.detect_place() as first, throttle.detect_place() as second:
        assert first
        assert second
        with throttle.detect_place() as third:
            assert not third
    with throttle.detect_place() as again:
        assert again  # places are given back when a run ends


@pytest.fixture
def shared_cache(settings):
    """The default cache on the machine's Redis, under a prefix of this test's own."""
    prefix = f"aamail-test-{uuid.uuid4().hex}"
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS,
            "KEY_PREFIX": prefix,
        }
    }
    return prefix


def _place_in_another_process(prefix: str) -> str:
    code = (
        "import django; django.setup()\n"
        "from accounts import throttle\n"
        "with throttle.detect_place() as got: print('got' if got else throttle.DETECT_BUSY)\n"
    )
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "aamail.settings",
        "CACHE_URL": REDIS,
        "CACHE_KEY_PREFIX": prefix,
        "DETECT_CONCURRENCY": "2",
    }
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
        timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_it_counts_the_places_of_every_process_in_the_shared_cache(settings, shared_cache):
    settings.DETECT_CONCURRENCY = 2
    with throttle.detect_place() as first, throttle.detect_place() as second:
        assert first
        assert second
        assert _place_in_another_process(shared_cache) == "Detect is busy, try again in a moment."
    assert _place_in_another_process(shared_cache) == "got"
