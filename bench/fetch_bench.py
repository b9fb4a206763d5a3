"""Fetch benchmark (issue 4, item 10): our fetch vs the durable floor, getmail6 and fetchmail.

    .venv/bin/python bench/fetch_bench.py            # full corpora (a few minutes)
    .venv/bin/python bench/fetch_bench.py --quick    # small corpora, smoke test

Starts a private Dovecot (tests/servers/dovecot.py), fills three mailboxes with the seeded
corpora of bench/corpus.py, then, against that one server in one run, times every tool on
every corpus from a fresh UIDL state, verifies every stored message byte for byte, prints
the table with ratios and PASS/FAIL per target, and writes bench/out/results.md (+ .json).
See bench/README.md for what is measured and how. Needs root (Dovecot's mail processes
run as uid 8; the peers run as the unprivileged user ``nobody``).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # run as a script: make `bench` and `tests` importable
    sys.path.insert(0, str(REPO))

from bench import corpus, ours, peers, proc, verify  # noqa: E402
from bench.fetch_report import (  # noqa: E402
    FETCHMAIL,
    FLOOR_DIRSYNC,
    FLOOR_DURABLE,
    FLOOR_NOSYNC,
    GETMAIL,
    IN_PROCESS,
    OURS,
    OURS_SSL,
    Run,
    aggregate,
    build_report,
)
from tests.servers.dovecot import Dovecot  # noqa: E402

PASSWORD = "bench-Pass-4711"
OUT = REPO / "bench" / "out"


def log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def fresh_disk() -> None:
    """Flush dirty pages so no run pays for the previous run's writeback.

    Outputs are deliberately not deleted between runs (only with the work directory at the
    end): right after thousands of deletions, ext4's inode allocator skips the recently
    freed inodes one by one (``recently_deleted``), which made the next run's file
    creations several times slower than the first's.
    """
    os.sync()


# --- the tools -----------------------------------------------------------------------------


def run_floor(work: Path, isp: Dovecot, name: str, tool: str, rep: int, messages) -> Run:
    slug = {FLOOR_NOSYNC: "nosync", FLOOR_DURABLE: "fsync", FLOOR_DIRSYNC: "dirfsync"}[tool]
    maildir = work / "out" / f"{name}-floor-{slug}-{rep}"
    flags = {FLOOR_NOSYNC: [], FLOOR_DURABLE: ["--fsync"], FLOOR_DIRSYNC: ["--fsync", "--dirfsync"]}
    measured = proc.run(
        [
            sys.executable,
            "-m",
            "bench.floor",
            "--port",
            str(isp.pop3_port),
            "--user",
            name,
            "--password",
            PASSWORD,
            "--maildir",
            str(maildir),
            *flags[tool],
        ],
        cwd=REPO,
        log_dir=work / "logs",
        name=maildir.name,
    )
    return _finish_child(tool, name, rep, measured, maildir, messages, max_prefix_fields=0)


def run_ours(
    work: Path,
    env: dict,
    binding_id: int,
    key: str,
    tool: str,
    name: str,
    rep: int,
    messages,
    profile: Path | None = None,
) -> Run:
    argv = [sys.executable, "-m", "bench.ours", "fetch", "--binding-id", str(binding_id)]
    if profile is not None:
        argv += ["--profile", str(profile)]
    measured = proc.run(argv, env=env, cwd=REPO, log_dir=work / "logs", name=key)
    maildir = ours.mailbox(work, key)
    run = _finish_child(tool, name, rep, measured, maildir, messages, max_prefix_fields=1)
    if run.extra and (
        run.extra.get("outcome") != "ok" or run.extra.get("messages") != len(messages)
    ):
        run.note = f"outcome {run.extra.get('outcome')}: {run.extra.get('error', '')[:200]}"
    return run


def _finish_child(tool, name, rep, measured, maildir, messages, *, max_prefix_fields) -> Run:
    extra: dict = {}
    note = ""
    try:
        extra = json.loads(measured.stdout.strip().splitlines()[-1])
        fetch_s = float(extra["fetch_s"])
    except (IndexError, ValueError, KeyError):
        fetch_s = measured.wall_s
        note = f"exit {measured.returncode}: {measured.stderr.strip()[-300:]}"
    verdict = verify.verify(maildir, messages, max_prefix_fields=max_prefix_fields)
    return Run(
        tool,
        name,
        rep,
        fetch_s,
        measured.wall_s,
        measured.peak_rss_mb,
        verdict,
        measured.returncode,
        note,
        extra,
    )


def run_peer(
    work: Path, isp: Dovecot, user, tool: str, name: str, rep: int, messages, timeout: float
) -> Run:
    root = work / "out" / f"{name}-{'getmail' if tool == GETMAIL else 'fetchmail'}-{rep}"
    runner = peers.getmail if tool == GETMAIL else peers.fetchmail
    began = time.time()
    measured, maildir = runner(
        root, user, port=isp.pop3_port, username=name, password=PASSWORD, timeout=timeout
    )
    ended = time.time()
    verdict = verify.verify(maildir, messages, max_prefix_fields=None, allow_from_line=True)
    extra = _stalls(
        maildir, began, ended, len(messages), sum(len(m.raw) for m in messages), measured.wall_s
    )
    stderr = "\n".join(
        line for line in measured.stderr.splitlines() if "Couldn't chdir" not in line
    )
    note = ""
    if measured.returncode or measured.timed_out:
        lines = stderr.strip().splitlines()
        telling = [line for line in lines if "rror" in line or "broken" in line] or lines[-1:]
        note = ("timed out; " if measured.timed_out else "") + f"exit {measured.returncode}"
        note += f": {telling[0][:200]}" if telling else ""
        if len(telling) > 1:
            note += f" (+{len(telling) - 1} more such lines)"
    if extra:
        note += (
            f"{'; ' if note else ''}no delivery for {extra['stalled_s']:.0f} s of the run "
            f"(stalled); {extra['stored']} files stored in {extra['active_s']:.1f} s of "
            f"activity, i.e. about {extra['comparable_s']:.1f} s for the whole corpus at that "
            "rate (used for its ratios, marked est.)"
        )
    return Run(
        tool,
        name,
        rep,
        measured.wall_s,
        measured.wall_s,
        measured.peak_rss_mb,
        verdict,
        measured.returncode,
        note,
        extra,
    )


STALL_S = 5.0


def _stalls(
    maildir: Path, began: float, ended: float, total: int, total_bytes: int, wall: float
) -> dict:
    """Gaps of more than STALL_S with no file delivered, from the files' mtimes.

    getmail6 can lose the wake-up of its SIGCHLD handler (ForkingBase._wait_for_child) and
    then waits for its socket timeout before giving up; the wall time of such a run says
    nothing about its speed. Returns {} when there was no stall. The estimate for the whole
    corpus extrapolates the time it was active by the larger of the fractions of messages
    and of bytes it stored, the estimate least favourable to our fetch.
    """
    stamps, stored_bytes = [], 0
    for sub in ("new", "cur"):
        folder = maildir / sub
        if folder.is_dir():
            with os.scandir(folder) as entries:
                for entry in entries:
                    info = entry.stat()
                    stamps.append(info.st_mtime)
                    stored_bytes += info.st_size
    points = [began, *sorted(stamps), ended]
    stalled = sum(b - a for a, b in itertools.pairwise(points) if b - a > STALL_S)
    if not stalled:
        return {}
    active = max(0.001, wall - stalled)
    stored = len(stamps)
    done = max(stored / total, min(1.0, stored_bytes / max(1, total_bytes)))
    comparable = active / done if 0 < done < 1 else active
    return {"stalled_s": stalled, "active_s": active, "stored": stored, "comparable_s": comparable}


# --- set-up ---------------------------------------------------------------------------------


def fill(isp: Dovecot, corpora: dict[str, list[corpus.Message]]) -> None:
    for name, messages in corpora.items():
        isp.add_user(name, PASSWORD)
        for message in messages:
            isp.deliver(name, message.raw)


def prepare_db(work: Path, env: dict, plan: list[dict]) -> dict[str, int]:
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "-v", "0"], cwd=REPO, env=env, check=True
    )
    out = subprocess.run(
        [sys.executable, "-m", "bench.ours", "setup", json.dumps(plan)],
        cwd=REPO,
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


# --- main -----------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> tuple[argparse.Namespace, set[str]]:
    """The options, and the tools to run (ours brings its POP3S twin unless --no-ssl)."""
    parser = argparse.ArgumentParser(description="AAMail fetch benchmark (see bench/README.md).")
    parser.add_argument("--quick", action="store_true", help="small corpora (smoke test)")
    parser.add_argument("--seed", type=int, default=4)
    parser.add_argument(
        "--repeat",
        type=int,
        default=None,
        help="runs per corpus for the floors and ours (median; 5, quick 1)",
    )
    parser.add_argument("--peer-repeat", type=int, default=1, help="runs of each peer")
    parser.add_argument(
        "--tools",
        default="floor,ours,getmail,fetchmail",
        help="comma list from: floor, ours, ssl, getmail, fetchmail "
        "(ours includes ssl unless --no-ssl)",
    )
    parser.add_argument("--corpora", default="mixed,small,big")
    parser.add_argument("--no-ssl", action="store_true", help="skip the POP3S run of ours")
    parser.add_argument("--timeout", type=float, default=900, help="per peer run, seconds")
    parser.add_argument("--out", type=Path, default=OUT, help="where results.md/.json go")
    parser.add_argument(
        "--profile",
        action="store_true",
        help="also run our fetch once per corpus under cProfile, stats into "
        "--out/profile-<corpus>.pstats (not counted in the table)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    args = parser.parse_args(argv)
    if args.repeat is None:
        args.repeat = 1 if args.quick else 5
    tools = {t.strip() for t in args.tools.split(",") if t.strip()}
    unknown = tools - {"floor", "ours", "ssl", "getmail", "fetchmail"}
    if unknown or not set(args.corpora.split(",")) <= {"mixed", "small", "big"}:
        parser.error(f"unknown tool or corpus: {sorted(unknown) or args.corpora}")
    if "ours" in tools and not args.no_ssl:
        tools.add("ssl")
    return args, tools


def warm_up(work: Path, isp: Dovecot, corpora: dict[str, list[corpus.Message]]) -> bool:
    """One unmeasured fetch per corpus; False (and why, logged) when one is not exact.

    Dovecot indexes the mailbox and computes sizes at the first login, and a keep-mode
    session moves new/ -> cur/ at QUIT. Every measured run then sees the same server state
    (all in cur/, indexed, in the page cache).
    """
    for name, messages in corpora.items():
        warm = run_floor(work, isp, name, FLOOR_NOSYNC, -1, messages)
        if not warm.verdict.ok:
            log(
                f"Warm-up fetch of {name} is not exact: {warm.verdict.summary()} "
                f"{warm.verdict.problems} {warm.note}"
            )
            return False
    return True


def _binding_row(key: str, port: int, security: str, name: str) -> dict:
    return {
        "key": key,
        "port": port,
        "security": security,
        "username": name,
        "password": PASSWORD,
    }


def plan_bindings(isp: Dovecot, corpora: dict, tools: set[str], args: argparse.Namespace) -> list:
    """One binding per measured run of ours (plain and POP3S), plus the profiled ones."""
    rows = []
    for rep in range(args.repeat):
        for name in corpora:
            for sec, port in (("none", isp.pop3_port), ("ssl", isp.pop3s_port)):
                if sec == "ssl" and "ssl" not in tools:
                    continue
                rows.append(_binding_row(f"{name}-{sec}-{rep}", port, sec, name))
    if args.profile:
        rows += [_binding_row(f"{name}-none-prof", isp.pop3_port, "none", name) for name in corpora]
    return rows


def tools_of_round(rep: int, tools: set[str], args: argparse.Namespace) -> list[str]:
    """The tools measured in round ``rep``: floors and ours --repeat times, peers --peer-repeat."""
    ours_round, peer_round = rep < args.repeat, rep < args.peer_repeat
    todo = []
    if "floor" in tools and ours_round:
        todo += [FLOOR_NOSYNC, FLOOR_DURABLE, FLOOR_DIRSYNC]
    if "ours" in tools and ours_round:
        todo.append(OURS)
    if "ssl" in tools and ours_round:
        todo.append(OURS_SSL)
    if "getmail" in tools and peer_round:
        todo.append(GETMAIL)
    if "fetchmail" in tools and peer_round:
        todo.append(FETCHMAIL)
    return todo


def measure_all(
    work: Path,
    isp: Dovecot,
    corpora: dict[str, list[corpus.Message]],
    tools: set[str],
    args: argparse.Namespace,
    *,
    env: dict | None,
    bindings: dict[str, int] | None,
    user: str | None,
) -> list[Run]:
    """Every measured run, round by round, each from a flushed disk."""
    runs: list[Run] = []
    for rep in range(max(args.repeat, args.peer_repeat)):
        for name, messages in corpora.items():
            for tool in tools_of_round(rep, tools, args):
                fresh_disk()
                if tool in (FLOOR_NOSYNC, FLOOR_DURABLE, FLOOR_DIRSYNC):
                    run = run_floor(work, isp, name, tool, rep, messages)
                elif tool in (OURS, OURS_SSL):
                    key = f"{name}-{'none' if tool == OURS else 'ssl'}-{rep}"
                    run = run_ours(work, env, bindings[key], key, tool, name, rep, messages)
                else:
                    run = run_peer(work, isp, user, tool, name, rep, messages, args.timeout)
                runs.append(run)
                log(
                    f"  [{rep}] {name:5} {tool:26} {run.fetch_s:8.3f} s "
                    f"(proc {run.proc_s:6.2f} s) {run.rss_mb:7.1f} MB  "
                    f"{run.verdict.summary()} {run.note[:100]}"
                )
    return runs


def profile_ours(work: Path, env: dict, bindings: dict[str, int], corpora: dict, out: Path) -> None:
    """Extra runs under cProfile, after the measured ones and not counted in them."""
    for name, messages in corpora.items():
        key = f"{name}-none-prof"
        stats = out / f"profile-{name}.pstats"
        fresh_disk()
        run = run_ours(work, env, bindings[key], key, OURS, name, -1, messages, stats)
        log(f"  profiled {name}: {run.fetch_s:.3f} s under cProfile -> {stats}")


def write_results(args: argparse.Namespace, runs: list[Run], corpora: dict, described: dict) -> str:
    """results.md and results.json under --out; returns the report."""
    rows = aggregate(runs, corpora)
    report, targets = build_report(rows, runs, corpora, args, described)
    title = f"## Fetch benchmark ({'quick' if args.quick else 'full'})\n\n"
    (args.out / "results.md").write_text(title + report)
    (args.out / "results.json").write_text(
        json.dumps(
            {
                "args": {k: str(v) for k, v in vars(args).items()},
                "corpora": described,
                "rows": [{**asdict(r), "msgs_s": r.msgs_s, "mb_s": r.mb_s} for r in rows.values()],
                "runs": [{**asdict(r), "verdict": asdict(r.verdict)} for r in runs],
                "targets": [{"target": label, "ok": ok} for label, ok in targets],
            },
            indent=1,
        )
    )
    return report


def main(argv: list[str] | None = None) -> int:
    args, tools = parse_args(argv)
    if os.geteuid() != 0:
        log("The benchmark needs root: Dovecot's mail processes run as uid 8 (tests/servers).")
        return 2

    plan = corpus.QUICK if args.quick else corpus.FULL
    started = time.monotonic()
    load_before = os.getloadavg()[0]
    log(f"Generating corpora (seed {args.seed}, {'quick' if args.quick else 'full'}) ...")
    every = corpus.build(plan, args.seed)
    corpora = {name: every[name] for name in args.corpora.split(",")}
    described = {name: corpus.describe(messages) for name, messages in corpora.items()}
    for name, d in described.items():
        log(f"  {name}: {d['messages']:,} messages, {d['bytes']:,} bytes")

    work = Path(tempfile.mkdtemp(prefix="aamail-bench-"))
    work.chmod(0o755)  # the peers' user must reach its directories below
    (work / "out").mkdir(mode=0o755)
    user = peers.ensure_user() if tools & {"getmail", "fetchmail"} else None
    args.out.mkdir(parents=True, exist_ok=True)
    try:
        with Dovecot() as isp:
            log("Filling the Dovecot mailboxes ...")
            fill(isp, corpora)
            if not warm_up(work, isp, corpora):
                return 1

            env = bindings = None
            if tools & {"ours", "ssl"}:
                from cryptography.fernet import Fernet

                env = ours.django_env(
                    work, ca_file=isp.ca_pem, fernet_key=Fernet.generate_key().decode()
                )
                log("Preparing the SQLite database for our fetch ...")
                bindings = prepare_db(work, env, plan_bindings(isp, corpora, tools, args))

            runs = measure_all(
                work, isp, corpora, tools, args, env=env, bindings=bindings, user=user
            )
            if args.profile and bindings:
                profile_ours(work, env, bindings, corpora, args.out)
    finally:
        if args.keep:
            log(f"Work directory kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)

    args.load = f"{load_before:.2f} before, {os.getloadavg()[0]:.2f} after"
    report = write_results(args, runs, corpora, described)
    print(report)
    log(f"Written {args.out / 'results.md'} ({time.monotonic() - started:.0f} s in all).")
    everything_verified = all(r.verdict.ok for r in runs if r.tool in IN_PROCESS)
    return 0 if everything_verified else 1


if __name__ == "__main__":
    sys.exit(main())
