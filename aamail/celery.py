"""Celery app: reads CELERY_* Django settings and finds each app's tasks.py."""

import os
from typing import Any

from celery import Celery
from celery.signals import worker_init

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "aamail.settings")

app = Celery("aamail")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@worker_init.connect
def refuse_to_start_without_mail_owner(**kwargs: Any) -> None:
    """A worker stores mail: refuse to start when its files could not belong to the mail user.

    Otherwise every fetch would fail, or worse, store files Dovecot cannot read (issue 10).
    Celery logs and swallows an ordinary exception from a signal handler, so SystemExit.
    """
    from accounts.mailbox import MailOwnerError, check_mail_owner

    try:
        check_mail_owner()
    except MailOwnerError as exc:
        raise SystemExit(f"The Celery worker cannot start: {exc}") from None
