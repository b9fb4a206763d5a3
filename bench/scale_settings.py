"""Settings of the scale benchmark's Celery worker and beat: exactly the project's settings
(plus ``CELERY_DB_REUSE_MAX`` in the one run that measures persistent connections).

With ``SCALE_STATS_DIR`` set, each worker process also counts, per task, the SQL
statements Django sent and the task's own CPU time, and writes them to
``$SCALE_STATS_DIR/<pid>.json`` when it exits (``bench/scale_worker.py``). Counting costs
one Python call per statement; nothing else differs from a deployment.
"""

import os

from aamail.settings import *  # noqa: F403

# Set only by the benchmark's persistent-connection run (bench/scale_poll.py, PERSISTENT).
if os.environ.get("SCALE_DB_REUSE_MAX"):
    CELERY_DB_REUSE_MAX = int(os.environ["SCALE_DB_REUSE_MAX"])

if os.environ.get("SCALE_STATS_DIR"):
    from bench import scale_worker

    scale_worker.install(os.environ["SCALE_STATS_DIR"])
