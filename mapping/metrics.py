"""The fetch's Prometheus counters, kept per process in METRICS_DIR for /metrics to add up.

Why multiprocess files and not the database: a fetch ends in a web-less Celery worker
process, often several per machine, and an empty poll must cost the database no statement
for the sake of a counter. prometheus_client's multiprocess mode has each process write its
counters into its own memory-mapped file in a shared directory; ``ops.metrics`` adds them up
at scrape time. What the database already knows (bindings by state, backlog, quarantine,
relay) is read from it at scrape time instead, so it is right whichever process answers.

The files are named by host and process id (not the process id alone): containers of one
compose project share the directory and may reuse each other's process ids.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from django.conf import settings
from prometheus_client import Counter, Histogram, values

# Seconds; a fetch is bounded by FETCH_TIME_LIMIT (1200 s by default).
DURATION_BUCKETS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1200)


@dataclass(frozen=True)
class _FetchMetrics:
    runs: Counter
    messages: Counter
    bytes: Counter
    duration: Histogram


def _process_identifier() -> str:
    host = (socket.gethostname() or "localhost").replace("_", "-").replace("/", "-")
    return f"{host}-{os.getpid()}"  # called again after a fork: a worker child gets its own


@cache
def _metrics() -> _FetchMetrics:
    directory = Path(settings.METRICS_DIR)
    directory.mkdir(parents=True, exist_ok=True)
    # prometheus_client reads the directory from the environment when a value is created,
    # and chooses how values are stored globally: both are set before the first metric.
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(directory)
    values.ValueClass = values.MultiProcessValue(process_identifier=_process_identifier)
    return _FetchMetrics(
        runs=Counter(
            "aamail_fetches",
            "Fetch runs by outcome (ok, error, auth_failed, skipped).",
            ["outcome"],
            registry=None,
        ),
        messages=Counter("aamail_fetched_messages", "Messages stored by fetches.", registry=None),
        bytes=Counter("aamail_fetched_bytes", "Bytes stored by fetches.", registry=None),
        duration=Histogram(
            "aamail_fetch_duration_seconds",
            "How long fetch runs took.",
            buckets=DURATION_BUCKETS,
            registry=None,
        ),
    )


def metrics_prepare() -> None:
    """Create the counters now: a claimer's session threads then share them (a first use
    from several threads at once could make two)."""
    _metrics()


def metrics_directory() -> Path:
    """Where the processes' counter files are (for the scrape)."""
    return Path(settings.METRICS_DIR)


def fetch_observed(*, outcome: str, messages: int, size: int, seconds: float | None) -> None:
    """Count one finished fetch run (no database statement)."""
    metrics = _metrics()
    metrics.runs.labels(outcome=outcome).inc()
    if messages:
        metrics.messages.inc(messages)
        metrics.bytes.inc(size)
    if seconds is not None:
        metrics.duration.observe(max(0.0, seconds))
