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
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # run as a script: make `bench` and `tests` importable
    sys.path.insert(0, str(REPO))

from bench import corpus, ours, peers, proc, verify  # noqa: E402
from tests.servers.dovecot import Dovecot  # noqa: E402

PASSWORD = "bench-Pass-4711"
OUT = REPO / "bench" / "out"

FLOOR_NOSYNC = "floor, no fsync"
FLOOR_DURABLE = "durable floor (fsync/msg)"
FLOOR_DIRSYNC = "floor, fsync file+dir"
OURS = "ours (binding_fetch)"
OURS_SSL = "ours, POP3S"
GETMAIL = "getmail6"
FETCHMAIL = "fetchmail+procmail"
TOOL_ORDER = [FLOOR_NOSYNC, FLOOR_DURABLE, FLOOR_DIRSYNC, OURS, OURS_SSL, GETMAIL, FETCHMAIL]
IN_PROCESS = {FLOOR_NOSYNC, FLOOR_DURABLE, FLOOR_DIRSYNC, OURS, OURS_SSL}


@dataclass
class Run:
    tool: str
    corpus: str
    rep: int
    fetch_s: float  # in-process fetch time (floor, ours) or the process wall time (peers)
    proc_s: float  # whole process, interpreter and Django start-up included
    rss_mb: float
    verdict: verify.Verdict
    returncode: int
    note: str = ""
    extra: dict = field(default_factory=dict)


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


# --- report ---------------------------------------------------------------------------------


@dataclass
class Row:
    tool: str
    corpus: str
    runs: int
    fetch_s: float  # median
    fetch_min: float
    fetch_max: float
    proc_s: float  # median
    rss_mb: float  # max over runs
    messages: int
    size: int
    verified: str
    all_verified: bool
    note: str
    compare_s: float = 0.0  # what ratios use: fetch_s, or a stalled peer's estimate
    estimated: bool = False

    @property
    def msgs_s(self) -> float:
        return self.messages / self.fetch_s if self.fetch_s else 0.0

    @property
    def mb_s(self) -> float:
        return self.size / 1e6 / self.fetch_s if self.fetch_s else 0.0


def aggregate(runs: list[Run], corpora) -> dict[tuple[str, str], Row]:
    rows = {}
    for tool in TOOL_ORDER:
        for name, messages in corpora.items():
            mine = [r for r in runs if r.tool == tool and r.corpus == name]
            if not mine:
                continue
            worst = min(mine, key=lambda r: (r.verdict.verified, -r.verdict.corrupted))
            verified = worst.verdict.summary()
            if len(mine) > 1:
                verified += f" x{len(mine)}" if all(r.verdict.ok for r in mine) else " (worst run)"
            notes = sorted({r.note for r in mine if r.note})
            rows[tool, name] = Row(
                tool=tool,
                corpus=name,
                runs=len(mine),
                fetch_s=statistics.median(r.fetch_s for r in mine),
                fetch_min=min(r.fetch_s for r in mine),
                fetch_max=max(r.fetch_s for r in mine),
                proc_s=statistics.median(r.proc_s for r in mine),
                rss_mb=max(r.rss_mb for r in mine),
                messages=len(messages),
                size=sum(len(m.raw) for m in messages),
                verified=verified,
                all_verified=all(r.verdict.ok for r in mine),
                note="; ".join(notes),
                compare_s=statistics.median(r.extra.get("comparable_s", r.fetch_s) for r in mine)
                if tool in (GETMAIL, FETCHMAIL)
                else statistics.median(r.fetch_s for r in mine),
                estimated=any("comparable_s" in r.extra for r in mine)
                and tool in (GETMAIL, FETCHMAIL),
            )
    return rows


def ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a and b else None


def fmt_ratio(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}x"


def build_report(rows, runs, corpora, args, described) -> tuple[str, list[tuple[str, bool]]]:
    lines = []
    header = [
        "tool", "corpus", "wall s", "min-max", "proc s", "msgs/s", "MB/s", "peak RSS MB",
        "verified",
    ]  # fmt: skip
    table = [header]
    for (tool, name), row in rows.items():
        spread = f"{row.fetch_min:.2f}-{row.fetch_max:.2f}" if row.runs > 1 else ""
        table.append(
            [
                tool,
                name,
                f"{row.fetch_s:.3f}",
                spread,
                f"{row.proc_s:.2f}",
                f"{row.msgs_s:,.0f}",
                f"{row.mb_s:.1f}",
                f"{row.rss_mb:.1f}",
                row.verified,
            ]
        )
    lines.append(_markdown_table(table))
    lines.append("")
    lines.append(
        "wall s: median over runs (min-max: their spread) of the fetch itself — for the "
        "floors and ours timed inside the process (connect → QUIT; `binding_fetch()` call, "
        "as in a running worker); for "
        "the peers, the process. proc s: the whole process, Python and Django start-up "
        "included. MB = 10^6 bytes of stored corpus. Peak RSS: max over runs, whole process "
        "(Django included for ours; the MDA/delivery children included for the peers)."
    )
    lines.append("")

    def get(tool, name, attr="fetch_s"):
        row = rows.get((tool, name))
        if row and tool in (GETMAIL, FETCHMAIL):
            attr = "compare_s"  # a peer is one process: wall = proc, or a stall's estimate
        return getattr(row, attr) if row else None

    def est(tool, name) -> str:
        row = rows.get((tool, name))
        return " est." if row and row.estimated else ""

    ratio_table = [
        [
            "corpus",
            "ours / durable floor",
            "ours / floor no fsync",
            "getmail6 / ours",
            "fetchmail / ours",
            "getmail6 / ours (proc)",
            "fetchmail / ours (proc)",
            "ours POP3S / ours",
        ]
    ]
    for name in corpora:
        ratio_table.append(
            [
                name,
                fmt_ratio(ratio(get(OURS, name), get(FLOOR_DURABLE, name))),
                fmt_ratio(ratio(get(OURS, name), get(FLOOR_NOSYNC, name))),
                fmt_ratio(ratio(get(GETMAIL, name), get(OURS, name))) + est(GETMAIL, name),
                fmt_ratio(ratio(get(FETCHMAIL, name), get(OURS, name))) + est(FETCHMAIL, name),
                fmt_ratio(ratio(get(GETMAIL, name, "proc_s"), get(OURS, name, "proc_s")))
                + est(GETMAIL, name),
                fmt_ratio(ratio(get(FETCHMAIL, name, "proc_s"), get(OURS, name, "proc_s")))
                + est(FETCHMAIL, name),
                fmt_ratio(ratio(get(OURS_SSL, name), get(OURS, name))),
            ]
        )
    lines.append(_markdown_table(ratio_table))
    lines.append("")

    # Targets (issue 4, item 10). Speed targets on the two corpora the issue names.
    speed_corpora = [n for n in ("mixed", "small") if n in corpora]
    targets: list[tuple[str, bool | None, str]] = []

    def check(label, pairs, limit, higher_is_better, peer=None):
        values = [(n, v) for n, v in pairs if v is not None]
        if not values or len(values) < len(pairs):
            targets.append((label, None, "not measured"))
            return
        ok = all((v >= limit) if higher_is_better else (v <= limit) for _, v in values)
        text = ", ".join(f"{n} {v:.2f}x{est(peer, n) if peer else ''}" for n, v in values)
        targets.append((label, ok, text))

    check(
        "ours within 1.5x of the durable floor",
        [(n, ratio(get(OURS, n), get(FLOOR_DURABLE, n))) for n in speed_corpora],
        1.5,
        False,
    )
    check(
        "≥ 10x faster than getmail6",
        [(n, ratio(get(GETMAIL, n), get(OURS, n))) for n in speed_corpora],
        10,
        True,
        GETMAIL,
    )
    check(
        "≥ 4x faster than fetchmail",
        [(n, ratio(get(FETCHMAIL, n), get(OURS, n))) for n in speed_corpora],
        4,
        True,
        FETCHMAIL,
    )
    check(
        "≥ 10x faster than getmail6, whole process vs whole process",
        [(n, ratio(get(GETMAIL, n, "proc_s"), get(OURS, n, "proc_s"))) for n in speed_corpora],
        10,
        True,
        GETMAIL,
    )
    check(
        "≥ 4x faster than fetchmail, whole process vs whole process",
        [(n, ratio(get(FETCHMAIL, n, "proc_s"), get(OURS, n, "proc_s"))) for n in speed_corpora],
        4,
        True,
        FETCHMAIL,
    )
    ours_rows = [r for (t, _), r in rows.items() if t in (OURS, OURS_SSL)]
    big_rss = get(OURS, "big", "rss_mb")
    if ours_rows:
        worst_rss = max(r.rss_mb for r in ours_rows)
        targets.append(
            (
                "peak RSS < 64 MB (ours, every corpus, incl. the big message)",
                worst_rss < 64,
                f"max {worst_rss:.1f} MB" + (f"; big message {big_rss:.1f} MB" if big_rss else ""),
            )
        )
        bad = [f"{r.tool} {r.corpus}: {r.verified}" for r in ours_rows if not r.all_verified]
        targets.append(
            (
                "every message verified byte for byte (ours, every run)",
                not bad,
                "; ".join(bad) or "all runs exact",
            )
        )
    else:
        targets.append(("our fetch", None, "not measured"))
    floor_bad = [
        f"{r.tool} {r.corpus}: {r.verified}"
        for (t, _), r in rows.items()
        if t in (FLOOR_NOSYNC, FLOOR_DURABLE, FLOOR_DIRSYNC) and not r.all_verified
    ]
    if floor_bad:
        targets.append(("floor verified (sanity)", False, "; ".join(floor_bad)))

    lines.append("| target | result | measured |")
    lines.append("|---|---|---|")
    for label, ok, detail in targets:
        verdict = "n/a" if ok is None else ("PASS" if ok else "FAIL")
        lines.append(f"| {label} | {verdict} | {detail} |")
    lines.append("")

    notes = []
    for (tool, name), row in rows.items():
        if row.note:
            notes.append(f"- {tool} / {name}: {row.note}")
    for tool in (OURS, OURS_SSL):
        mine = [r for r in runs if r.tool == tool and "rss_before_fetch_mb" in r.extra]
        if mine:
            before = max(r.extra["rss_before_fetch_mb"] for r in mine)
            growths = {}
            for r in mine:
                grew = r.rss_mb - r.extra["rss_before_fetch_mb"]
                growths[r.corpus] = max(grew, growths.get(r.corpus, grew))
            growth = ", ".join(f"{name} +{mb:.1f} MB" for name, mb in growths.items())
            notes.append(
                f"- {tool}: {before:.1f} MB resident before the fetch starts (Python, Django "
                f"set up, Celery app and project imported); growth during the fetch: {growth}"
            )
    for run in runs:
        v = run.verdict
        if (v.corrupted or v.unidentified) and run.rep == 0:
            detail = f"- {run.tool} / {run.corpus}: {v.corrupted} corrupted"
            if v.corrupted:
                detail += (
                    f" ({v.corrupted_long_8191} of them have a line > 8,191 bytes, "
                    f"{v.corrupted_long_1mib} a line > 1 MiB)"
                )
            if v.problems:
                detail += "; e.g. " + v.problems[0]
            notes.append(detail)
        if v.with_prefix and run.rep == 0 and run.tool in (GETMAIL, FETCHMAIL):
            example = v.prefix_examples[0].strip().replace("\n", " ⏎ ")[:100]
            notes.append(
                f"- {run.tool} / {run.corpus}: prepends to {v.with_prefix} "
                f"messages: `{example}` (accepted, not counted as corruption)"
            )
    if notes:
        lines.append("Observed:")
        lines.extend(dict.fromkeys(notes))
        lines.append("")

    corpus_table = [
        [
            "corpus",
            "messages",
            "bytes",
            "POP3 octets",
            "lines > 8,191",
            "lines > 1 MiB",
            "no final LF",
            "dot lines",
            "8-bit",
            "longest line",
        ]
    ]
    for name, d in described.items():
        corpus_table.append(
            [
                name,
                f"{d['messages']:,}",
                f"{d['bytes']:,}",
                f"{d['pop3_octets']:,}",
                str(d["line_over_8191"]),
                str(d["line_over_1mib"]),
                str(d["no_final_newline"]),
                str(d["dot_lines"]),
                str(d["eight_bit"]),
                f"{d['longest_line']:,}",
            ]
        )
    lines.append(_markdown_table(corpus_table))
    lines.append("")
    lines.append(
        f"Seed {args.seed}, {'quick' if args.quick else 'full'} corpora, {args.repeat} run(s) "
        f"per tool for floors and ours, {args.peer_repeat} for the peers; "
        f"{os.cpu_count()} CPUs, 1-minute load average {args.load} (anything else running "
        f"on the machine shows here and in the spread between runs); {_versions()}."
    )
    return "\n".join(lines) + "\n", [(label, ok) for label, ok, _ in targets]


def _markdown_table(rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    out = []
    for n, row in enumerate(rows):
        cells = [
            c.ljust(w) if i < 2 or n == 0 else c.rjust(w)
            for i, (c, w) in enumerate(zip(row, widths, strict=True))
        ]
        out.append("| " + " | ".join(cells) + " |")
        if n == 0:
            out.append("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(out)


def _versions() -> str:
    found = []
    for argv, label in (
        (["dovecot", "--version"], "Dovecot"),
        (["getmail", "--version"], ""),
        (["fetchmail", "--version"], ""),
    ):
        try:
            text = subprocess.run(argv, capture_output=True, text=True, timeout=10).stdout
        except (OSError, subprocess.TimeoutExpired):
            continue
        first = text.strip().splitlines()[0] if text.strip() else ""
        if "fetchmail" in first:
            first = "fetchmail " + first.split("release ")[-1].split("+")[0]
        found.append(f"{label} {first}".strip())
    return ", ".join(found)


# --- main -----------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
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
    runs: list[Run] = []
    args.out.mkdir(parents=True, exist_ok=True)
    try:
        with Dovecot() as isp:
            log("Filling the Dovecot mailboxes ...")
            fill(isp, corpora)
            # Warm-up, not measured: Dovecot indexes the mailbox and computes sizes at the
            # first login, and a keep-mode session moves new/ -> cur/ at QUIT. Every measured
            # run then sees the same server state (all in cur/, indexed, in the page cache).
            for name, messages in corpora.items():
                warm = run_floor(work, isp, name, FLOOR_NOSYNC, -1, messages)
                if not warm.verdict.ok:
                    log(
                        f"Warm-up fetch of {name} is not exact: {warm.verdict.summary()} "
                        f"{warm.verdict.problems} {warm.note}"
                    )
                    return 1

            env = bindings = None
            if tools & {"ours", "ssl"}:
                from cryptography.fernet import Fernet

                env = ours.django_env(
                    work, ca_file=isp.ca_pem, fernet_key=Fernet.generate_key().decode()
                )
                plan_rows = []
                for rep in range(args.repeat):
                    for name in corpora:
                        for sec, port in (("none", isp.pop3_port), ("ssl", isp.pop3s_port)):
                            if sec == "ssl" and "ssl" not in tools:
                                continue
                            plan_rows.append(
                                {
                                    "key": f"{name}-{sec}-{rep}",
                                    "port": port,
                                    "security": sec,
                                    "username": name,
                                    "password": PASSWORD,
                                }
                            )
                if args.profile:
                    plan_rows += [
                        {
                            "key": f"{name}-none-prof",
                            "port": isp.pop3_port,
                            "security": "none",
                            "username": name,
                            "password": PASSWORD,
                        }
                        for name in corpora
                    ]
                log("Preparing the SQLite database for our fetch ...")
                bindings = prepare_db(work, env, plan_rows)

            for rep in range(max(args.repeat, args.peer_repeat)):
                for name, messages in corpora.items():
                    todo = []
                    if "floor" in tools and rep < args.repeat:
                        todo += [FLOOR_NOSYNC, FLOOR_DURABLE, FLOOR_DIRSYNC]
                    if "ours" in tools and rep < args.repeat:
                        todo.append(OURS)
                    if "ssl" in tools and rep < args.repeat:
                        todo.append(OURS_SSL)
                    if "getmail" in tools and rep < args.peer_repeat:
                        todo.append(GETMAIL)
                    if "fetchmail" in tools and rep < args.peer_repeat:
                        todo.append(FETCHMAIL)
                    for tool in todo:
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
            if args.profile and bindings:
                # Extra runs under cProfile, after the measured ones and not counted in them.
                for name, messages in corpora.items():
                    key = f"{name}-none-prof"
                    stats = args.out / f"profile-{name}.pstats"
                    fresh_disk()
                    run = run_ours(work, env, bindings[key], key, OURS, name, -1, messages, stats)
                    log(f"  profiled {name}: {run.fetch_s:.3f} s under cProfile -> {stats}")
    finally:
        if args.keep:
            log(f"Work directory kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)

    args.load = f"{load_before:.2f} before, {os.getloadavg()[0]:.2f} after"
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
    print(report)
    log(f"Written {args.out / 'results.md'} ({time.monotonic() - started:.0f} s in all).")
    everything_verified = all(r.verdict.ok for r in runs if r.tool in IN_PROCESS)
    return 0 if everything_verified else 1


if __name__ == "__main__":
    sys.exit(main())
