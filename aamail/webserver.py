"""gunicorn's settings, read from the same environment (and .env) as Django's.

    gunicorn -c python:aamail.webserver aamail.wsgi --bind 127.0.0.1:8000

gthread workers: each of WEB_CONCURRENCY processes serves WEB_THREADS requests at once, so
a Detect waiting up to DETECT_DEADLINE_SECONDS on a slow ISP holds one thread while the rest
of the console keeps answering (issue 11: two Detects stalled sync workers for 19 s). The
worker count is the one aamail/checks.py judges the cache by.
"""

from aamail import settings as _settings

worker_class = "gthread"
workers = _settings.WEB_CONCURRENCY
threads = _settings.WEB_THREADS
# gthread workers keep their heartbeat while a request waits; this only catches a worker
# that is truly stuck, and must outlast a Detect (its own deadline ends it).
timeout = int(_settings.DETECT_DEADLINE_SECONDS) + 40
graceful_timeout = 20
accesslog = "-"
