"""Servers of the scale benchmark: wt_scale_* databases, a private PostgreSQL, a private Redis.

The claim measurements use databases named ``wt_scale_*`` on the machine's PostgreSQL (the
brief's shared server, never another agent's database). The poll measurement needs the CPU
and the statements of PostgreSQL per poll, which a shared server cannot give: other
sessions' backends mix with ours, and ``pg_stat_statements`` is not preloaded there. So it
runs on a private cluster (``initdb`` in a temporary directory, started as the ``postgres``
user on a free port, ``pg_stat_statements`` preloaded) configured like the shared server,
and a private ``redis-server``, both children of this benchmark and stopped at its end.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psycopg

from bench import scale_proc

REPO = Path(__file__).resolve().parent.parent
PG_BIN = Path("/usr/lib/postgresql/15/bin")
# Settings copied from the shared server when it is reachable, so that the private cluster
# performs like the one the claim measurements ran on.
COPIED_SETTINGS = (
    "shared_buffers",
    "work_mem",
    "effective_cache_size",
    "synchronous_commit",
    "fsync",
    "full_page_writes",
    "wal_level",
    "max_wal_size",
    "checkpoint_timeout",
    "random_page_cost",
    "jit",
    "autovacuum",
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def url_with_db(url: str, name: str) -> str:
    """`url` (postgres://user@host:port/anything) pointing at database `name`."""
    head, _, _ = url.rpartition("/")
    return f"{head}/{name}"


def database_recreate(url: str) -> None:
    """Drop and create the database `url` names (its name must start with wt_scale)."""
    name = url.rpartition("/")[2]
    if not name.startswith("wt_scale"):
        raise ValueError(f"refusing to recreate {name!r}: benchmark databases start with wt_scale")
    with psycopg.connect(url_with_db(url, "postgres"), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')


def database_drop(url: str) -> None:
    name = url.rpartition("/")[2]
    if not name.startswith("wt_scale"):
        raise ValueError(f"refusing to drop {name!r}")
    with psycopg.connect(url_with_db(url, "postgres"), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def database_exists(url: str) -> bool:
    name = url.rpartition("/")[2]
    with psycopg.connect(url_with_db(url, "postgres"), autocommit=True) as conn:
        row = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone()
    return row is not None


def migrate(url: str, env: dict[str, str] | None = None) -> None:
    """The product's schema, by the product's migrations (``manage.py migrate``)."""
    full = {**os.environ, **(env or {}), "DATABASE_URL": url}
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "--verbosity", "0"],
        cwd=REPO,
        env=full,
        check=True,
    )


def shared_settings(url: str) -> dict[str, str]:
    """The COPIED_SETTINGS of the server `url` points at ({} when unreachable)."""
    try:
        with psycopg.connect(url_with_db(url, "postgres"), connect_timeout=3) as conn:
            rows = conn.execute(
                "SELECT name, setting, unit FROM pg_settings WHERE name = ANY(%s)",
                [list(COPIED_SETTINGS)],
            ).fetchall()
    except psycopg.Error:
        return {}
    result = {}
    for name, setting, unit in rows:
        if unit == "8kB":
            setting = f"{int(setting) * 8}kB"
        elif unit in ("kB", "MB", "s", "ms"):
            setting = f"{setting}{unit}"
        result[name] = setting
    return result


class PrivatePostgres:
    """A throwaway PostgreSQL 15 cluster with pg_stat_statements; see the module doc."""

    def __init__(
        self,
        *,
        like: str | None = None,
        user: str = "postgres",
        overrides: dict[str, str] | None = None,
    ) -> None:
        self.like, self.user, self.overrides = like, user, overrides or {}
        self.dir: Path | None = None
        self.port = 0
        self.pid = 0
        self.settings: dict[str, str] = {}

    @staticmethod
    def available() -> str | None:
        """Why a private cluster cannot run here, or None."""
        if os.geteuid() != 0:
            return "a private PostgreSQL is started as the postgres user: run as root"
        if not (PG_BIN / "initdb").exists():
            return f"{PG_BIN}/initdb is missing (Debian package postgresql-15)"
        return None

    def url(self, name: str) -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/{name}"

    def __enter__(self) -> PrivatePostgres:
        self.dir = Path(tempfile.mkdtemp(prefix="wt_scale_pg_"))
        shutil.chown(self.dir, self.user)
        data = self.dir / "data"
        initdb = [str(PG_BIN / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres"]
        self._as_user([*initdb, "--no-sync", "-E", "UTF8", "--locale=C.UTF-8"])
        self.port = free_port()
        self.settings = {**(shared_settings(self.like) if self.like else {}), **self.overrides}
        options = {
            **self.settings,
            "port": str(self.port),
            "listen_addresses": "127.0.0.1",
            "unix_socket_directories": str(self.dir),
            "shared_preload_libraries": "pg_stat_statements",
            "pg_stat_statements.track": "all",
            "max_connections": "200",
        }
        with (data / "postgresql.auto.conf").open("a") as conf:
            for name, value in options.items():
                conf.write(f"{name} = '{value}'\n")
        self._as_user(
            [str(PG_BIN / "pg_ctl"), "-D", str(data), "-l", str(self.dir / "log"), "-w", "start"]
        )
        self.pid = int((data / "postmaster.pid").read_text().split()[0])
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self.dir is None:
            return
        with contextlib.suppress(subprocess.CalledProcessError):
            self._as_user(
                [str(PG_BIN / "pg_ctl"), "-D", str(self.dir / "data"), "-m", "immediate", "stop"]
            )
        shutil.rmtree(self.dir, ignore_errors=True)
        self.dir = None

    def _as_user(self, argv: list[str]) -> None:
        subprocess.run(
            ["runuser", "-u", self.user, "--", *argv],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            cwd=self.dir,
        )

    def cpu_seconds(self) -> float:
        """CPU of the whole cluster: postmaster, auxiliaries, backends live and exited."""
        return scale_proc.tree_cpu_seconds(self.pid)

    def create_database(self, name: str) -> str:
        with psycopg.connect(self.url("postgres"), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        url = self.url(name)
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        return url


class PrivateRedis:
    """A throwaway redis-server on a free port (no persistence); its CPU is ours alone."""

    BINARY = "redis-server"

    def __init__(self) -> None:
        self.process: subprocess.Popen | None = None
        self.port = 0

    @classmethod
    def available(cls) -> str | None:
        return None if shutil.which(cls.BINARY) else "redis-server is not installed"

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def pid(self) -> int:
        return self.process.pid if self.process else 0

    def __enter__(self) -> PrivateRedis:
        self.port = free_port()
        argv = [self.BINARY, "--port", str(self.port), "--bind", "127.0.0.1", "--save", ""]
        self.process = subprocess.Popen(
            [*argv, "--appendonly", "no", "--daemonize", "no", "--loglevel", "warning"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            cwd=tempfile.gettempdir(),
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port)):
                return self
            time.sleep(0.05)
        raise RuntimeError("the private redis-server did not start")

    def __exit__(self, *exc_info: object) -> None:
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
            self.process = None

    def cpu_seconds(self) -> float:
        return scale_proc.tree_cpu_seconds(self.pid) if self.process else 0.0
