"""Smoke test of bench/scale.py --quick: it runs end to end and its correctness holds.

Checks that the run prints every ratio it computed against a floor, that no row was ever
claimed twice by concurrent claimers, and that every binding was polled exactly once by
the real worker. It asserts nothing about speed: the benchmark is a measurement.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def _claim_url() -> str:
    """A wt_scale_* database on the PostgreSQL server the tests use."""
    url = os.environ.get("DATABASE_URL", "")
    if not url.startswith(("postgres://", "postgresql://")):
        pytest.skip("the scale benchmark needs PostgreSQL (DATABASE_URL=postgres://...)")
    return f"{url.rpartition('/')[0]}/wt_scale_smoke_{os.getpid()}"


@pytest.mark.postgres
@pytest.mark.timeout(600)
def test_it_prints_the_ratios_and_never_claims_a_row_twice(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("the private PostgreSQL runs as the postgres user: needs root")
    if not shutil.which("redis-server"):
        pytest.skip("redis-server is not installed")
    if not Path("/usr/lib/postgresql/15/bin/initdb").exists():
        pytest.skip("the postgresql-15 binaries are not installed")
    out = tmp_path / "out"
    argv = [sys.executable, "bench/scale.py", "--quick", "--out", str(out)]
    proc = subprocess.run(
        [*argv, "--claim-url", _claim_url()],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=580,
    )
    assert proc.returncode == 0, proc.stderr[-3000:] + proc.stdout[-2000:]
    results = json.loads((out / "scale.json").read_text())

    ratios = results["ratios"]
    labels = {r["label"] for r in ratios}
    assert any(label.startswith("claim product / floor") for label in labels)
    assert any(label.startswith("empty polls/s") for label in labels)
    for ratio in ratios:
        assert ratio["value"], ratio
        assert ratio["value"] > 0, ratio
        assert f"| {ratio['label']}" in proc.stdout, ratio["label"]

    drains = [d for tier in results["claim"]["tiers"] for d in tier.get("drains", [])]
    assert {d["claimers"] for d in drains} == {1, 2, 4}
    assert sum(d["claims"] for d in drains) > 0
    assert all(d["duplicates"] == 0 for d in drains)
    twice = next(c for c in results["checks"] if c["label"].startswith("no row claimed twice"))
    assert twice["ok"] is True

    for run in results["poll"]["product"]:
        assert run["polls"] == run["bindings"] > 0
        assert run["failed"] == run["twice"] == 0
        assert run["history_rows"] == 0  # empty polls write no history (issue 13)
    assert results["poll"]["sessions_memory"]["threads_most"] > 0
    assert results["sim"]["models"]
    assert (out / "scale.md").read_text() == proc.stdout
