"""Our fetch, run the way a worker runs it: ``mapping.fetch.binding_fetch(binding=...)``.

Two sub-commands, each run in its own process by ``fetch_bench.py`` with the environment
it prepared (``DATABASE_URL`` = a temporary SQLite file, ``MAIL_ROOT``, ``ISP_SECRET_KEYS``,
``ISP_CA_FILE`` = the private Dovecot's CA; see ``django_env()``):

- ``setup``: create the domain, one account + binding per planned run (a fresh binding is
  a fresh UIDL state, so every run fetches the whole mailbox); prints {key: binding id}.
  The database itself is created beforehand with ``manage.py migrate``.
- ``fetch --binding-id N``: ``django.setup()``, then time ``binding_fetch`` alone (what a
  long-running worker spends on one fetch); prints one JSON line. The peak RSS of the whole
  process, Django included, is measured from outside (``bench.proc``).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DOMAIN = "bench.example"


def django_env(work: Path, *, ca_file: Path, fernet_key: str) -> dict[str, str]:
    """Environment for both sub-commands (and ``manage.py migrate``)."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("DJANGO_", "DATABASE_", "MAIL_", "ISP_", "CELERY_"))
    }
    env.update(
        DJANGO_SETTINGS_MODULE="aamail.settings",
        DATABASE_URL=f"sqlite:///{work / 'bench.sqlite3'}",
        MAIL_ROOT=str(work / "mailroot"),
        SECRET_KEY="aamail-bench-not-secret-" + "x" * 40,
        ISP_SECRET_KEYS=fernet_key,
        ISP_CA_FILE=str(ca_file),
        ISP_ALLOW_PRIVATE_ADDRESSES="true",  # the benchmark's Dovecot is on loopback
        CELERY_BROKER_URL="memory://",
        DEBUG="false",
        PYTHONPATH=str(REPO),
    )
    return env


def mailbox(work: Path, key: str) -> Path:
    """Where our fetch stores the run ``key`` (MAIL_ROOT/<domain>/<local part>)."""
    return work / "mailroot" / DOMAIN / key


def _setup(plan: list[dict]) -> dict[str, int]:
    from django.contrib.auth.hashers import make_password

    from accounts.models import Account, AccountKind
    from domains.models import Domain, DomainType
    from mapping.models import Binding

    domain, _ = Domain.objects.get_or_create(
        name=DOMAIN, defaults={"domain_type": DomainType.MAP, "pop3_host": "127.0.0.1"}
    )
    ids = {}
    for item in plan:
        # No argon2 here (slow, and irrelevant): the local password is simply unusable.
        account = Account(
            domain=domain,
            localpart=item["key"],
            kind=AccountKind.NORMAL,
            password=make_password(None),
        )
        account.save()
        binding = Binding(
            account=account,
            host="127.0.0.1",
            port=item["port"],
            security=item["security"],
            username=item["username"],
        )
        binding.set_isp_password(item["password"])
        binding.save()
        ids[item["key"]] = binding.pk
    return ids


def _fetch(binding_id: int) -> dict:
    from mapping.fetch import binding_fetch
    from mapping.models import Binding

    binding = Binding.objects.get(pk=binding_id)
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    start = time.perf_counter()
    run = binding_fetch(binding=binding, trigger="command")
    elapsed = time.perf_counter() - start
    return {
        "fetch_s": elapsed,
        "outcome": run.outcome,
        "messages": run.messages,
        "bytes": run.bytes,
        "error": run.error,
        "rss_before_fetch_mb": rss_before,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Our fetch, for the benchmark.")
    sub = parser.add_subparsers(dest="command", required=True)
    setup = sub.add_parser("setup")
    setup.add_argument("plan", help="JSON list of {key, port, security, username, password}")
    fetch = sub.add_parser("fetch")
    fetch.add_argument("--binding-id", type=int, required=True)
    fetch.add_argument("--profile", help="write cProfile stats of the fetch to this file")
    args = parser.parse_args(argv)

    import django

    django.setup()
    if args.command == "setup":
        result = _setup(json.loads(args.plan))
    elif args.profile:
        import cProfile

        profiler = cProfile.Profile()
        result = profiler.runcall(_fetch, args.binding_id)
        profiler.dump_stats(args.profile)
    else:
        result = _fetch(args.binding_id)
    sys.stdout.write(json.dumps(result) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
