"""The kill test: kill -9 a real fetching process at random moments, over and over.

A child process (tests/fetch/kill_child.py, the project's settings on a database other
processes can see) fetches a real Dovecot mailbox with delete-on-server. Each round
delivers fresh mail, starts a child and SIGKILLs it after a random delay drawn across the
length of a fetch (startup, reconcile, RETR, intents, renames, DELE, QUIT). After the last
round one child runs to the end. Then the Maildir must hold every delivered message exactly
once, byte for byte, and the server must be empty.

Default: 5 kills that land in a running fetch. ``bash scripts/test.sh -m slow``: 200.
"""

from __future__ import annotations

import json
import os
import random
import select
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection

from tests.fetch.conftest import ISP_PASSWORD, as_fetched, maildir_files, new_isp_user

pytestmark = pytest.mark.django_db(transaction=True)


def child_database_url(tmp_path: Path, env: dict[str, str]) -> str:
    """A database the children can reach: the PostgreSQL test DB, or a migrated SQLite file."""
    if connection.vendor == "postgresql":
        s = connection.settings_dict
        auth = s["USER"] + (f":{s['PASSWORD']}" if s["PASSWORD"] else "")
        return f"postgres://{auth}@{s['HOST'] or '127.0.0.1'}:{s['PORT'] or 5432}/{s['NAME']}"
    # The suite's SQLite database is in memory, invisible to other processes.
    url = f"sqlite:///{tmp_path / 'kill.sqlite3'}"
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput", "-v0"],
        cwd=settings.BASE_DIR,
        env={**env, "DATABASE_URL": url},
        check=True,
        timeout=120,
    )
    return url


def messages_for_round(rnd: random.Random, round_no: int, count: int) -> list[bytes]:
    """Mixed mail: mostly small, some of hundreds of KB, now and then a few MB; awkward lines."""
    out = []
    for i in range(count):
        roll = rnd.random()
        size = (
            rnd.randint(1_000_000, 3_000_000)
            if roll < 0.04
            else rnd.randint(50_000, 300_000)
            if roll < 0.15
            else rnd.randint(100, 6_000)
        )
        body = rnd.randbytes(size // 2).hex().encode()
        lines = [body[j : j + rnd.choice((76, 998, 20_000))] for j in range(0, len(body), 998)]
        lines.insert(rnd.randrange(len(lines) + 1), b".leading dot \xe9\xff")
        lines.insert(rnd.randrange(len(lines) + 1), b".")
        head = b"Subject: kill %d.%d\nMessage-ID: <%d.%d@kill.test>\n\n" % (
            round_no,
            i,
            round_no,
            i,
        )
        tail = b"" if rnd.random() < 0.2 else b"\n"  # some without a final newline
        out.append(head + b"\n".join(lines) + tail)
    return out


class Children:
    """Starts the child processes of one test, with their output in tmp_path."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.env, self.log = env, log

    def start(self, *args: str) -> subprocess.Popen:
        return subprocess.Popen(
            [sys.executable, "-m", "tests.fetch.kill_child", *args],
            cwd=settings.BASE_DIR,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=self.log.open("ab"),
        )

    def line(self, proc: subprocess.Popen, timeout: float = 60) -> str:
        ready, _, _ = select.select([proc.stdout], [], [], timeout)
        text = proc.stdout.readline().decode() if ready else ""
        if not text:
            proc.kill()
            raise AssertionError(f"child said nothing; its log:\n{self.log.read_text()[-3000:]}")
        return text.strip()


def run_kill_test(
    isp, tmp_path: Path, kills: int, seed: int, *, claim: bool = False
) -> dict[str, int]:
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "aamail.settings",
        "MAIL_ROOT": str(tmp_path / "mail"),
        "ISP_SECRET_KEYS": ",".join(settings.ISP_SECRET_KEYS),
        "POP3_TIMEOUT": "10",
        "LOG_LEVEL": "WARNING",
        "ISP_ALLOW_PRIVATE_ADDRESSES": "true",  # the "ISP" is a Dovecot on loopback
    }
    env["DATABASE_URL"] = child_database_url(tmp_path, env)
    children = Children(env, tmp_path / "children.log")
    user = new_isp_user(isp)
    setup = children.start("setup", "127.0.0.1", str(isp.pop3_port), user, ISP_PASSWORD)
    info = json.loads(children.line(setup))
    assert setup.wait(timeout=60) == 0
    rnd = random.Random(seed)
    delivered: list[bytes] = []
    landed, estimate = 0, 0.5  # seconds a fetch takes, learnt from the runs that finish
    rounds = 0
    while landed < kills:  # a round whose child finished before its kill does not count
        rounds += 1
        assert rounds <= 4 * kills, "the kills keep missing the fetches"
        round_no = rounds
        for raw in messages_for_round(rnd, round_no, rnd.randint(5, 40)):
            isp.deliver(user, raw)
            delivered.append(raw)
        how = ("--expire-lease", "--claim") if claim else ("--expire-lease",)
        child = children.start("fetch", str(info["id"]), *how)
        assert children.line(child) == "fetching"
        started = time.monotonic()
        try:
            child.wait(timeout=rnd.uniform(0, 1.3 * estimate))
            estimate = 0.7 * estimate + 0.3 * (time.monotonic() - started)
        except subprocess.TimeoutExpired:
            child.kill()  # SIGKILL: no cleanup of any kind
            child.wait()
            landed += 1
            # Mail piles up on the server while runs die before QUIT; keep the delays
            # spread over the (growing) length of a run.
            estimate *= 1.1
        child.stdout.close()
    for _ in range(10):  # the scheduler would retry a busy mailbox with backoff
        final = children.start("fetch", str(info["id"]), *how)
        assert children.line(final) == "fetching"
        said = children.line(final, timeout=300)
        assert final.wait(timeout=60) == 0
        final.stdout.close()
        if said.startswith("done ok") or "busy" not in said:
            break
        time.sleep(1)
    assert said.startswith("done ok"), said

    got = Counter()
    for path in maildir_files(Path(info["root"])):
        got[path.read_bytes().partition(b"\n")[2]] += 1
    want = Counter(as_fetched(raw) for raw in delivered)
    stats = {
        "rounds": rounds,
        "kills": landed,
        "messages": len(delivered),
        "duplicated": sum((got - want).values()),
        "lost": sum((want - got).values()),
        "left_on_server": len(isp.messages(user)),
    }
    print(f"\nkill test: {stats}")
    return stats


def test_a_fetch_killed_at_random_moments_loses_and_duplicates_nothing(isp, tmp_path):
    stats = run_kill_test(isp, tmp_path, kills=5, seed=4)
    assert stats["duplicated"] == stats["lost"] == stats["left_on_server"] == 0


def test_a_claimed_fetch_killed_at_random_moments_loses_and_duplicates_nothing(isp, tmp_path):
    """Issue 13: the claimers' path (the claim takes the lease, no history row until mail
    comes) changes who claims, not what a fetch guarantees."""
    stats = run_kill_test(isp, tmp_path, kills=5, seed=13, claim=True)
    assert stats["duplicated"] == stats["lost"] == stats["left_on_server"] == 0


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_two_hundred_kills_lose_and_duplicate_nothing(isp, tmp_path):
    stats = run_kill_test(isp, tmp_path, kills=200, seed=1939)
    assert stats["duplicated"] == stats["lost"] == stats["left_on_server"] == 0


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_two_hundred_kills_of_a_claimer_lose_and_duplicate_nothing(isp, tmp_path):
    """The same proof on the claimers' path: the claim, the schedule row's lease and
    fence, the release a claimer writes."""
    stats = run_kill_test(isp, tmp_path, kills=200, seed=2026, claim=True)
    assert stats["duplicated"] == stats["lost"] == stats["left_on_server"] == 0
