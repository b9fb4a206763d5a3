"""The fetch benchmark's results: one record per run, the table, the ratios, the targets.

``fetch_bench.py`` runs the tools and hands this module a list of ``Run``; here they become
rows (medians, min-max, worst verification), the Markdown report with the ratios against
the floors measured in the same run, and PASS/FAIL per target (bench/README.md).
"""

from __future__ import annotations

import os
import statistics
import subprocess
from dataclasses import dataclass, field

from bench import verify

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
