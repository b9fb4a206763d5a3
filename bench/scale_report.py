"""The scale benchmark's report: tables, ratios against floors, PASS/FAIL per target.

``build(results)`` returns the Markdown report, the checks (the issue's targets, each with
PASS/FAIL and the measured values) and the ratios (label, value) that the smoke test looks
for. ``sim_models(results)`` turns this run's measurements into the schedule models.
"""

from __future__ import annotations

import statistics
from collections import defaultdict

from bench import scale_claim, scale_sim

# A figure the issue quotes, for the model this run cannot measure (the stage-1
# dispatcher's rate); the report names the source of every model.
ISSUE = {"dispatcher": 1300.0}
TARGET_FLOOR_SHARE = 0.25
TARGET_POLLS = 300.0
TARGET_CLAIM_RATIO = 1.5
TARGET_STATEMENTS = 2
DB_CORES = 8  # the dedicated database server of the sizing model (README "Sizing")
# Stage 1's full run on this machine (bench/README-scale.md, "the before"): the product as it
# was (beat tick + one task per binding, prefork worker, a session per child). Printed next
# to this run's figures; the old worker path no longer exists to be run again. Neither do
# the stage-1 claim and dispatcher: they read the binding's own due time and lease, which
# stage 4 moved to mapping_schedule; their last measurements are in bench/README-scale.md.
BEFORE = {
    "polls_per_s": 70.8,
    "polls_label": "70.8/s (beat tick + a task per binding, prefork concurrency 4)",
    "cpu_ms": 26.4,
    "statements": 13.1,
    "commits": 10.1,
    "connections": 1.01,
    "rss_per_100": 8332.0,
    "tick_per_s": 500 / 30,
}
NOT_MEASURED = "not measured (schema changed in stage 4; see bench/README-scale.md)"


def _table(rows: list[list[str]], left: int = 1) -> str:
    """A Markdown table; the first `left` columns are text (left-aligned), the rest numbers."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    out = []
    for n, row in enumerate(rows):
        cells = [
            c.ljust(w) if i < left or n == 0 else c.rjust(w)
            for i, (c, w) in enumerate(zip(row, widths, strict=True))
        ]
        out.append("| " + " | ".join(cells) + " |")
        if n == 0:
            out.append("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(out)


def _x(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}x"


def _verdict(ok: bool | None) -> str:
    return {True: "PASS", False: "FAIL", None: "n/a"}[ok]


# --- models for the simulated schedule --------------------------------------------------


def _best_product(results: dict) -> dict | None:
    """The fastest product run (shipped settings; processes x sessions vary)."""
    runs = results.get("poll", {}).get("product", [])
    return max(runs, key=lambda r: r["steady_polls_per_s"], default=None)


def _label(run: dict) -> str:
    return f"{run['concurrency']} x {run['sessions']}"


def _drains(results: dict) -> list[dict]:
    tiers = results.get("claim", {}).get("tiers", [])
    return [d for t in tiers for d in t.get("drains", [])]


def _drain_summary(results: dict) -> dict[tuple[str, int], dict]:
    """(variant, claimers) -> median claims/s and rows/s over repeats, summed faults."""
    grouped: dict[tuple[str, int], list[dict]] = defaultdict(list)
    for drain in _drains(results):
        grouped[drain["variant"], drain["claimers"]].append(drain)
    summary = {}
    for key, items in grouped.items():
        summary[key] = {
            "claims_per_s": statistics.median(d["claims_per_s"] for d in items),
            "rows_per_s": statistics.median(d["rows_per_s"] for d in items),
            "claims": sum(d["claims"] for d in items),
            "duplicates": sum(d["duplicates"] for d in items),
            "short": sum(d["short"] for d in items),
            "missed": sum(d["missed"] for d in items),
            "timed_out": any(d.get("timed_out") for d in items),
            "batch": items[0]["batch"],
            "due": items[0]["due"],
            "repeats": len(items),
        }
    return summary


def sim_models(results: dict) -> list[scale_sim.Model]:
    """Before (stage 1) and the product as built, with this run's rates.

    Stage 2's "at the targets" models are gone with the variants that measured their caps
    (``stage2-cycle``, ``stage2-cycle-batched``: statements on the binding row's old due
    time and lease); the stage-1 dispatcher no longer runs, so its cap is the issue's figure.
    """
    best = _best_product(results)
    per_box, per_box_src = (
        (best["steady_polls_per_s"], f"measured, {_label(best)} (processes x sessions)")
        if best
        else (None, "")
    )
    claims = _drain_summary(results)
    product_cap = max(
        (v["rows_per_s"] for (name, _), v in claims.items() if name == scale_claim.PRODUCT_CYCLE),
        default=None,
    )
    product_cap_src = (
        f"cap = this box's PostgreSQL doing claim + release ({scale_claim.PRODUCT_CYCLE}, "
        "best of 1/2/4)"
        if product_cap
        else "no database cap measured"
    )
    before_box = BEFORE["polls_per_s"]
    models = [
        scale_sim.Model(
            "before: shipped tick (500 per 30 s)",
            before_box,
            BEFORE["tick_per_s"],
            "per box and cap: stage 1's measurements (bench/README-scale.md)",
        ),
        scale_sim.Model(
            "before: tick limit raised, ticks back to back",
            before_box,
            ISSUE["dispatcher"],
            "per box: stage 1's measurement; cap = one dispatcher (issue 13's figure; the "
            "stage-1 dispatcher is not measured since the schema changed in stage 4)",
        ),
    ]
    if per_box:
        models.append(
            scale_sim.Model(
                "as built, this box's PostgreSQL",
                per_box,
                product_cap,
                f"per box {per_box_src}; {product_cap_src}",
            )
        )
        pg_ms = 1000 * best["cpu_s"]["postgres"] / max(best["polls"], 1)
        if pg_ms > 0:
            models.append(
                scale_sim.Model(
                    f"as built, {DB_CORES}-core PostgreSQL server",
                    per_box,
                    DB_CORES * 1000 / pg_ms,
                    f"per box {per_box_src}; cap = {DB_CORES} cores / PostgreSQL CPU per poll "
                    f"measured end to end ({pg_ms:.2f} ms: claim share, release, trigger), an "
                    "estimate for a dedicated database server",
                )
            )
    return models


# --- the report --------------------------------------------------------------------------


def build(results: dict) -> tuple[str, list[dict], list[dict]]:
    checks: list[dict] = []
    ratios: list[dict] = []
    out = [f"## Scale benchmark (issue 13){' (quick)' if results.get('quick') else ''}", ""]
    if "claim" in results:
        out += _claims(results, checks, ratios)
    if "poll" in results:
        out += _polls(results, checks, ratios)
    if "sim" in results:
        out += _sim(results, checks)
    out += _headline(results)
    if ratios:
        out += ["### Ratios against floors measured in this run", ""]
        rows = [["ratio", "value"], *([r["label"], _x(r["value"])] for r in ratios)]
        out += [_table(rows), ""]
    out += ["### Targets (issue 13)", ""]
    rows = [["target", "verdict", "measured"]]
    rows += [[c["label"], _verdict(c["ok"]), c["text"]] for c in checks]
    out += [_table(rows), ""]
    out += [_footer(results)]
    return "\n".join(out) + "\n", checks, ratios


def _headline(results: dict) -> list[str]:
    """Before (stage 1, same machine) next to this run, the issue's figures beside them."""
    rows = [["figure", "before (stage 1)", "this run", "issue 13 quotes"]]
    if "claim" in results:
        rows.append(
            [
                "bindings/s one dispatcher can hand out (stage-1 fetch_tick)",
                NOT_MEASURED,
                "no dispatcher: claimers claim for themselves",
                "~1,300 (0.74 ms per publish)",
            ]
        )
    for tier in results.get("claim", {}).get("tiers", []):
        by = {(i["variant"], i["limit"]): i["median_ms"] for i in tier["latency"]}
        ratio = [
            _x(by[scale_claim.PRODUCT, n] / by[scale_claim.FLOOR, n])
            + (" (floor hashed the table)" if _floor_hashed(tier, n) else "")
            for n in tier["limits"]
        ]
        rows.append(
            [
                f"claim / floor, {tier['due']:,} due of {tier['rows']:,} (limits "
                + ", ".join(f"{n:,}" for n in tier["limits"])
                + ")",
                NOT_MEASURED,
                " / ".join(ratio),
                "2.1-2.6x at 500, 6.6-8.2x at 10,000",
            ]
        )
    best = _best_product(results)
    if best:
        n = max(best["polls"], 1)
        worker, postgres = 1000 * best["cpu_s"]["worker"] / n, 1000 * best["cpu_s"]["postgres"] / n
        rows += [
            [
                "empty polls/s on this box (best)",
                BEFORE["polls_label"],
                f"{best['steady_polls_per_s']:,.1f}/s ({_label(best)} processes x sessions)",
                "42 at c=4 (8, 16 no faster)",
            ],
            [
                "CPU per empty poll, worker + PostgreSQL",
                f"{BEFORE['cpu_ms']} ms",
                f"{worker + postgres:.1f} ms ({worker:.1f} + {postgres:.1f})",
                "32 ms (16 + 15)",
            ],
            [
                "statements / commits / new connections per empty poll",
                f"{BEFORE['statements']} / {BEFORE['commits']} / {BEFORE['connections']}",
                f"{best['statements'] / n:.2f} / {best['db']['xact_commit'] / n:.2f} / "
                f"{best['db']['sessions'] / n:.3f}",
                "11 queries, 10 commits",
            ],
        ]
    memory = results.get("poll", {}).get("sessions_memory")
    if memory:
        rows.append(
            [
                "RSS per 100 concurrent sessions",
                f"{BEFORE['rss_per_100']:,.0f} MB (a prefork child each)",
                f"{memory['mb_per_100_sessions']:,.1f} MB (threads of one process)",
                "84 MB per child, one session each",
            ]
        )
    if len(rows) == 1:
        return []
    return ["### Before and after in one table", "", _table(rows, left=4), ""]


def _claims(results: dict, checks: list, ratios: list) -> list[str]:
    claim = results["claim"]
    out = [
        f"### 1. Claims on PostgreSQL (shared server, database `{claim['database']}`)",
        "",
        "One claimer, one claim from a reset table (CHECKPOINT, every due row back, VACUUM: "
        "no variant pays full-page images the others do not), median of "
        "the repeats and in brackets their middle half (first to third quartile); ratio = "
        "variant / `floor` at the same size and limit. `product-statement` is the product's "
        "statement alone (rows left as tuples): `product` minus it is what Python makes of "
        "the rows (models and leases).",
        "",
    ]
    for tier in claim["tiers"]:
        title = f"**{tier['due']:,} due of {tier['rows']:,} bindings**"
        out += _tier_table(tier, title, "", checks, ratios)
    sized = claim.get("sized")
    if sized:
        title = (
            f"**{sized['due']:,} due of {sized['rows']:,} bindings, a private PostgreSQL with "
            f"shared_buffers {sized['shared_buffers']}** (the shared server's other settings; "
            "the binding and schedule tables fit in its buffers, as README “Sizing a "
            f"deployment” asks; the shared server's {sized.get('shared_server_buffers', '?')} "
            "may not hold the binding rows a claim reads and the floor does not)"
        )
        out += _tier_table(
            sized, title, f", shared_buffers {sized['shared_buffers']}", checks, ratios
        )
    sql = next((t["product_sql"] for t in claim["tiers"] if t.get("product_sql")), [])
    if sql:
        out += [
            "The product's claim sends these statements (autocommit):",
            "",
            *[f"{n}. `{' '.join(s.split())[:230]}…`" for n, s in enumerate(sql, 1)],
            "",
        ]
    out += _drain_section(results, checks, ratios)
    out += _sqlite(claim.get("sqlite"), ratios)
    out += [f"**Before: the stage-1 claim and dispatcher**: {NOT_MEASURED}.", ""]
    return out


def _floor_hashed(tier: dict, limit: int) -> bool:
    """The floor hashed the whole table for `limit` in this run (``scale_claim.floor_plan``)."""
    return (tier.get("floor_plans") or {}).get(str(limit)) == scale_claim.HASHED


def _tier_table(tier: dict, title: str, suffix: str, checks: list, ratios: list) -> list[str]:
    """One size's latency table, its ratios and its checks (`suffix` names the server)."""
    by = {(item["variant"], item["limit"]): item for item in tier["latency"]}
    limits = (f"limit {n:,}: ms (middle half)" for n in tier["limits"])
    rows = [["variant", *limits, "ratio", "stmts"]]
    for variant in scale_claim.VARIANTS:
        cells, ratio_cells = [], []
        for limit in tier["limits"]:
            item, floor = by[variant, limit], by[scale_claim.FLOOR, limit]
            low, high = item.get("quartiles_ms") or (item["median_ms"], item["median_ms"])
            cells.append(f"{item['median_ms']:.1f} ({low:.1f}-{high:.1f})")
            value = item["median_ms"] / floor["median_ms"] if floor["median_ms"] else None
            ratio_cells.append(_x(value))
            if variant != scale_claim.FLOOR:
                ratios.append(
                    {
                        "label": f"claim {variant} / floor, {tier['due']:,} due of "
                        f"{tier['rows']:,}, limit {limit:,}{suffix}",
                        "value": value,
                    }
                )
        statements = by[variant, tier["limits"][0]]["statements"]
        rows.append([variant, *cells, " / ".join(ratio_cells), str(statements)])
    for limit in tier["limits"]:
        product, floor = by[scale_claim.PRODUCT, limit], by[scale_claim.FLOOR, limit]
        value = product["median_ms"] / floor["median_ms"]
        ok, text = value <= TARGET_CLAIM_RATIO, ""
        if ok and _floor_hashed(tier, limit):
            # A floor that hashed the whole table is not the floor: a pass against it says
            # nothing (a fail still does).
            ok, text = None, "; not judged: the floor hashed the whole table in this run"
        checks.append(
            {
                "label": f"claim of {tier['due']:,} due of {tier['rows']:,} "
                f"(limit {limit:,}){suffix} <= {TARGET_CLAIM_RATIO}x floor",
                "ok": ok,
                "text": f"product {_x(value)} ({product['median_ms']:.1f} ms vs "
                f"{floor['median_ms']:.1f} ms){text}",
            }
        )
    out = [title, "", _table(rows), ""]
    plans = tier.get("floor_plans") or {}
    if plans:
        said = "; ".join(f"limit {int(n):,}: {plan}" for n, plan in plans.items())
        out += [f"The floor's plan in this run (after the fill's ANALYZE): {said}.", ""]
    return out


def _sqlite(sqlite: dict | None, ratios: list) -> list[str]:
    if not sqlite:
        return []
    ms = sqlite["median_ms"]
    ratios.append(
        {
            "label": f"claim on SQLite product / floor, {sqlite['due']:,} due of "
            f"{sqlite['rows']:,}, limit {sqlite['limit']}",
            "value": ms["product"] / ms["floor"],
        }
    )
    ratios.append(
        {
            "label": "claim on SQLite product / floor in WAL (synchronous=NORMAL)",
            "value": ms["product"] / ms["floor-wal"],
        }
    )
    each = sqlite["release_ms_each"]
    return [
        f"**SQLite {sqlite['sqlite']}** ({sqlite['due']:,} due of {sqlite['rows']:,}, limit "
        f"{sqlite['limit']}, one claimer, median of {sqlite['repeat']}): the product's claim "
        f"{ms['product']:,.1f} ms (one statement, shipped rollback journal; before: "
        f"{NOT_MEASURED}); the floor's single statement on `mapping_schedule` "
        f"{ms['floor']:.1f} ms in the same journal, {ms['floor-wal']:.1f} ms in WAL with "
        "synchronous=NORMAL. One binding's release (its schedule row and its status, two "
        f"UPDATEs in one transaction), each committed: {each['release']:.2f} ms in the "
        f"shipped journal, {each['release-wal']:.2f} ms in WAL.",
        "",
    ]


def _drain_section(results: dict, checks: list, ratios: list) -> list[str]:
    summary = _drain_summary(results)
    if not summary:
        return []
    any_item = next(iter(summary.values()))
    out = [
        f"**Concurrent claimers** (processes, each claiming batches of {any_item['batch']} "
        f"until none is due; {any_item['due']:,} due rows; median of {any_item['repeats']} "
        f"drain(s), each stopped after at most {results['sizes']['drain_s']:g} s). short = "
        "claims that returned less than a batch while rows were still due (a later claim "
        "found some); missed = due rows nobody claimed (- when stopped by time).",
        "",
    ]
    rows = [["variant", "claimers", "claims/s", "rows/s", "claims", "twice", "short", "missed"]]
    variants = sorted({v for v, _ in summary}, key=scale_claim.DRAIN_VARIANTS.index)
    for variant in variants:
        for claimers in (1, 2, 4):
            item = summary.get((variant, claimers))
            if item is None:
                continue
            rows.append(
                [
                    variant,
                    str(claimers),
                    f"{item['claims_per_s']:,.0f}",
                    f"{item['rows_per_s']:,.0f}",
                    str(item["claims"]),
                    str(item["duplicates"]),
                    str(item["short"]),
                    "-" if item["timed_out"] else str(item["missed"]),
                ]
            )
        one, four = summary.get((variant, 1)), summary.get((variant, 4))
        if one and four and one["claims_per_s"]:
            ratios.append(
                {
                    "label": f"claims/s {variant}, 4 claimers / 1",
                    "value": four["claims_per_s"] / one["claims_per_s"],
                }
            )
    out += [_table(rows), ""]
    twice = sum(v["duplicates"] for v in summary.values())
    checks.append(
        {
            "label": "no row claimed twice by concurrent claimers (every variant)",
            "ok": twice == 0,
            "text": f"{twice} rows claimed twice in {sum(v['claims'] for v in summary.values())}"
            " claims",
        }
    )
    for variant in (scale_claim.PRODUCT,):
        rates = [summary.get((variant, n), {}).get("claims_per_s") for n in (1, 2, 4)]
        if None in rates:
            continue
        # "Never shrinking": 5 % of slack for the noise of a shared machine.
        grows = rates[1] >= 0.95 * rates[0] and rates[2] >= 0.95 * rates[1]
        checks.append(
            {
                "label": f"claims/s grow with 1, 2, 4 claimers ({variant})",
                "ok": grows,
                "text": " / ".join(f"{r:,.0f}" for r in rates) + " claims/s",
            }
        )
        short = sum(summary[variant, n]["short"] for n in (1, 2, 4))
        missed = sum(summary[variant, n]["missed"] for n in (1, 2, 4))
        checks.append(
            {
                "label": f"no claim short while rows are due ({variant})",
                "ok": short == 0 and missed == 0,
                "text": f"{short} short claims, {missed} due rows missed",
            }
        )
    return out


def _polls(results: dict, checks: list, ratios: list) -> list[str]:
    poll = results["poll"]
    floor = poll["floor"]
    out = [
        "### 2. Polls of an empty mailbox",
        "",
        "**Raw POP3 client floor** (`bench/scale_pop3.py` → `tests/servers/emptypop.py`, "
        "2 server processes; a poll = connect, greeting, CAPA, USER, PASS, UIDL, QUIT):",
        "",
    ]
    rows = [["client", "sessions", "procs", "TLS", "polls/s", "client CPU ms", "server CPU ms"]]
    for g in poll["floor_grid"]:
        mark = " (floor)" if g is floor else ""
        rows.append(
            [
                g["mode"] + mark,
                str(g["sessions"]),
                str(g["processes"]),
                "yes" if g["tls"] else "no",
                f"{g['polls_per_s']:,.0f}",
                f"{g['client_cpu_ms']:.2f}",
                f"{g['server_cpu_ms']:.2f}",
            ]
        )
    out += [_table(rows), ""]
    hold = [
        f"{h['mode']} {h['mb_per_100_sessions']:.2f} MB per 100 sessions "
        f"({h['sessions']} held open)"
        for h in poll["hold"]
    ]
    out += [f"Memory of idle logged-in sessions in one client process: {'; '.join(hold)}.", ""]
    out += [
        f"**The product end to end** ({poll['bindings']:,} bindings, all due, nothing recorded "
        "(a steady state); beat sends the claimer task every 1 s; prefork worker whose "
        "processes become claimers with FETCH_SESSIONS_PER_PROCESS session threads; shipped "
        "connection settings (CONN_MAX_AGE 60, CELERY_DB_REUSE_MAX 1000); private PostgreSQL "
        "and Redis). CPU per poll from the first tick to the last fetch; "
        "statements from `pg_stat_statements`: sent by the worker (BEGIN/COMMIT and "
        "connection set-up included), in brackets those run inside triggers and foreign-key "
        "checks.",
        "",
    ]
    rows = [
        [
            "procs x sessions", "polls/s", "/ floor", "CPU ms/poll", "worker", "postgres",
            "beat", "redis", "pop3", "stmts/poll", "Django q/poll", "commits/poll",
            "conns/poll", "history rows", "RSS MB/child", "PSS MB/child",
        ]
    ]  # fmt: skip
    for run in poll["product"]:
        n = max(run["polls"], 1)
        cpu = run["cpu_s"]
        children = [m for m in run["memory"] if m["role"] == "child"]
        claimer = run["tasks"].get("mapping.tasks.fetch_claim", {})
        ratio = run["steady_polls_per_s"] / floor["polls_per_s"] if floor["polls_per_s"] else 0
        label = f"empty polls/s {_label(run)} (processes x sessions) / floor"
        ratios.append({"label": label, "value": ratio})
        rows.append(
            [
                _label(run),
                f"{run['steady_polls_per_s']:.1f}",
                _x(ratio),
                f"{1000 * sum(cpu.values()) / n:.1f}",
                f"{1000 * cpu['worker'] / n:.1f}",
                f"{1000 * cpu['postgres'] / n:.1f}",
                f"{1000 * cpu['beat'] / n:.2f}",
                f"{1000 * cpu['redis'] / n:.2f}",
                f"{1000 * cpu['pop3 server'] / n:.2f}",
                f"{run['statements'] / n:.1f} (+{run['nested_statements'] / n:.1f})",
                f"{claimer.get('queries', 0) / n:.2f}",
                f"{run['db']['xact_commit'] / n:.2f}",
                f"{run['db']['sessions'] / n:.3f}",
                str(run.get("history_rows", 0)),
                f"{statistics.mean(m['rss_mb'] for m in children):.0f}" if children else "",
                f"{statistics.mean(m['pss_mb'] for m in children):.0f}" if children else "",
            ]
        )
    out += [_table(rows), ""]
    cost = poll.get("connection_cost")
    if cost:
        out += [
            f"One new PostgreSQL connection (connect, `SELECT 1`, close; {cost['connections']} "
            f"in a row) costs PostgreSQL {cost['pg_cpu_ms']:.1f} ms of CPU and the client "
            f"{cost['wall_ms']:.1f} ms.",
            "",
        ]
    best = _best_product(results)
    if best:
        out += _statement_breakdown(best)
        memory = poll.get("sessions_memory")
        if memory:
            out += [
                f"**RSS per 100 concurrent sessions**: {memory['mb_per_100_sessions']:,.1f} MB — "
                f"one claimer process with FETCH_SESSIONS_PER_PROCESS={memory['sessions']} "
                f"({memory['threads_most']} session threads at most) peaked "
                f"{memory['peak_mb'] - memory['baseline_mb']:.1f} MB above its "
                f"{memory['baseline_mb']:.0f} MB start (Django, the fetch path and a "
                "connection loaded) while polling "
                f"{memory.get('fetched', 0):,} empty mailboxes; before: "
                f"{BEFORE['rss_per_100']:,.0f} MB (one prefork child of ~83 MB per session).",
                "",
            ]
        ratio = best["steady_polls_per_s"] / floor["polls_per_s"]
        checks.append(
            {
                "label": f"empty polls/s >= {TARGET_FLOOR_SHARE}x raw POP3 floor",
                "ok": ratio >= TARGET_FLOOR_SHARE,
                "text": f"{_x(ratio)} (best: {best['steady_polls_per_s']:.1f}/s with "
                f"{_label(best)} processes x sessions; floor {floor['polls_per_s']:,.0f}/s)",
            }
        )
        checks.append(
            {
                "label": f"empty polls/s >= {TARGET_POLLS:.0f} on this box",
                "ok": best["steady_polls_per_s"] >= TARGET_POLLS,
                "text": f"{best['steady_polls_per_s']:.1f}/s",
            }
        )
        per_poll = best["statements"] / max(best["polls"], 1)
        checks.append(
            {
                "label": f"<= {TARGET_STATEMENTS} database statements per empty poll",
                "ok": per_poll <= TARGET_STATEMENTS,
                "text": f"{per_poll:.1f} statements, "
                f"{best['db']['xact_commit'] / max(best['polls'], 1):.1f} commits, "
                f"{best['db']['sessions'] / max(best['polls'], 1):.2f} new connections per poll",
            }
        )
    return out


def _statement_breakdown(run: dict) -> list[str]:
    n = max(run["polls"], 1)
    rows = [["per poll", "rows each", "sent by", "statement (pg_stat_statements, normalised)"]]
    for query, calls, top, *affected in run["top_statements"]:
        if calls / n >= 0.05:
            who = "client" if top else "trigger/FK"
            each = f"{affected[0] / calls:.1f}" if affected and calls else ""
            rows.append([f"{calls / n:.2f}", each, who, query.replace("|", "\\|")[:130]])
    return [
        f"Statements per empty poll with {_label(run)} processes x sessions (those run at least "
        "once per 20 polls; `trigger/FK` = run inside the mailmap trigger or a foreign-key "
        "check, not sent by the worker):",
        "",
        _table(rows, left=3),
        "",
    ]


def _sim(results: dict, checks: list) -> list[str]:
    sim = results["sim"]
    hours = sim["virtual_seconds"] / 3600
    out = [
        f"### 3. Simulated schedule: {sim['bindings']:,} bindings every "
        f"{sim['interval_s'] // 60} minutes",
        "",
        f"Virtual clock, 1 s steps, {hours:g} h (`bench/scale_sim.py`). Lag = now - due time "
        'of the oldest due binding. "keeps up" = steady lag under 30 s (10 % of the interval);'
        " outage = every binding one interval late at t = 0.",
        "",
    ]
    rows = [["model", "per box/s", "cluster cap/s", "boxes: lag < interval", "boxes: keeps up"]]
    for m in sim["models"]:
        rows.append(
            [
                m["model"],
                f"{m['per_box']:,.1f}",
                "none" if m["cluster_cap"] is None else f"{m['cluster_cap']:,.0f}",
                str(m["boxes_lag_under_interval"] or "no number"),
                str(m["boxes_keep_up"] or "no number"),
            ]
        )
    out += [_table(rows), ""]
    samples = [t for t in scale_sim.SAMPLES if t <= sim["virtual_seconds"]]
    head = ["model", "boxes", "start", *(_duration(t) for t in samples), "back < 60 s"]
    rows = [head]
    for m in sim["models"]:
        for s in m["series"]:
            for start in ("steady", "outage"):
                lags = s[f"{start}_lags"]
                back = s["outage_recovered_s"] if start == "outage" else None
                rows.append(
                    [
                        m["model"],
                        str(s["boxes"]),
                        start,
                        *(_duration(lags.get(t, lags.get(str(t), 0))) for t in samples),
                        "" if start == "steady" else ("never" if back is None else _duration(back)),
                    ]
                )
    out += ["Lag of the oldest due binding over time:", "", _table(rows), ""]
    out += ["Where the models' numbers come from:", ""]
    out += [f"- {m['model']}: {m['source']}." for m in sim["models"]]
    out += [""]
    for m in sim["models"]:
        boxes = m["boxes_lag_under_interval"]
        checks.append(
            {
                "label": f"lag stays under one interval ({m['model']})",
                "ok": boxes is not None,
                "text": f"with {boxes} box{'es' if boxes != 1 else ''}"
                if boxes
                else "no number of boxes does it",
            }
        )
    return out


def _duration(seconds: float) -> str:
    seconds = float(seconds)
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def _footer(results: dict) -> str:
    env = results["environment"]
    versions = ", ".join(f"{k} {v}" for k, v in env["versions"].items())
    pg = results.get("poll", {}).get("postgres_version")
    load = "/".join(f"{x:.1f}" for x in results["load_before"])
    load_after = "/".join(f"{x:.1f}" for x in results.get("load_after", (0, 0, 0)))
    return (
        f"{env['cpus']} CPUs; load average (1/5/15 min) {load} before, {load_after} after "
        f"(other work on the machine shows here); PostgreSQL {pg or 'n/a'}; {versions}; "
        f"{results.get('wall_s', 0):.0f} s in all ("
        + ", ".join(f"{k} {v:.0f} s" for k, v in results.get("phase_s", {}).items())
        + ")."
    )


def correct(results: dict) -> bool:
    """No row claimed twice, every poll done once and successfully, no floor failure."""
    if any(d["duplicates"] for d in _drains(results)):
        return False
    poll = results.get("poll")
    if poll:
        for run in poll["product"]:
            if run["failed"] or run["twice"] or run["polls"] < run["bindings"]:
                return False
        if any(g["failed"] for g in poll["floor_grid"]):
            return False
    return True
