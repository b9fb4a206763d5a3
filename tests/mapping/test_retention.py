"""Fetch history is pruned in bounded batches; daily totals are written only when a run
records something, and kept longer for the Overview's chart."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.conf import settings
from django.utils import timezone

from mapping import daily, retention, tasks
from mapping.models import Binding, FetchDay, FetchOutcome, FetchRun
from tests.factories import BindingFactory

pytestmark = pytest.mark.django_db


def runs(binding: Binding, ages_days: list[float]) -> None:
    now = timezone.now()
    FetchRun.objects.bulk_create(
        FetchRun(
            binding=binding,
            started_at=now - timedelta(days=age),
            finished_at=now - timedelta(days=age),
            outcome=FetchOutcome.OK,
        )
        for age in ages_days
    )


def test_it_prunes_fetch_history_older_than_the_setting_in_bounded_batches(settings):
    settings.FETCH_HISTORY_DAYS = 30
    settings.FETCH_PRUNE_BATCH = 7
    settings.FETCH_PRUNE_MAX_BATCHES = 3
    binding = BindingFactory()
    runs(binding, [31 + i / 10 for i in range(30)] + [29.9, 1, 0])

    first = retention.fetch_history_prune()
    assert (first.runs, first.more) == (21, True)  # 3 batches of 7, then it stops
    second = retention.fetch_history_prune()
    assert (second.runs, second.more) == (9, False)
    kept = sorted(round(r) for r in _ages(binding))
    assert kept == [0, 1, 30]


def _ages(binding: Binding) -> list[float]:
    now = timezone.now()
    return [(now - r.started_at).total_seconds() / 86400 for r in binding.fetch_runs.all()]


def test_it_keeps_daily_totals_for_their_own_time(settings):
    settings.FETCH_DAILY_DAYS = 400
    binding = BindingFactory()
    today = timezone.localdate()
    for age in (0, 45, 399, 401):
        FetchDay.objects.create(binding=binding, day=today - timedelta(days=age), messages=1)
    retention.fetch_history_prune()
    ages = sorted((today - d).days for d in binding.days.values_list("day", flat=True))
    assert ages == [0, 45, 399]


def test_it_prunes_from_a_beat_task():
    assert settings.CELERY_BEAT_SCHEDULE["fetch-history-prune"]["task"] == (
        "mapping.tasks.fetch_history_prune"
    )
    binding = BindingFactory()
    runs(binding, [settings.FETCH_HISTORY_DAYS + 1, 0])
    assert tasks.fetch_history_prune.delay().get() == 1
    assert binding.fetch_runs.count() == 1


def _run(binding: Binding, outcome: str, messages: int = 0, size: int = 0) -> FetchRun:
    now = timezone.now()
    return FetchRun(
        binding=binding,
        started_at=now,
        finished_at=now,
        outcome=outcome,
        messages=messages,
        bytes=size,
    )


def test_it_adds_runs_that_stored_mail_or_failed_to_the_days_totals():
    binding = BindingFactory()
    daily.fetch_day_add(_run(binding, FetchOutcome.OK))  # an empty poll: nothing
    assert not FetchDay.objects.exists()
    daily.fetch_day_add(_run(binding, FetchOutcome.OK, 3, 300))
    daily.fetch_day_add(_run(binding, FetchOutcome.ERROR, 1, 50))
    daily.fetch_day_add(_run(binding, FetchOutcome.AUTH_FAILED))
    day = FetchDay.objects.get()
    assert (day.day, day.runs, day.failures, day.messages, day.bytes) == (
        timezone.localdate(),
        3,
        2,
        4,
        350,
    )


def test_it_writes_no_total_for_a_binding_deleted_meanwhile():
    binding = BindingFactory()
    run = _run(binding, FetchOutcome.ERROR)
    binding.delete()
    daily.fetch_day_add(run)
    assert not FetchDay.objects.exists()
