"""Settings of the scale benchmark's Celery worker and beat: exactly the project's settings.

With ``SCALE_STATS_DIR`` set, each worker process also counts, per task, the SQL
statements Django sent and the task's own CPU time, and writes them to
``$SCALE_STATS_DIR/<pid>.json`` when it exits (``bench/scale_worker.py``). Counting costs
one Python call per statement; nothing else differs from a deployment.
"""

import os

from aamail.settings import *  # noqa: F403

if os.environ.get("SCALE_STATS_DIR"):
    from bench import scale_worker

    scale_worker.install(os.environ["SCALE_STATS_DIR"])
