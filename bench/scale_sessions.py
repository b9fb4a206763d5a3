"""Memory of many POP3 sessions in one process: a claimer with N session threads.

    python -m bench.scale_sessions --sessions 100 --seconds 20      (env: DATABASE_URL etc.)

Run by ``scale_poll.sessions_memory`` in its own process with the worker's environment,
against the benchmark's bindings (all due, on the empty-mailbox server). The process sets
Django up, imports the fetch path and opens its database connection (the baseline), then
runs ``mapping.claimer.claimer_run(sessions=N)`` on a thread while the main thread samples
its RSS (``/proc/self/status``) and how many session threads are alive. Prints one JSON
line: baseline and peak RSS, the peak's excess per 100 sessions, sessions alive at the peak,
bindings fetched.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time


def _rss_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="RSS of N concurrent sessions.")
    parser.add_argument("--sessions", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=20.0)
    args = parser.parse_args(argv)
    import django

    django.setup()
    from django.db import connection

    from mapping import claimer

    connection.ensure_connection()
    baseline = _rss_mb()
    result: dict = {}

    def run() -> None:
        report = claimer.claimer_run(sessions=args.sessions, seconds=args.seconds)
        result.update(fetched=report.fetched, claims=report.claims, outcomes=report.outcomes)

    thread = threading.Thread(target=run)
    thread.start()
    peak, alive_at_peak, most_alive = baseline, 0, 0
    while thread.is_alive():
        alive = sum(1 for t in threading.enumerate() if t.name.startswith("fetch-session-"))
        rss = _rss_mb()
        most_alive = max(most_alive, alive)
        if rss > peak:
            peak, alive_at_peak = rss, alive
        time.sleep(0.01)
    thread.join()
    excess = peak - baseline
    out = {
        "sessions": args.sessions,
        "baseline_mb": baseline,
        "peak_mb": peak,
        "threads_at_peak": alive_at_peak,
        "threads_most": most_alive,
        "mb_per_100_sessions": 100 * excess / max(most_alive, 1),
        **result,
    }
    sys.stdout.write(json.dumps(out, default=dict) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
