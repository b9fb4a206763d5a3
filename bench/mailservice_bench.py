"""Mail-service benchmark (issue 6, item 8): submission through the office box, end to end.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/aamail_bench \\
        .venv/bin/python bench/mailservice_bench.py [--messages 2000] [--quick]

Needs root, the Debian packages and PostgreSQL (Dovecot reads the same database; the
database named in DATABASE_URL is created and migrated if missing, and emptied of its
domains first). One run, two phases on the same machine, same ports, same seed:

1. **socketmap**: the product's configuration; every Postfix lookup goes to `mailmap`.
2. **hash maps** (baseline): the same main.cf/master.cf with every `${mailmap}:NAME`
   replaced by a `hash:` table holding exactly the answers the lookup server gave.

Each phase submits N messages over the 587 port (STARTTLS + AUTH, 10 messages per session,
8 sessions in parallel): half to office colleagues (LMTP into Maildirs), half to an outside
address relayed through the fake ISP (a real Postfix requiring TLS + AUTH) with each sender's
own ISP login. Messages/s runs from the first connection until the last message is in a
Maildir or in the ISP's sink. Lookup latency is measured inside the lookup server per map
(time to answer one request) and, separately, from a client over the unix socket.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import smtplib
import ssl
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "aamail.settings")
os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/aamail_bench")

ACCOUNTS = 20
SESSION_MESSAGES = 10
PARALLEL = 8
LOCAL_PASSWORD = "Bench-Local-1"


def _ensure_database() -> None:
    import environ
    import psycopg

    db = environ.Env.db_url_config(os.environ["DATABASE_URL"])
    if "postgresql" not in db["ENGINE"]:
        sys.exit("This benchmark needs PostgreSQL: Dovecot reads the same database.")
    conninfo = f"host={db['HOST']} port={db['PORT'] or 5432} user={db['USER']} dbname=postgres"
    if db.get("PASSWORD"):
        conninfo += f" password={db['PASSWORD']}"
    with psycopg.connect(conninfo, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [db["NAME"]])
        if not exists.fetchone():
            conn.execute(f'CREATE DATABASE "{db["NAME"]}"')


def _setup_django() -> None:
    _ensure_database()
    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command

    settings.PASSWORD_HASHERS = ["accounts.hashers.MailArgon2PasswordHasher"]
    # The fake ISP relay listens on loopback; the outbound guard refuses that by default.
    settings.ISP_ALLOW_PRIVATE_ADDRESSES = True
    call_command("migrate", verbosity=0)


def _seed(isp):
    from accounts.models import Account
    from domains.models import Domain, Security
    from mapping.models import Binding
    from tests import factories

    Binding.objects.all().delete()
    Account.objects.all().delete()
    Domain.objects.all().delete()
    domain = factories.DomainFactory(name="bench.example", smtp_host="localhost")
    accounts = []
    for i in range(ACCOUNTS):
        account = factories.AccountFactory(
            domain=domain, localpart=f"user{i}", raw_password=LOCAL_PASSWORD
        )
        login, password = f"isp-user{i}", f"Isp:Secret {i}"
        isp.add_user(login, password)
        starttls = i % 2 == 0
        factories.BindingFactory(
            account=account,
            host="localhost",
            username=login,
            raw_password=password,
            smtp_host="localhost",
            smtp_port=isp.submission_port if starttls else isp.smtps_port,
            smtp_security=Security.STARTTLS if starttls else Security.SSL,
            is_outgoing_relay=True,
        )
        accounts.append(account.address)
    return accounts


class _MailmapProcess:
    """`manage.py mailmap` in its own process, as in production (no GIL shared with us)."""

    def __init__(self, socket: Path, run_dir: Path, stats: Path | None = None) -> None:
        self.socket, self.run_dir, self.stats = socket, run_dir, stats
        self.process: subprocess.Popen | None = None

    def __enter__(self):
        from devserver.processes import wait_for_unix

        command = [sys.executable, str(ROOT / "manage.py"), "mailmap", "--socket", str(self.socket)]
        if self.stats:
            command += ["--stats", str(self.stats)]
        # MAIL_RUN_DIR: the office's Dovecot LMTP socket, which the transport map names.
        # ISP_ALLOW_PRIVATE_ADDRESSES: the fake ISP relay is on loopback (the guard's default
        # refuses it).
        env = {
            **os.environ,
            "MAIL_RUN_DIR": str(self.run_dir),
            "ISP_ALLOW_PRIVATE_ADDRESSES": "true",
        }
        self.process = subprocess.Popen(command, env=env)
        wait_for_unix(self.socket)
        return self

    def __exit__(self, *exc) -> None:
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(30)


def _percentiles(values: list[float]) -> dict:
    if not values:
        return {"n": 0}
    ordered = sorted(values)
    p = lambda q: ordered[min(len(ordered) - 1, int(q * len(ordered)))]  # noqa: E731
    return {"n": len(ordered), "p50_ms": p(0.5) * 1000, "p99_ms": p(0.99) * 1000}


def _count_files(root: Path) -> int:
    return sum(1 for p in root.glob("*/*/new/*")) + sum(1 for p in root.glob("*/*/cur/*"))


def _submit(office, context, jobs):
    """jobs: list of (sender, recipient) for one SMTP session."""
    port = office.config.ports.submission
    with smtplib.SMTP("localhost", port, timeout=60) as client:
        client.starttls(context=context)
        sender = jobs[0][0]
        client.auth(
            "PLAIN",
            lambda challenge=None: f"\0{sender}\0{LOCAL_PASSWORD}",
            initial_response_ok=True,
        )
        for n, (frm, rcpt) in enumerate(jobs):
            body = f"From: {frm}\r\nTo: {rcpt}\r\nSubject: bench {n}\r\n\r\n" + "x" * 1500 + "\r\n"
            client.sendmail(frm, [rcpt], body.encode())


def _phase(name, office, isp, accounts, total, context) -> dict:
    rng = random.Random(6)
    sessions = []
    for s in range(total // SESSION_MESSAGES):
        sender = accounts[s % len(accounts)]
        jobs = []
        for m in range(SESSION_MESSAGES):
            if (s * SESSION_MESSAGES + m) % 2 == 0:
                rcpt = rng.choice([a for a in accounts if a != sender])
            else:
                rcpt = "partner@outside.test"
            jobs.append((sender, rcpt))
        sessions.append(jobs)
    mail_root = Path(office.config.mail_root)
    internal_before = _count_files(mail_root)
    external_before = len(isp._message_files())
    internal_goal = internal_before + total // 2
    external_goal = external_before + total - total // 2

    start = time.monotonic()
    with ThreadPoolExecutor(PARALLEL) as pool:
        list(pool.map(lambda jobs: _submit(office, context, jobs), sessions))
    submitted = time.monotonic() - start
    deadline = time.monotonic() + 600
    while True:
        internal, external = _count_files(mail_root), len(isp._message_files())
        if internal >= internal_goal and external >= external_goal:
            break
        if time.monotonic() > deadline:
            raise SystemExit(
                f"{name}: only {internal}/{internal_goal} internal, "
                f"{external}/{external_goal} external delivered"
            )
        time.sleep(0.05)
    elapsed = time.monotonic() - start
    return {
        "phase": name,
        "messages": total,
        "submit_s": round(submitted, 2),
        "end_to_end_s": round(elapsed, 2),
        "messages_per_s": round(total / elapsed, 1),
    }


def _client_latency(path: Path, accounts: list[str], n: int) -> dict:
    from mailservice.socketmap import SocketmapClient

    samples: dict[str, list[float]] = defaultdict(list)
    keys = {
        "domains": lambda a: a.split("@")[1],
        "mailboxes": lambda a: a,
        "sender_login": lambda a: a,
        "relay_transport": lambda a: a,
        "relay_credentials": lambda a: a,
    }
    with SocketmapClient(path) as client:
        for i in range(n):
            address = accounts[i % len(accounts)]
            for name, key in keys.items():
                start = time.perf_counter()
                client.query(name, key(address))
                samples[name].append(time.perf_counter() - start)
    return {name: _percentiles(values) for name, values in samples.items()}


def _hash_map_config(office, accounts) -> None:
    """Rewrite the rendered Postfix files to static hash tables with the same answers."""
    from mailservice import lookups
    from mailservice.socketmap import Request

    maps_dir = Path(office.config.config_dir) / "hashmaps"
    maps_dir.mkdir(exist_ok=True)
    domain = accounts[0].split("@")[1]
    keys = {
        "domains": [domain],
        "mailboxes": accounts,
        "transport": accounts,
        "recipient": [],
        "outside_sender": [],
        "sender_login": accounts,
        "sasl_class": accounts,
        "internal_only": accounts,
        "no_relay": accounts,
        "relay_transport": accounts,
        "relay_credentials": accounts,
    }
    for name, names in keys.items():
        lines = []
        for key in names:
            reply = lookups.answer(
                Request(name, key), local_transport=office.config.local_transport
            )
            if reply.status == "OK":
                lines.append(f"{key} {reply.data}")
        path = maps_dir / name
        path.write_text("\n".join(lines) + "\n")
        path.chmod(0o600)
        subprocess.run(
            ["postmap", "-c", str(office.config.postfix_dir), f"hash:{path}"], check=True
        )
    for cf in ("main.cf", "master.cf"):
        path = office.config.postfix_dir / cf
        text = path.read_text()
        for name in keys:
            text = text.replace("${mailmap}:" + name, f"hash:{maps_dir / name}")
        path.write_text(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--quick", action="store_true", help="200 messages")
    parser.add_argument("--json", help="Write the results to this file too.")
    args = parser.parse_args()
    total = 200 if args.quick else args.messages
    if os.getuid() != 0:
        sys.exit("Run as root: Postfix and Dovecot are started privately and drop privileges.")

    _setup_django()
    from devserver.certs import make_ca_and_cert
    from devserver.processes import postfix_start, postfix_stop
    from devserver.runner import OfficeMailServer, private_office_config
    from tests.servers.ispsmtp import FakeIspSmtp

    base = Path(tempfile.mkdtemp(prefix="aamail-msbench-"))
    base.chmod(0o755)
    results: dict = {"messages": total, "accounts": ACCOUNTS, "parallel_sessions": PARALLEL}
    with FakeIspSmtp() as isp:
        accounts = _seed(isp)
        ca, cert, key = make_ca_and_cert(base, hostnames=("localhost",), ips=("127.0.0.1",))
        config = private_office_config(base, cert=cert, key=key, relay_ca_file=isp.ca_file)
        context = ssl.create_default_context(cafile=str(ca))
        office = OfficeMailServer(config, with_mailmap=False)
        stats = base / "mailmap-stats.json"
        socket = Path(config.mailmap_socket)
        try:
            with _MailmapProcess(socket, Path(config.run_dir), stats):
                office.start()
                # Warm-up, not measured: TLS session caches, Dovecot's auth cache, processes.
                _phase("warm-up", office, isp, accounts, max(100, total // 10), context)
                results["socketmap"] = _phase("socketmap", office, isp, accounts, total, context)
            results["lookup_server_latency"] = json.loads(stats.read_text())
            with _MailmapProcess(socket, Path(config.run_dir)):
                results["lookup_client_latency"] = _client_latency(socket, accounts, 2000)
            postfix_stop(config.postfix_dir)
            _hash_map_config(office, accounts)
            postfix_start(config.postfix_dir)
            results["hash_maps"] = _phase("hash maps", office, isp, accounts, total, context)
        finally:
            office.stop()
            shutil.rmtree(base, ignore_errors=True)
    ratio = results["hash_maps"]["messages_per_s"] / results["socketmap"]["messages_per_s"]
    results["hash_over_socketmap_throughput"] = round(ratio, 3)
    worst_p99 = max(v["p99_ms"] for v in results["lookup_server_latency"].values())
    results["targets"] = {
        "lookup_p99_le_2ms": worst_p99 <= 2.0,
        "throughput_within_1_2x_of_hash": ratio <= 1.2,
    }
    text = json.dumps(results, indent=2)
    print(text)
    if args.json:
        Path(args.json).write_text(text)


if __name__ == "__main__":
    main()
