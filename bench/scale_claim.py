"""Claim floors on PostgreSQL, and the product's claim measured against them (issue 13, 1).

Tables (one ``wt_scale_claim`` database on the shared server, filled in SQL for speed):

- the product's own tables (``manage.py migrate``): ``domains_domain`` (one per 20
  accounts), ``accounts_account``, ``mapping_binding`` (one binding per account) and its
  queue row in ``mapping_schedule``, of which ``due`` are due (``next_fetch_at`` spread over
  the last 5 minutes, most overdue first), 2 % of the rest disabled (``next_fetch_at``
  empty), the rest due in an hour or more;
- ``scale_floor``: the issue's floor table, only the scheduling columns (id, enabled,
  next_fetch_at, lease_token, lease_expires_at), the same rows, a partial index on
  ``next_fetch_at WHERE enabled`` and nothing else;
- ``scale_due``: the due rows' original ``next_fetch_at``, to put them back after a claim.

Claim variants (``VARIANTS``):

- ``floor``: the single statement ``UPDATE … WHERE id IN (SELECT … ORDER BY next_fetch_at
  LIMIT n FOR UPDATE SKIP LOCKED) RETURNING id`` on ``scale_floor``, as PostgreSQL plans it
  (``floor_plan`` records how: ANALYZE's sample decides between a nested loop over the
  picked ids and a hash join over the whole table, 6.5 against 17 ms for 500 of 100,000);
- ``floor-sql-schedule``: the same statement on the product's ``mapping_schedule`` (what
  its extra column, foreign key and own index cost, without the binding join);
- ``product-statement``: the product's claim statement (``mapping.claim.claim_sql``) sent
  the way the floors are, its rows left as tuples: what the database and the wire cost,
  without the models and leases Python makes of them;
- ``product``: ``mapping.claim.bindings_claim`` as a claimer calls it (issue 13: one
  statement, every claimed row with its lease, the binding rows returned as models).

One more, for the concurrent drains only: ``product-cycle``, ``mapping.claim.bindings_claim``
then the releases the claimed bindings' empty polls end with, written as a claimer writes
them (``status.QuietReleases``: one fenced ``UPDATE … FROM unnest`` for the batch,
autocommit), what the database carries per empty poll.

The stage-1 claim and dispatcher (``before``) and the stage-2 statements on the binding
row (``stage2-*``, ``floor-sql-binding``) read and wrote the binding's own due time and
lease, which the schedule table replaced (stage 4): they cannot run on this schema any
more. Their last figures are in bench/README-scale.md.

Each claimer is its own process (``python -m bench.scale_claim serve``, Django set up on
the claim database), driven by JSON lines on stdin/stdout, so concurrent claimers are
concurrent processes with their own connections, as workers on several boxes would be.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

PER_DOMAIN = 20  # accounts per domain: an office
PERMUTE = 7919  # prime: (i * PERMUTE) % rows spreads the due rows over the whole table
LEASE_SECONDS = 90  # the product's FETCH_LEASE_SECONDS default (3 x POP3_TIMEOUT)

FLOOR = "floor"
FLOOR_SCHEDULE = "floor-sql-schedule"
PRODUCT_STATEMENT = "product-statement"
PRODUCT = "product"
PRODUCT_CYCLE = "product-cycle"
VARIANTS = [FLOOR, FLOOR_SCHEDULE, PRODUCT_STATEMENT, PRODUCT]
DRAIN_VARIANTS = [FLOOR, FLOOR_SCHEDULE, PRODUCT, PRODUCT_CYCLE]
TABLE = {
    FLOOR: "scale_floor",
    FLOOR_SCHEDULE: "mapping_schedule",
    PRODUCT_STATEMENT: "mapping_schedule",
    PRODUCT: "mapping_schedule",
    PRODUCT_CYCLE: "mapping_schedule",
}
HASHED = "hash join over the whole table"  # a floor_plan no claim needs to beat
KEY = {"scale_floor": "id", "mapping_schedule": "binding_id"}
# What makes a row claimable besides its time: the floor keeps the issue's `enabled`; a
# schedule row of a disabled binding has no due time (the partial index leaves it out).
DUE = {"scale_floor": "enabled AND ", "mapping_schedule": ""}

# The claim marker is the lease's expiry, as the product's (mapping.claim).
FLOOR_SQL = """
UPDATE {table} SET next_fetch_at = %(lease_until)s, lease_token = %(token)s,
       lease_expires_at = %(lease_until)s
WHERE {key} IN (
    SELECT {key} FROM {table}
    WHERE {due}next_fetch_at <= %(now)s
      AND (lease_token IS NULL OR lease_expires_at < %(now)s)
    ORDER BY next_fetch_at
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED)
RETURNING {key}
"""


def floor_sql(table: str) -> str:
    """The floor's single statement on `table` (``scale_floor`` or ``mapping_schedule``)."""
    return FLOOR_SQL.format(table=table, key=KEY[table], due=DUE[table])


def floor_plan(url: str, table: str, limit: int) -> str:
    """How PostgreSQL plans the floor's statement on `table` for `limit` rows: the join that
    finds the picked rows again, in words."""
    now = datetime.now(UTC)
    params = {"now": now, "lease_until": now + timedelta(seconds=LEASE_SECONDS)}
    params |= {"token": uuid.uuid4(), "limit": limit}
    with psycopg.connect(url, autocommit=True) as conn:
        plan = conn.execute("EXPLAIN (FORMAT JSON) " + floor_sql(table), params).fetchone()[0]
    text = json.dumps(plan)
    if "Hash Semi Join" in text or "Hash Join" in text:
        return HASHED
    if "Nested Loop" in text:
        return "nested loop over the picked ids"
    return "other"


def floor_plans(url: str, limits: list[int]) -> dict[str, str]:
    """``floor_plan`` of ``scale_floor`` per limit, keyed as JSON keeps them (text)."""
    return {str(n): floor_plan(url, "scale_floor", n) for n in limits}


# --- filling ---------------------------------------------------------------------------


def fill(url: str, rows: int, due: int) -> dict:
    """Fill the product tables and the floor table; return what was made."""
    if rows % PERMUTE == 0 or due >= rows:
        raise ValueError("rows must not be a multiple of 7919 and due < rows")
    started = time.perf_counter()
    domains = -(-rows // PER_DOMAIN)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "TRUNCATE domains_domain, accounts_account, mapping_binding, mapping_schedule,"
            " mapping_fetchrun, mapping_seenuidl RESTART IDENTITY CASCADE"
        )
        conn.execute("DROP TABLE IF EXISTS scale_floor, scale_due")
        conn.execute(
            """
            INSERT INTO domains_domain (name, domain_type, pop3_host, pop3_port, pop3_security,
                smtp_host, smtp_port, smtp_security, is_active, created_at, updated_at)
            SELECT 'office' || d || '.scale.example', 'map', 'pop.isp.example', 995, 'ssl',
                'smtp.isp.example', 587, 'starttls', true, now(), now()
            FROM generate_series(1, %(domains)s) d
            """,
            {"domains": domains},
        )
        conn.execute(
            """
            INSERT INTO accounts_account (localpart, display_name, kind, password, quota_mb,
                is_active, created_at, updated_at, domain_id)
            SELECT 'user' || i, '', 'normal', '!', 0, true, now(), now(),
                1 + (i - 1) / %(per)s
            FROM generate_series(1, %(rows)s) i
            """,
            {"rows": rows, "per": PER_DOMAIN},
        )
        # A Fernet token of a short password is about this long; claims never decrypt it.
        conn.execute(
            """
            INSERT INTO mapping_binding (host, port, security, username, password_encrypted,
                leave_policy, delete_after_days, fetch_interval_minutes, enabled, smtp_host,
                smtp_port, smtp_security, smtp_username, smtp_password_encrypted,
                is_outgoing_relay, state, last_check_at, last_success_at, last_error,
                last_error_at, consecutive_failures, messages_fetched, bytes_fetched,
                created_at, updated_at, account_id)
            SELECT 'pop.isp.example', 995, 'ssl', 'user' || i, 'gAAAAA' || repeat('x', 114),
                'keep', NULL, 5, NOT (r >= %(due)s AND r %% 50 = 0), '', 587, 'starttls', '',
                '', false, 'ok', now() - interval '5 minutes', now() - interval '5 minutes',
                '', NULL, 0, 0, 0, now(), now(), i
            FROM (SELECT i, (i::bigint * %(permute)s) %% %(rows)s AS r
                  FROM generate_series(1, %(rows)s) i) s
            """,
            {"rows": rows, "due": due, "permute": PERMUTE},
        )
        # Every binding's queue row; r again from the account (= i above), not from the id.
        conn.execute(
            """
            INSERT INTO mapping_schedule (binding_id, next_fetch_at, lease_token,
                lease_expires_at, lease_holder)
            SELECT id,
                CASE WHEN NOT enabled THEN NULL
                     WHEN r < %(due)s
                     THEN now() - interval '1 second' * (300.0 * (%(due)s - r) / %(due)s)
                     ELSE now() + interval '1 hour'
                          + interval '1 second' * (300.0 * (r - %(due)s) / %(rest)s)
                END,
                NULL, NULL, ''
            FROM (SELECT id, enabled, (account_id::bigint * %(permute)s) %% %(rows)s AS r
                  FROM mapping_binding) b
            """,
            {"rows": rows, "due": due, "rest": rows - due, "permute": PERMUTE},
        )
        conn.execute(
            "CREATE TABLE scale_due AS SELECT binding_id AS id, next_fetch_at"
            " FROM mapping_schedule WHERE next_fetch_at <= now()"
        )
        conn.execute("ALTER TABLE scale_due ADD PRIMARY KEY (id)")
        conn.execute(
            """
            CREATE TABLE scale_floor (id bigint PRIMARY KEY, enabled boolean NOT NULL,
                next_fetch_at timestamptz, lease_token uuid, lease_expires_at timestamptz)
            """
        )
        conn.execute(
            "INSERT INTO scale_floor SELECT b.id, b.enabled, s.next_fetch_at, NULL, NULL"
            " FROM mapping_binding b JOIN mapping_schedule s ON s.binding_id = b.id"
        )
        conn.execute("CREATE INDEX scale_floor_due ON scale_floor (next_fetch_at) WHERE enabled")
        # The floor's index was built in one pass after its rows; the schedule's grew row by
        # row during the fill (half-full pages, out of order). Built alike, they differ only
        # in what the statements do.
        conn.execute("REINDEX TABLE mapping_schedule")
        conn.execute("VACUUM ANALYZE")
        made = conn.execute("SELECT count(*) FROM scale_due").fetchone()[0]
    return {"rows": rows, "due": made, "domains": domains, "fill_s": time.perf_counter() - started}


def reset(url: str, tables: list[str]) -> None:
    """Put every due row back (time and lease), then VACUUM so repeats start alike."""
    with psycopg.connect(url, autocommit=True) as conn:
        for table in tables:
            key = KEY[table]
            holder = ", lease_holder = ''" if table == "mapping_schedule" else ""
            conn.execute(
                f"""
                UPDATE {table} t SET next_fetch_at = s.next_fetch_at, lease_token = NULL,
                    lease_expires_at = NULL{holder}
                FROM scale_due s
                WHERE t.{key} = s.id AND (t.next_fetch_at IS DISTINCT FROM s.next_fetch_at
                                          OR t.lease_token IS NOT NULL)
                """
            )
            conn.execute(f"VACUUM {table}")
            if table == "mapping_schedule":  # product-cycle's releases wrote the bindings too
                conn.execute("VACUUM mapping_binding")


def checkpoint(url: str) -> None:
    """Before the reset: the first change of a page after a checkpoint writes the whole page
    to the WAL (a full-page image), and the reset that follows makes that first change to
    every page the claim will touch. Every variant is then measured as in the steady state of
    a schedule (each page changed many times per checkpoint, its image written once), not
    hanging on where the last timed checkpoint fell: without it the same floor claim
    measured 253 ms in one run and 740 ms after a checkpoint."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CHECKPOINT")


# --- the claimer process ---------------------------------------------------------------


class _Claimer:
    """Runs in ``serve``: one connection, claims of any variant on demand."""

    def __init__(self, url: str) -> None:
        self.conn = psycopg.connect(url, autocommit=True)
        self.statements = 0
        self.sql: list[str] = []

    def claim(self, variant: str, limit: int) -> tuple[list[int], float, int]:
        """One claim; returns (ids, seconds, statements sent by the client)."""
        from django.utils import timezone

        if variant in (PRODUCT, PRODUCT_CYCLE):
            from mapping import claim, status

            self.statements, self.sql = 0, []
            start = time.perf_counter()
            claimed = claim.bindings_claim(timezone.now(), limit)
            if variant == PRODUCT_CYCLE:  # as a claimer: every poll empty, one release batch
                releases = status.QuietReleases()
                for binding, lease in claimed:
                    run = status.run_new(binding, "schedule")
                    status.record_success(
                        lease, run, next_in=timedelta(minutes=5), one_at_a_time=False,
                        rows_left=False, quiet=True, releases=releases,
                    )  # fmt: skip
                if releases.flush() != len(claimed):
                    raise RuntimeError("a release lost its lease")
            ids = [binding.pk for binding, _ in claimed]
            return ids, time.perf_counter() - start, self.statements
        now = timezone.now()
        until = now + timedelta(seconds=LEASE_SECONDS)
        if variant == PRODUCT_STATEMENT:
            from mapping import claim

            sql = claim.claim_sql("postgresql")
            params = [uuid.uuid4(), until, "bench", until, now, now, limit]
        else:
            sql = floor_sql(TABLE[variant])
            params = {"now": now, "lease_until": until, "token": uuid.uuid4(), "limit": limit}
        start = time.perf_counter()
        # prepare=False: sent the way Django sends it (no server-side prepared statement).
        ids = [row[0] for row in self.conn.execute(sql, params, prepare=False).fetchall()]
        return ids, time.perf_counter() - start, 1

    def count(self, execute, sql, params, many, context):
        self.statements += 1
        self.sql.append(sql)
        return execute(sql, params, many, context)


def serve(url: str) -> None:
    """Answer JSON commands on stdin, one per line, until EOF."""
    import django

    os.environ["DATABASE_URL"] = url
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "aamail.settings")
    django.setup()
    from django.db import connection

    claimer = _Claimer(url)
    connection.ensure_connection()
    connection.execute_wrappers.append(claimer.count)
    print(json.dumps({"ready": os.getpid()}), flush=True)
    for line in sys.stdin:
        command = json.loads(line)
        if command["op"] == "latency":
            ids, seconds, statements = claimer.claim(command["variant"], command["limit"])
            result = {"ids": ids, "seconds": seconds, "statements": statements}
            result["sql"] = claimer.sql if command["variant"] == PRODUCT else []
        elif command["op"] == "drain":
            claims, timed_out = _drain(claimer, command)
            result = {"claims": claims, "timed_out": timed_out}
        else:
            result = {"error": f"unknown op {command['op']}"}
        print(json.dumps(result), flush=True)


def _drain(claimer: _Claimer, command: dict) -> tuple[list[list], bool]:
    """Claim batches until one comes back empty or time is up; ([start, end, ids] per
    claim, whether time ran out first)."""
    while time.monotonic() < command["start_at"]:  # CLOCK_MONOTONIC: one clock per machine
        time.sleep(0.001)
    until = command["start_at"] + command["max_seconds"]
    claims = []
    while True:
        start = time.monotonic()
        ids, _, _ = claimer.claim(command["variant"], command["batch"])
        claims.append([start, time.monotonic(), ids])
        if not ids:
            return claims, False
        if time.monotonic() > until:
            return claims, True


class ClaimerPool:
    """`n` claimer processes on the claim database."""

    def __init__(self, url: str, n: int, env: dict[str, str]) -> None:
        full = {**os.environ, **env, "DATABASE_URL": url, "PYTHONPATH": str(REPO)}
        self.procs = [
            subprocess.Popen(
                [sys.executable, "-m", "bench.scale_claim", "serve", url],
                cwd=REPO,
                env=full,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
            for _ in range(n)
        ]
        for proc in self.procs:
            line = proc.stdout.readline()
            if not line:
                raise RuntimeError("a claimer process did not start (see its stderr above)")

    def ask(self, index: int, command: dict) -> None:
        proc = self.procs[index]
        proc.stdin.write(json.dumps(command) + "\n")
        proc.stdin.flush()

    def answer(self, index: int) -> dict:
        line = self.procs[index].stdout.readline()
        if not line:
            raise RuntimeError("a claimer process died (see its stderr above)")
        return json.loads(line)

    def call(self, index: int, command: dict) -> dict:
        self.ask(index, command)
        return self.answer(index)

    def close(self) -> None:
        for proc in self.procs:
            proc.stdin.close()
        for proc in self.procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


# --- measurements ----------------------------------------------------------------------


@dataclass
class Latency:
    variant: str
    limit: int
    seconds: list[float] = field(default_factory=list)
    statements: int = 0
    short: int = 0  # claims that returned fewer rows than were due and asked for

    @property
    def median_ms(self) -> float:
        return statistics.median(self.seconds) * 1000

    @property
    def quartiles_ms(self) -> tuple[float, float]:
        """The middle half of the repeats (first and third quartile): how far one claim
        after a reset wanders on this machine."""
        if len(self.seconds) < 2:
            return (self.median_ms, self.median_ms)
        low, _, high = statistics.quantiles(self.seconds, n=4)
        return (low * 1000, high * 1000)


def measure_latency(
    url: str, pool: ClaimerPool, limits: list[int], variants: list[str], repeat: int, log
) -> list[Latency]:
    """One claimer, one claim per repeat and variant (rotated), from a reset table."""
    results = {(v, n): Latency(v, n) for v in variants for n in limits}
    for rep in range(repeat):
        for limit in limits:
            order = variants[rep % len(variants) :] + variants[: rep % len(variants)]
            for variant in order:
                checkpoint(url)
                reset(url, [TABLE[variant]])
                got = pool.call(0, {"op": "latency", "variant": variant, "limit": limit})
                item = results[variant, limit]
                item.seconds.append(got["seconds"])
                item.statements = got["statements"]
                item.short += len(got["ids"]) < limit
        log(f"  claim latency: repeat {rep + 1}/{repeat} done")
    reset(url, sorted(set(TABLE.values())))
    return list(results.values())


@dataclass
class Drain:
    variant: str
    claimers: int
    batch: int
    due: int
    claims: int = 0  # claims that returned rows
    rows: int = 0
    seconds: float = 0.0
    duplicates: int = 0
    short: int = 0  # claims that came back short while rows were still due
    missed: int = 0  # due rows nobody claimed (0 when the drain was stopped by time)
    timed_out: bool = False  # stopped after max_seconds with rows still due

    @property
    def claims_per_s(self) -> float:
        return self.claims / self.seconds if self.seconds else 0.0

    @property
    def rows_per_s(self) -> float:
        return self.rows / self.seconds if self.seconds else 0.0


def measure_drain(
    url: str,
    pool: ClaimerPool,
    variant: str,
    claimers: int,
    batch: int,
    due: int,
    max_seconds: float,
) -> Drain:
    """`claimers` processes claim batches of a reset table at once until none is due (or
    `max_seconds` passed)."""
    reset(url, [TABLE[variant]])
    start_at = time.monotonic() + 0.3
    command = {"op": "drain", "variant": variant, "batch": batch, "start_at": start_at}
    command["max_seconds"] = max_seconds
    for index in range(claimers):
        pool.ask(index, command)
    answers = [pool.answer(index) for index in range(claimers)]
    claims = [tuple(c) for answer in answers for c in answer["claims"]]
    timed_out = any(answer["timed_out"] for answer in answers)
    return judge_drain(variant, claimers, batch, due, claims, timed_out)


def judge_drain(
    variant: str, claimers: int, batch: int, due: int, claims: list, timed_out: bool = False
) -> Drain:
    """Count rows, duplicates and short claims of a drain's (start, end, ids) claims.

    A claim is short when it returned fewer than `batch` rows although a claim that
    started after it ended still found rows: those rows were due, unlocked and unclaimed
    while it ran.
    """
    result = Drain(variant, claimers, batch, due, timed_out=timed_out)
    useful = [c for c in claims if c[2]]
    if not useful:
        return result
    seen: set[int] = set()
    for _, _, ids in useful:
        result.duplicates += sum(1 for i in ids if i in seen)
        seen.update(ids)
    result.claims, result.rows = len(useful), sum(len(ids) for _, _, ids in useful)
    result.missed = 0 if timed_out else max(0, due - len(seen))
    result.seconds = max(c[1] for c in useful) - min(c[0] for c in claims)
    last_useful_start = max(c[0] for c in useful)
    result.short = sum(1 for c in claims if len(c[2]) < batch and c[1] < last_useful_start)
    return result


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "serve":
        serve(sys.argv[2])
    else:
        sys.exit("usage: python -m bench.scale_claim serve DATABASE_URL")
