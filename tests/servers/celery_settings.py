"""Settings of the Celery end-to-end test's worker: the project's, on a private Redis prefix.

Every broker key gets the prefix from AAMAIL_E2E_PREFIX (kombu's ``global_keyprefix``), so
the test's "celery" and "fetch" queues never meet another run's or a real deployment's.
"""

import os

from aamail.settings import *  # noqa: F403

CELERY_BROKER_TRANSPORT_OPTIONS = {
    "visibility_timeout": 3600,
    "global_keyprefix": os.environ["AAMAIL_E2E_PREFIX"],
}
