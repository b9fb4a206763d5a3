"""Polls of an empty mailbox: the raw POP3 client floor, and the product end to end.

The floor (``raw_floor``): ``bench/scale_pop3.py`` in its own process against the
empty-mailbox server (``tests/servers/emptypop.py``), asyncio or threads, over a grid of
concurrent sessions; the best plain-text rate is the floor.

The product (``product_run``): a real ``celery worker`` (prefork, the deployed command line:
``-Q celery,fetch --concurrency C --loglevel INFO``) and a real ``celery beat`` on a
private Redis, a private PostgreSQL (``scale_servers``), N bindings of N accounts all due,
each bound to the empty-mailbox server (security "none", its Maildir already made, as in
a steady state: the Maildir made, nothing recorded). Beat sends ``mapping.tasks.fetch_claim``
every second; a worker process running it is a claimer with ``FETCH_SESSIONS_PER_PROCESS``
session threads (issue 13). An empty poll writes no history row, so a poll is counted by the
binding's ``last_check_at`` (set by its release) and a binding polled twice by the release
statements PostgreSQL counted. Measured from the first tick to the last fetch:

- polls per second in the steady part (from 10 % to 90 % of the fetches done);
- CPU of the worker tree, beat, PostgreSQL (whole private cluster), Redis and the POP3
  server, per poll, from /proc (``scale_proc``);
- statements per poll from PostgreSQL (``pg_stat_statements``, BEGIN/COMMIT included),
  commits (``xact_commit``) and new connections (``sessions``) from ``pg_stat_database``,
  and per task from the worker itself (``scale_worker``);
- RSS and PSS of each worker process while it is busy.
"""

from __future__ import annotations

import itertools
import json
import os
import pwd
import shutil
import signal
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

from bench import scale_proc, scale_worker
from bench.scale_servers import PrivatePostgres, PrivateRedis, migrate

REPO = Path(__file__).resolve().parent.parent
DOMAIN = "poll.scale.example"
ISP_PASSWORD = "floor-pass"  # what scale_pop3 sends; the server accepts any password
TAG = "/* scale-bench */"  # marks the benchmark's own queries, left out of the counts


@dataclass
class PollEnv:
    """Everything the product runs against; made by ``poll_env``."""

    work: Path
    pg: PrivatePostgres
    redis: PrivateRedis
    pop_port: int
    pop_pids: list[int]
    url: str
    fernet_key: str
    bindings: int = 0

    def django_env(
        self, stats_dir: Path | None = None, conn_max_age: int | None = None
    ) -> dict[str, str]:
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("DJANGO_", "DATABASE_", "MAIL_", "ISP_", "CELERY_", "FETCH_"))
            and k not in ("SCHEDULER_TICK_SECONDS", "SCALE_STATS_DIR")
        }
        env.update(
            DJANGO_SETTINGS_MODULE="bench.scale_settings",
            # django-environ reads CONN_MAX_AGE from the URL: configuration, not code.
            DATABASE_URL=self.url + (f"?conn_max_age={conn_max_age}" if conn_max_age else ""),
            CELERY_BROKER_URL=self.redis.url,
            MAIL_ROOT=str(self.work / "mailroot"),
            SECRET_KEY="aamail-scale-bench-not-secret-" + "x" * 30,
            ISP_SECRET_KEYS=self.fernet_key,
            ISP_ALLOW_PRIVATE_ADDRESSES="true",  # the empty-mailbox servers are on loopback
            DEBUG="false",
            PYTHONPATH=str(REPO),
        )
        if stats_dir is not None:
            env["SCALE_STATS_DIR"] = str(stats_dir)
        return env

    def pop_cpu(self) -> float:
        return sum(scale_proc.cpu_seconds(pid) for pid in self.pop_pids)


def prepare(env: PollEnv, bindings: int) -> None:
    """Schema by the product's migrations, then one domain, N accounts and N bindings."""
    from cryptography.fernet import Fernet

    migrate(env.url, env.django_env())
    token = Fernet(env.fernet_key.encode()).encrypt(ISP_PASSWORD.encode()).decode()
    with psycopg.connect(env.url, autocommit=True) as conn:
        conn.execute(
            """
            INSERT INTO domains_domain (name, domain_type, pop3_host, pop3_port, pop3_security,
                smtp_host, smtp_port, smtp_security, is_active, created_at, updated_at)
            VALUES (%s, 'map', '127.0.0.1', %s, 'none', '', 587, 'starttls', true, now(), now())
            """,
            [DOMAIN, env.pop_port],
        )
        conn.execute(
            """
            INSERT INTO accounts_account (localpart, display_name, kind, password, quota_mb,
                is_active, created_at, updated_at, domain_id)
            SELECT 'user' || i, '', 'normal', '!', 0, true, now(), now(),
                (SELECT id FROM domains_domain)
            FROM generate_series(1, %s) i
            """,
            [bindings],
        )
        conn.execute(
            """
            INSERT INTO mapping_binding (host, port, security, username, password_encrypted,
                leave_policy, delete_after_days, fetch_interval_minutes, enabled, smtp_host,
                smtp_port, smtp_security, smtp_username, smtp_password_encrypted,
                is_outgoing_relay, state, last_error, consecutive_failures,
                messages_fetched, bytes_fetched, created_at, updated_at, account_id, fetch_rows)
            SELECT '127.0.0.1', %s, 'none', 'user' || a.id, %s, 'keep', NULL, 5, true, '',
                587, 'starttls', '', '', false, 'ok', '', 0, 0, 0, now(), now(), a.id, false
            FROM accounts_account a
            """,
            [env.pop_port, token],
        )
        conn.execute(
            """
            INSERT INTO mapping_schedule (binding_id, next_fetch_at, lease_token,
                lease_expires_at, lease_holder)
            SELECT id, now(), NULL, NULL, '' FROM mapping_binding
            """
        )
    # A steady state: every Maildir exists (the first fetch of a binding makes and fsyncs
    # it once, which is not what a poll costs).
    mail = pwd.getpwnam("mail")  # the product's default mail owner (accounts/mailbox.py)
    owner = (mail.pw_uid, mail.pw_gid)
    root = env.work / "mailroot" / DOMAIN
    for i in range(1, bindings + 1):
        for sub in ("tmp", "new", "cur"):
            path = root / f"user{i}" / sub
            path.mkdir(parents=True, exist_ok=True)
            os.chown(path, *owner)
        os.chown(root / f"user{i}", *owner)
    env.bindings = bindings


def reset(env: PollEnv) -> None:
    """Every binding due now, no lease, no history; statistics cleared."""
    with psycopg.connect(env.url, autocommit=True) as conn:
        conn.execute(
            f"""{TAG} UPDATE mapping_binding SET state = 'ok', last_error = '',
                consecutive_failures = 0, last_check_at = NULL, fetch_rows = false"""
        )
        conn.execute(
            f"""{TAG} UPDATE mapping_schedule SET next_fetch_at = now()
                - interval '1 millisecond' * binding_id, lease_token = NULL,
                lease_expires_at = NULL, lease_holder = ''"""
        )
        conn.execute(f"{TAG} DELETE FROM mapping_fetchrun")
        conn.execute("VACUUM ANALYZE")
        conn.execute("SELECT pg_stat_statements_reset()")


# --- database counters ------------------------------------------------------------------


def _db_counters(conn: psycopg.Connection) -> dict:
    conn.execute("SELECT pg_stat_clear_snapshot()")
    row = conn.execute(
        f"""{TAG} SELECT xact_commit, xact_rollback, sessions FROM pg_stat_database
            WHERE datname = current_database()"""
    ).fetchone()
    return {"xact_commit": row[0], "xact_rollback": row[1], "sessions": row[2]}


def _statements(conn: psycopg.Connection) -> list[tuple[str, int, bool, int]]:
    """(normalised text, calls, top level, rows) of every statement run in the database.

    Top level = sent by a client; nested = run inside a function or trigger (the mailmap
    trigger's query, the foreign-key checks of an INSERT), counted apart.
    """
    rows = conn.execute(
        f"""{TAG} SELECT query, calls, toplevel, rows FROM pg_stat_statements s
            JOIN pg_database d ON d.oid = s.dbid
            WHERE d.datname = current_database() AND query NOT LIKE %s
              AND query NOT LIKE '%%pg_stat_statements%%'
            ORDER BY calls DESC""",
        [f"%{TAG}%"],
    ).fetchall()
    # Whole texts: the batched release names mapping_binding some 300-500 characters in.
    return [(" ".join(q.split()), calls, top, n) for q, calls, top, n in rows]


def _done(conn: psycopg.Connection) -> tuple[int, int]:
    """(bindings polled, of which not OK): a poll's release sets last_check_at (reset: NULL)."""
    row = conn.execute(
        f"{TAG} SELECT count(*), count(*) FILTER (WHERE b.state <> 'ok') FROM mapping_binding b"
        " JOIN mapping_schedule s ON s.binding_id = b.id"
        " WHERE b.last_check_at IS NOT NULL AND s.lease_token IS NULL"
    ).fetchone()
    return row[0], row[1]


def _releases(top: list[tuple[str, int, bool, int]]) -> int:
    """Bindings given back at the end of a poll, from pg_stat_statements: rows of the status
    writes that end a fetch (a claimer's batch, ``WITH … UPDATE mapping_binding … RETURNING``,
    or a single run's ORM ``UPDATE "mapping_binding"``)."""
    return sum(
        rows
        for query, _, is_top, rows in top
        if is_top
        and ("UPDATE mapping_binding" in query or 'UPDATE "mapping_binding"' in query)
        and "last_check_at" in query
    )


# --- processes --------------------------------------------------------------------------


class _Celery:
    """A `celery` process (worker or beat) with its log in the work directory."""

    def __init__(self, argv: list[str], env: dict[str, str], log: Path) -> None:
        self.log = log
        self.process = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "aamail", *argv],
            cwd=REPO,
            env=env,
            stdout=log.open("wb"),
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )

    @property
    def pid(self) -> int:
        return self.process.pid

    def wait_for(self, text: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if text in self.log.read_text(errors="replace"):
                return
            if self.process.poll() is not None:
                break
            time.sleep(0.1)
        raise RuntimeError(f"celery did not say {text!r}: {self.log.read_text()[-2000:]}")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)  # warm shutdown
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def _tick_env(tick_seconds: int, sessions: int) -> dict[str, str]:
    # Beat reads the period, the claimers the sessions: both get both.
    return {
        "SCHEDULER_TICK_SECONDS": str(tick_seconds),
        "FETCH_SESSIONS_PER_PROCESS": str(sessions),
        "FETCH_LAG_ACCEPTABLE_SECONDS": str(max(120, tick_seconds)),
    }


def start_worker(
    env: PollEnv,
    concurrency: int,
    stats: Path,
    name: str,
    tick: dict[str, str],
    persistent: str = "",
) -> _Celery:
    # The deployed command line (docker-compose.yml, scripts/run.sh).
    argv = ["worker", "-Q", "celery,fetch", "--concurrency", str(concurrency)]
    argv += ["--loglevel", "INFO", "-n", f"{name}@%h"]
    full = {**env.django_env(stats, PERSISTENT[persistent]["conn_max_age"]), **tick}
    full.update(PERSISTENT[persistent]["env"])
    worker = _Celery(argv, full, env.work / f"{name}-worker.log")
    worker.wait_for("ready.")
    return worker


def start_beat(env: PollEnv, name: str, tick: dict[str, str]) -> _Celery:
    schedule = env.work / f"{name}-beat-schedule"
    argv = ["beat", "--loglevel", "INFO", "--schedule", str(schedule)]
    return _Celery(argv, {**env.django_env(), **tick}, env.work / f"{name}-beat.log")


# --- the product run --------------------------------------------------------------------


# Today's code with connections kept between tasks, by configuration alone. Django's
# CONN_MAX_AGE (django-environ reads it from DATABASE_URL) is what one would try first;
# Celery's Django fix-up closes the connection before and after every task whatever it
# says, unless CELERY_DB_REUSE_MAX is set (celery/fixups/django.py, close_database).
PERSISTENT = {
    "": {"conn_max_age": None, "env": {}},
    "CONN_MAX_AGE": {"conn_max_age": 600, "env": {}},
    "CELERY_DB_REUSE_MAX": {"conn_max_age": 600, "env": {"SCALE_DB_REUSE_MAX": "1000"}},
}


@dataclass
class ProductRun:
    concurrency: int  # worker processes (prefork children), each a claimer when busy
    bindings: int
    tick_seconds: int
    sessions: int  # FETCH_SESSIONS_PER_PROCESS
    persistent: str = ""  # "": shipped (a new connection per task); else a PERSISTENT key
    polls: int = 0
    failed: int = 0
    seconds: float = 0.0  # first tick to last fetch
    steady_polls_per_s: float = 0.0
    cpu_s: dict[str, float] = field(default_factory=dict)
    statements: int = 0  # sent by clients (top level)
    nested_statements: int = 0  # run by triggers and functions inside those
    top_statements: list[tuple[str, int, bool, int]] = field(default_factory=list)
    db: dict[str, int] = field(default_factory=dict)
    tasks: dict[str, dict] = field(default_factory=dict)
    memory: list[dict] = field(default_factory=list)
    twice: int = 0  # bindings fetched more than once
    history_rows: int = 0  # FetchRun rows written (an empty poll writes none)
    note: str = ""

    def per_poll(self, value: float) -> float:
        return value / self.polls if self.polls else 0.0


def _cpu(env: PollEnv, worker: _Celery, beat: _Celery | None) -> dict[str, float]:
    return {
        "worker": scale_proc.tree_cpu_seconds(worker.pid),
        "beat": scale_proc.tree_cpu_seconds(beat.pid) if beat else 0.0,
        "postgres": env.pg.cpu_seconds(),
        "redis": env.redis.cpu_seconds(),
        "pop3 server": env.pop_cpu(),
    }


def product_run(
    env: PollEnv,
    concurrency: int,
    *,
    tick_seconds: int,
    sessions: int,
    timeout: float,
    log,
    persistent: str = "",
) -> ProductRun:
    """All bindings due; beat + worker until every one was polled once (see module doc)."""
    name = f"c{concurrency}x{sessions}"
    stats = env.work / f"{name}-stats"
    shutil.rmtree(stats, ignore_errors=True)
    stats.mkdir()
    reset(env)
    run = ProductRun(concurrency, env.bindings, tick_seconds, sessions, persistent)
    tick = _tick_env(tick_seconds, sessions)
    worker = start_worker(env, concurrency, stats, name, tick, persistent)
    beat = None
    try:
        with psycopg.connect(env.url, autocommit=True) as conn:
            conn.execute("SELECT pg_stat_statements_reset()")
            before_db, before_cpu = _db_counters(conn), _cpu(env, worker, None)
            beat = start_beat(env, name, tick)
            start = time.monotonic()
            # Beat's own start-up (Python, Django, Celery imports) is not part of a poll.
            beat.wait_for("beat: Starting")
            before_cpu["beat"] = scale_proc.tree_cpu_seconds(beat.pid)
            series = [(start, 0)]
            deadline = start + timeout
            while time.monotonic() < deadline:
                time.sleep(0.25)
                done, _ = _done(conn)
                series.append((time.monotonic(), done))
                if not run.memory and done >= env.bindings // 2:
                    run.memory = _memory(worker.pid)
                if done >= env.bindings:
                    break
            run.seconds = series[-1][0] - start
            after_cpu = _cpu(env, worker, beat)
            run.cpu_s = {k: after_cpu[k] - before_cpu.get(k, 0.0) for k in after_cpu}
            after_db = _db_counters(conn)
            run.db = {k: after_db[k] - before_db[k] for k in after_db}
            run.top_statements = _statements(conn)
            run.statements = sum(calls for _, calls, top, _ in run.top_statements if top)
            run.nested_statements = sum(c for _, c, top, _ in run.top_statements if not top)
            run.polls, run.failed = _done(conn)
            run.twice = max(0, _releases(run.top_statements) - run.polls)
            run.history_rows = conn.execute(
                f"{TAG} SELECT count(*) FROM mapping_fetchrun"
            ).fetchone()[0]
        run.steady_polls_per_s = steady_rate(series, env.bindings)
        if run.polls < env.bindings:
            run.note = f"only {run.polls} of {env.bindings} polled within {timeout:g} s"
    finally:
        if beat is not None:
            beat.stop()
        worker.stop()
    run.tasks = scale_worker.collect(stats)
    log(
        f"  product {name}: {run.polls} polls, {run.steady_polls_per_s:.1f}/s steady, "
        f"{1000 * run.per_poll(sum(run.cpu_s.values())):.1f} ms CPU/poll"
    )
    return run


def steady_rate(series: list[tuple[float, int]], total: int) -> float:
    """Polls per second between 10 % and 90 % of `total` done (interpolated)."""

    def when(target: float) -> float | None:
        for (t0, n0), (t1, n1) in itertools.pairwise(series):
            if n0 < target <= n1:
                return t0 + (t1 - t0) * (target - n0) / (n1 - n0)
        return None

    low, high = when(0.1 * total), when(0.9 * total)
    if low is None or high is None or high <= low:
        return 0.0
    return 0.8 * total / (high - low)


def _memory(worker_pid: int) -> list[dict]:
    found = []
    for pid in [worker_pid, *scale_proc.descendants(worker_pid)]:
        mem = scale_proc.memory(pid)
        if mem is not None:
            role = "main" if pid == worker_pid else "child"
            found.append({"pid": pid, "role": role, "rss_mb": mem.rss_mb, "pss_mb": mem.pss_mb})
    return found


def default_tick_run(env: PollEnv, *, tick_seconds: int, tick_limit: int, periods: int, log):
    """Beat as configured by default: bindings fetched per second over whole tick periods."""
    name = "default-tick"
    stats = env.work / f"{name}-stats"
    stats.mkdir(exist_ok=True)
    reset(env)
    tick = _tick_env(tick_seconds, tick_limit)
    worker = start_worker(env, 4, stats, name, tick)
    beat = start_beat(env, name, tick)
    try:
        with psycopg.connect(env.url, autocommit=True) as conn:
            first = None
            deadline = time.monotonic() + tick_seconds * (periods + 2) + 30
            while first is None and time.monotonic() < deadline:
                time.sleep(0.2)
                first = conn.execute(
                    f"{TAG} SELECT min(started_at) FROM mapping_fetchrun"
                ).fetchone()[0]
            if first is None:
                raise RuntimeError("no fetch started under the default tick")
            # Wait for `periods` whole periods after the first fetch, plus the time the
            # last period's fetches need to start.
            time.sleep(max(0.0, tick_seconds * periods - _age(conn, first)) + 1.0)
            started = conn.execute(
                f"{TAG} SELECT count(*) FROM mapping_fetchrun WHERE started_at"
                " < %s + make_interval(secs => %s)",
                [first, tick_seconds * periods - 0.5],
            ).fetchone()[0]
    finally:
        beat.stop()
        worker.stop()
    rate = started / (tick_seconds * periods)
    log(f"  default tick ({tick_limit} per {tick_seconds} s): {rate:.1f} bindings/s")
    return {
        "tick_seconds": tick_seconds,
        "tick_limit": tick_limit,
        "periods": periods,
        "started": started,
        "bindings_per_s": rate,
    }


def connection_cost(env: PollEnv, count: int) -> dict:
    """PostgreSQL CPU and client time of one new connection (connect, one query, close)."""
    before = env.pg.cpu_seconds()
    start = time.perf_counter()
    for _ in range(count):
        with psycopg.connect(env.url, autocommit=True) as conn:
            conn.execute(f"{TAG} SELECT 1")
    wall = time.perf_counter() - start
    cpu = env.pg.cpu_seconds() - before
    return {"connections": count, "pg_cpu_ms": 1000 * cpu / count, "wall_ms": 1000 * wall / count}


def _age(conn: psycopg.Connection, moment) -> float:
    row = conn.execute(f"{TAG} SELECT extract(epoch FROM now() - %s)", [moment]).fetchone()
    return float(row[0])


# --- the raw POP3 client floor ----------------------------------------------------------


def raw_poll(
    env: PollEnv,
    mode: str,
    sessions: int,
    seconds: float,
    *,
    processes: int = 1,
    port: int | None = None,
    ca: Path | None = None,
) -> dict:
    """`processes` client processes of `sessions` sessions each, polling for `seconds`."""
    argv = [sys.executable, "-m", "bench.scale_pop3", "poll", "--port", str(port or env.pop_port)]
    argv += ["--mode", mode, "--sessions", str(sessions), "--seconds", str(seconds)]
    if ca is not None:
        argv += ["--ca", str(ca)]
    server_before = env.pop_cpu()
    procs = [
        subprocess.Popen(argv, cwd=REPO, stdout=subprocess.PIPE, text=True)
        for _ in range(processes)
    ]
    results = [json.loads(p.communicate()[0]) for p in procs]
    server_cpu = env.pop_cpu() - server_before
    polls = sum(r["polls"] for r in results)
    wall = statistics.mean(r["seconds"] for r in results)
    return {
        "mode": mode,
        "sessions": sessions,
        "processes": processes,
        "tls": ca is not None,
        "polls": polls,
        "polls_per_s": polls / wall if wall else 0.0,
        "client_cpu_ms": 1000 * sum(r["cpu_s"] for r in results) / polls if polls else 0.0,
        "server_cpu_ms": 1000 * server_cpu / polls if polls else 0.0,
        "failed": sum(r["failed"] for r in results),
    }


def raw_hold(env: PollEnv, mode: str, sessions: int, port: int | None = None) -> dict:
    """RSS of one client process holding `sessions` logged-in sessions open."""
    argv = [sys.executable, "-m", "bench.scale_pop3", "hold", "--port", str(port or env.pop_port)]
    argv += ["--mode", mode, "--sessions", str(sessions)]
    result = json.loads(subprocess.run(argv, cwd=REPO, capture_output=True, text=True).stdout)
    grown = result["rss_held_mb"] - result["rss_before_mb"]
    result["mb_per_100_sessions"] = 100 * grown / sessions
    return result


def sessions_memory(env: PollEnv, sessions: int, log) -> dict:
    """RSS of one claimer process with `sessions` session threads (bench/scale_sessions.py)."""
    reset(env)
    full = {**env.django_env(), **_tick_env(1, sessions)}
    argv = [sys.executable, "-m", "bench.scale_sessions", "--sessions", str(sessions)]
    done = subprocess.run(
        argv, cwd=REPO, env=full, capture_output=True, text=True, check=True, timeout=300
    )
    result = json.loads(done.stdout.strip().splitlines()[-1])
    log(
        f"  sessions memory: {result['threads_most']} session threads, "
        f"{result['mb_per_100_sessions']:.1f} MB per 100 sessions above a "
        f"{result['baseline_mb']:.0f} MB process"
    )
    return result
