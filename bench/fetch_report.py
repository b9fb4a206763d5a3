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


Rows = dict[tuple[str, str], Row]
Target = tuple[str, bool | None, str]  # label, PASS/FAIL (None: not measured), measured


def build_report(rows, runs, corpora, args, described) -> tuple[str, list[tuple[str, bool]]]:
    targets = _targets(rows, corpora)
    sections = [
        _results_table(rows),
        _ratio_table(rows, corpora),
        _targets_table(targets),
        *_observed(rows, runs),
        _markdown_table(_corpus_rows(described)) + "\n",
        _footer(args),
    ]
    return "\n".join(sections) + "\n", [(label, ok) for label, ok, _ in targets]


def _value(rows: Rows, tool: str, name: str, attr: str = "fetch_s") -> float | None:
    row = rows.get((tool, name))
    if row and tool in (GETMAIL, FETCHMAIL):
        attr = "compare_s"  # a peer is one process: wall = proc, or a stall's estimate
    return getattr(row, attr) if row else None


def _est(rows: Rows, tool: str | None, name: str) -> str:
    row = rows.get((tool, name))
    return " est." if row and row.estimated else ""


def _results_table(rows: Rows) -> str:
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
    return "\n".join(
        [
            _markdown_table(table),
            "",
            "wall s: median over runs (min-max: their spread) of the fetch itself — for the "
            "floors and ours timed inside the process (connect → QUIT; `binding_fetch()` call, "
            "as in a running worker); for "
            "the peers, the process. proc s: the whole process, Python and Django start-up "
            "included. MB = 10^6 bytes of stored corpus. Peak RSS: max over runs, whole process "
            "(Django included for ours; the MDA/delivery children included for the peers).",
            "",
        ]
    )


def _ratio_table(rows: Rows, corpora) -> str:
    def get(tool: str, name: str, attr: str = "fetch_s") -> float | None:
        return _value(rows, tool, name, attr)

    def est(tool: str, name: str) -> str:
        return _est(rows, tool, name)

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
    return _markdown_table(ratio_table) + "\n"


# Speed targets (issue 4, item 10): label, the tool compared with ours, "proc_s" for whole
# process against whole process, the limit; ours against the floor must stay under it.
_SPEED_TARGETS = [
    ("≥ 10x faster than getmail6", GETMAIL, "fetch_s", 10),
    ("≥ 4x faster than fetchmail", FETCHMAIL, "fetch_s", 4),
    ("≥ 10x faster than getmail6, whole process vs whole process", GETMAIL, "proc_s", 10),
    ("≥ 4x faster than fetchmail, whole process vs whole process", FETCHMAIL, "proc_s", 4),
]


def _check(
    rows: Rows, label: str, pairs, limit: float, higher_is_better: bool, peer=None
) -> Target:
    values = [(n, v) for n, v in pairs if v is not None]
    if not values or len(values) < len(pairs):
        return (label, None, "not measured")
    ok = all((v >= limit) if higher_is_better else (v <= limit) for _, v in values)
    text = ", ".join(f"{n} {v:.2f}x{_est(rows, peer, n) if peer else ''}" for n, v in values)
    return (label, ok, text)


def _targets(rows: Rows, corpora) -> list[Target]:
    # Speed targets on the two corpora the issue names.
    speed_corpora = [n for n in ("mixed", "small") if n in corpora]
    floor = [
        (n, ratio(_value(rows, OURS, n), _value(rows, FLOOR_DURABLE, n))) for n in speed_corpora
    ]
    targets = [_check(rows, "ours within 1.5x of the durable floor", floor, 1.5, False)]
    for label, peer, attr, limit in _SPEED_TARGETS:
        pairs = [
            (n, ratio(_value(rows, peer, n, attr), _value(rows, OURS, n, attr)))
            for n in speed_corpora
        ]
        targets.append(_check(rows, label, pairs, limit, True, peer))
    return targets + _ours_targets(rows) + _floor_sanity(rows)


def _ours_targets(rows: Rows) -> list[Target]:
    ours_rows = [r for (t, _), r in rows.items() if t in (OURS, OURS_SSL)]
    if not ours_rows:
        return [("our fetch", None, "not measured")]
    big_rss = _value(rows, OURS, "big", "rss_mb")
    worst_rss = max(r.rss_mb for r in ours_rows)
    bad = [f"{r.tool} {r.corpus}: {r.verified}" for r in ours_rows if not r.all_verified]
    return [
        (
            "peak RSS < 64 MB (ours, every corpus, incl. the big message)",
            worst_rss < 64,
            f"max {worst_rss:.1f} MB" + (f"; big message {big_rss:.1f} MB" if big_rss else ""),
        ),
        (
            "every message verified byte for byte (ours, every run)",
            not bad,
            "; ".join(bad) or "all runs exact",
        ),
    ]


def _floor_sanity(rows: Rows) -> list[Target]:
    floor_bad = [
        f"{r.tool} {r.corpus}: {r.verified}"
        for (t, _), r in rows.items()
        if t in (FLOOR_NOSYNC, FLOOR_DURABLE, FLOOR_DIRSYNC) and not r.all_verified
    ]
    return [("floor verified (sanity)", False, "; ".join(floor_bad))] if floor_bad else []


def _targets_table(targets: list[Target]) -> str:
    lines = ["| target | result | measured |", "|---|---|---|"]
    for label, ok, detail in targets:
        verdict = "n/a" if ok is None else ("PASS" if ok else "FAIL")
        lines.append(f"| {label} | {verdict} | {detail} |")
    return "\n".join(lines) + "\n"


def _observed(rows: Rows, runs: list[Run]) -> list[str]:
    """The "Observed:" section (notes, memory, corruption, prefixes), or nothing."""
    notes = [f"- {tool} / {name}: {row.note}" for (tool, name), row in rows.items() if row.note]
    notes += _memory_notes(runs)
    for run in runs:
        notes += _verdict_notes(run)
    if not notes:
        return []
    return ["Observed:", *dict.fromkeys(notes), ""]


def _memory_notes(runs: list[Run]) -> list[str]:
    notes = []
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
    return notes


def _verdict_notes(run: Run) -> list[str]:
    notes = []
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
    return notes


def _corpus_rows(described: dict) -> list[list[str]]:
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
    return corpus_table


def _footer(args) -> str:
    return (
        f"Seed {args.seed}, {'quick' if args.quick else 'full'} corpora, {args.repeat} run(s) "
        f"per tool for floors and ours, {args.peer_repeat} for the peers; "
        f"{os.cpu_count()} CPUs, 1-minute load average {args.load} (anything else running "
        f"on the machine shows here and in the spread between runs); {_versions()}."
    )


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
