"""A worker process for the kill test: set up a binding, or run one fetch of it.

    python -m tests.fetch.kill_child setup HOST PORT USER PASSWORD   -> prints a JSON line
    python -m tests.fetch.kill_child fetch BINDING_ID [--expire-lease] [--claim]

Uses the project settings and whatever DATABASE_URL/MAIL_ROOT the environment gives.
``--expire-lease`` plays the passing of FETCH_LEASE_SECONDS after a kill -9 (the killed
process cannot release its lease), so the test need not wait for it. ``--claim`` makes the
binding due and fetches it with a claimer as a worker runs one (issue 13,
``mapping.claimer.claimer_run``): the claim takes the lease, a session thread fetches with
it, the claimer writes an empty poll's release.
"""

from __future__ import annotations

import json
import os
import sys


def main(argv: list[str]) -> int:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "aamail.settings")
    import django

    django.setup()
    from accounts.mailbox import mailbox_path
    from mapping.fetch import binding_fetch
    from mapping.models import Binding, LeavePolicy, Schedule

    if argv[0] == "setup":
        from tests.factories import BindingFactory

        host, port, user, password = argv[1:5]
        binding = BindingFactory(
            host=host,
            port=int(port),
            security="none",
            username=user,
            raw_password=password,
            leave_policy=LeavePolicy.DELETE,
        )
        root = str(mailbox_path(binding.account))
        print(json.dumps({"id": binding.pk, "root": root}), flush=True)
        return 0
    binding_id = int(argv[1])
    if "--expire-lease" in argv:
        Schedule.objects.filter(pk=binding_id).update(lease_token=None, lease_expires_at=None)
    if "--claim" in argv:
        from datetime import timedelta

        from django.utils import timezone

        from mapping.claimer import claimer_run

        due = timezone.now() - timedelta(seconds=1)
        Schedule.objects.filter(pk=binding_id).update(next_fetch_at=due)
        print("fetching", flush=True)
        # A claimer as a worker runs it: its session thread fetches, it writes the release.
        report = claimer_run(sessions=2, seconds=30)
        if not report.fetched:
            print("done busy 0 nothing claimed", flush=True)
            return 0
        outcome = next((o for o in report.outcomes if o != "ok"), "ok")
        print(f"done {outcome} {report.fetched}", flush=True)
        return 0
    binding = Binding.objects.select_related("account__domain").get(pk=binding_id)
    print("fetching", flush=True)
    run = binding_fetch(binding=binding, trigger="command")
    print(f"done {run.outcome} {run.messages} {run.error}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
