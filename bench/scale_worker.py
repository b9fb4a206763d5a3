"""Per-task counters inside the benchmark's Celery worker processes (see scale_settings).

For every task a worker process runs: how many SQL statements Django sent for it (an
execute wrapper on each new database connection; BEGIN/COMMIT are not statements Django
sends, PostgreSQL's own count in pg_stat_statements has them) and the CPU time of the
task body (``time.process_time`` around it). Written as JSON at process exit.
"""

from __future__ import annotations

import atexit
import json
import os
import time
from collections import Counter, defaultdict
from pathlib import Path

_queries = 0
_started: dict[str, tuple[int, float, float]] = {}
_tasks: dict[str, dict] = defaultdict(
    lambda: {"count": 0, "queries": 0, "cpu_s": 0.0, "wall_s": 0.0, "histogram": Counter()}
)
_written = False


def _count(execute, sql, params, many, context):
    global _queries
    _queries += 1
    return execute(sql, params, many, context)


def _on_connection(sender, connection, **kwargs) -> None:
    # The wrapper list lives on the DatabaseWrapper, which survives reconnections
    # (CONN_MAX_AGE 0 reconnects per task): add the counter once.
    if _count not in connection.execute_wrappers:
        connection.execute_wrappers.append(_count)


def _prerun(task_id=None, task=None, **kwargs) -> None:
    _started[task_id] = (_queries, time.process_time(), time.perf_counter())


def _postrun(task_id=None, task=None, **kwargs) -> None:
    began = _started.pop(task_id, None)
    if began is None:
        return
    queries = _queries - began[0]
    item = _tasks[task.name]
    item["count"] += 1
    item["queries"] += queries
    item["cpu_s"] += time.process_time() - began[1]
    item["wall_s"] += time.perf_counter() - began[2]
    item["histogram"][queries] += 1


def install(directory: str) -> None:
    """Connect the counters (called from the settings module, before the pool forks)."""
    from celery import signals
    from django.db.backends.signals import connection_created

    connection_created.connect(_on_connection, weak=False)
    signals.task_prerun.connect(_prerun, weak=False)
    signals.task_postrun.connect(_postrun, weak=False)

    def write(**kwargs) -> None:
        global _written
        if _written or not _tasks:
            return
        _written = True
        data = {name: {**v, "histogram": dict(v["histogram"])} for name, v in _tasks.items()}
        path = Path(directory) / f"{os.getpid()}.json"
        path.write_text(json.dumps(data))

    signals.worker_process_shutdown.connect(write, weak=False)
    atexit.register(write)


def collect(directory: Path) -> dict[str, dict]:
    """Sum the files the worker processes wrote: {task name: totals and histogram}."""
    total: dict[str, dict] = {}
    for path in Path(directory).glob("*.json"):
        for name, item in json.loads(path.read_text()).items():
            into = total.setdefault(
                name, {"count": 0, "queries": 0, "cpu_s": 0.0, "wall_s": 0.0, "histogram": {}}
            )
            for key in ("count", "queries", "cpu_s", "wall_s"):
                into[key] += item[key]
            for queries, n in item["histogram"].items():
                into["histogram"][queries] = into["histogram"].get(queries, 0) + n
    return total
