"""Smoke test of bench/fetch_bench.py: quick corpora, our fetch and the floor, no peers.

Checks that the benchmark runs end to end against a real Dovecot and that every message
our fetch (and the floor) stored is byte-identical to the corpus. It asserts nothing about
speed: the benchmark is a measurement, not a timed unit test.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.servers.dovecot import DOVECOT

REPO = Path(__file__).resolve().parents[2]


def test_quick_benchmark_verifies_every_message(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("a private Dovecot needs root (mail processes run as uid 8)")
    if not os.path.exists(DOVECOT):
        pytest.skip(f"{DOVECOT} is not installed")
    out = tmp_path / "out"
    proc = subprocess.run(
        [
            sys.executable,
            "bench/fetch_bench.py",
            "--quick",
            "--tools",
            "floor,ours",
            "--no-ssl",
            "--out",
            str(out),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads((out / "results.json").read_text())
    runs = results["runs"]
    tools = {run["tool"] for run in runs}
    assert "ours (binding_fetch)" in tools
    assert any(tool.startswith(("floor", "durable floor")) for tool in tools)
    assert {run["corpus"] for run in runs} == {"mixed", "small", "big"}
    for run in runs:
        verdict = run["verdict"]
        assert verdict["verified"] == verdict["total"] > 0, (run["tool"], run["corpus"], verdict)
        assert verdict["corrupted"] == verdict["missing"] == 0, verdict
        assert verdict["duplicates"] == verdict["unidentified"] == 0, verdict
    assert (out / "results.md").read_text().startswith("## Fetch benchmark (quick)")
