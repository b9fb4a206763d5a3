"""AAMail: an office mail server in map mail server mode."""

from .celery import app as celery_app

__all__ = ["celery_app"]
