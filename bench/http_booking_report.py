"""The write-up of bench.http_booking's figures: targets, what limits each figure, the tables.

`render(figures)` turns the dict bench.http_booking measured (also saved as
var/bench/http_booking.json) into the markdown section of docs/benchmarks.md. Pure: no I/O, so
tests/bench/test_http_booking_report.py checks it on made-up figures.
"""

from __future__ import annotations

import os

CORES = os.cpu_count() or 2
TARGET_RATE = {8: 300, 32: 450}
TARGET_P99_MS = 150
TARGET_RSS_MB = 150
TARGET_AVAILABILITY_P95_MS = 20
GENERATOR = "load generator"
ROLE_ORDER = ("web (gunicorn)", "worker (Celery)", "PostgreSQL", "Redis")
CASE_TITLES = {"equipment": "equipment", "gpu pool": "GPU pool"}


def _mark(ok: bool) -> str:
    return "✅" if ok else "❌"


def _level(case: dict, clients: int) -> dict | None:
    return next((lv for lv in case["levels"] if lv["clients"] == clients), None)


def cpu_budget(level: dict) -> dict:
    """Server CPU per booking, with the generator, the 2-core ceilings and how busy the
    machine was (and how much of that was other programs)."""
    per = level["cpu_ms_per_booking"]
    server_ms = sum(ms for role, ms in per.items() if role != GENERATOR)
    all_ms = server_ms + per.get(GENERATOR, 0.0)
    capacity_ms = 1000 * CORES
    wall = level["wall_s"] or 1.0
    ours_s = all_ms * max(1, level["confirmed"]) / 1000
    machine_s = level.get("machine_busy_s", 0.0)
    biggest = max(
        ((role, ms) for role, ms in per.items() if role != GENERATOR),
        key=lambda item: item[1],
        default=("?", 0.0),
    )
    return {
        "server_ms": server_ms,
        "all_ms": all_ms,
        "ceiling": capacity_ms / all_ms if all_ms else 0.0,
        "server_ceiling": capacity_ms / server_ms if server_ms else 0.0,
        "busy": min(1.0, machine_s / (wall * CORES)),  # clock ticks vs wall: can read 101%
        "others": max(0.0, machine_s - ours_s) / (wall * CORES),
        "biggest": biggest,
    }


def limit_of_rate(level: dict) -> str:
    b = cpu_budget(level)
    mean = level["mean_ms"]
    if level["clients"] == 1:
        return (
            f"one request at a time: 1 ÷ {mean:.0f} ms mean = {1000 / mean if mean else 0:.0f}/s; "
            f"latency bounds it, not CPU ({b['all_ms']:.1f} ms CPU per booking)"
        )
    role, ms = b["biggest"]
    if b["busy"] >= 0.85:
        left = (
            f", {b['ceiling'] * (1 - b['others']):.0f}/s with what others left"
            if b["others"] >= 0.05
            else ""
        )
        return (
            f"CPU: cores {b['busy']:.0%} busy ({b['others']:.0%} other programs); "
            f"{b['all_ms']:.1f} ms CPU per booking → ceiling {b['ceiling']:.0f}/s{left} "
            f"({b['server_ceiling']:.0f}/s without the load generator); largest {role} "
            f"{ms:.1f} ms"
        )
    return (
        f"waiting, not CPU: cores {b['busy']:.0%} busy; {level['clients']} clients spend "
        f"{mean:.0f} ms per request queued (locks, the decider, the hand-off); the CPU ceiling "
        f"would be {b['ceiling']:.0f}/s"
    )


def limit_of_p99(level: dict) -> str:
    rate = level["confirmed_per_s"]
    mean, p99 = level["mean_ms"], level["p99_ms"]
    if not rate or not mean:
        return "no confirmed bookings"
    ratio = p99 / mean
    needed = level["clients"] * ratio * 1000 / TARGET_P99_MS
    return (
        f"throughput: {level['clients']} clients in a closed loop wait {level['clients']} ÷ "
        f"{rate:.0f}/s ≈ {1000 * level['clients'] / rate:.0f} ms on average (Little's law); "
        f"p99 is {ratio:.1f}× the mean, so < {TARGET_P99_MS} ms needs ≈ {needed:.0f}/s"
    )


def _rss_max(rows: list, kind: str) -> float:
    values = [mb for _pid, role, mb in rows if kind == "any" or role == kind]
    return max(values) if values else 0.0


def _fmt_outcomes(outcomes: dict) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted(outcomes.items()))


def _summary(figures: dict) -> list[str]:
    cases = figures["cases"]
    head = "| figure | target | " + " | ".join(CASE_TITLES.get(c["name"], c["name"]) for c in cases)
    lines = [
        "### Against the targets (issue 10), and what limits each figure now",
        "",
        head + " | what limits it now |",
        "|---|---|" + "---:|" * len(cases) + "---|",
    ]
    for clients, target in TARGET_RATE.items():
        cells, limits = [], []
        for case in cases:
            lv = _level(case, clients)
            if lv is None:
                cells.append("—")
                continue
            cells.append(f"{lv['confirmed_per_s']:.0f} {_mark(lv['confirmed_per_s'] >= target)}")
            limits.append(f"{CASE_TITLES.get(case['name'], case['name'])}: {limit_of_rate(lv)}")
        lines.append(
            f"| confirmed/s, {clients} clients | ≥ {target} | "
            + " | ".join(cells)
            + f" | {'; '.join(limits)} |"
        )
    cells, limits = [], []
    for case in cases:
        lv = _level(case, 32)
        if lv is None:
            cells.append("—")
            continue
        cells.append(f"{lv['p99_ms']:.0f} ms {_mark(lv['p99_ms'] < TARGET_P99_MS)}")
        limits.append(f"{CASE_TITLES.get(case['name'], case['name'])}: {limit_of_p99(lv)}")
    lines.append(
        f"| p99 request→decision, 32 clients | < {TARGET_P99_MS} ms | "
        + " | ".join(cells)
        + f" | {'; '.join(limits)} |"
    )
    cells = []
    for case in cases:
        race = case.get("race") or {}
        bad = race.get("extra_bookings", 0) + race.get("overlapping_allocation_pairs", 0)
        cells.append(f"{bad} {_mark(bad == 0 and bool(race))}")
    lines.append(
        "| double bookings in the race drill | 0 | "
        + " | ".join(cells)
        + " | the exclusion constraint and the decider's locks (correctness is not a speed) |"
    )
    pg = figures.get("pgbench") or {}
    for clients in (8, 32):
        tps = (pg.get("tps") or {}).get(clients) or (pg.get("tps") or {}).get(str(clients))
        cells = []
        for case in cases:
            lv = _level(case, clients)
            cells.append(f"{lv['confirmed_per_s'] / tps:.1%}" if lv and tps else "—")
        lines.append(
            f"| our share of PostgreSQL's own rate, {clients} clients | — | "
            + " | ".join(cells)
            + f" | pgbench: {f'{tps:,.0f} one-row inserts/s' if tps else pg.get('error', 'not run')} |"
        )
    rss = figures.get("rss_mb") or {}
    web_max = _rss_max(rss.get("web", []), "child")
    worker_max = _rss_max(rss.get("worker", []), "any")
    span = len(cases)
    lines.append(
        f"| RSS of a web worker after the run | < {TARGET_RSS_MB} MB | "
        + " | ".join([f"{web_max:.0f} MB {_mark(web_max < TARGET_RSS_MB)}"] + [""] * (span - 1))
        + " | largest gunicorn worker process (both cases ran on the same servers) |"
    )
    lines.append(
        f"| RSS of a Celery worker after the run | < {TARGET_RSS_MB} MB | "
        + " | ".join(
            [f"{worker_max:.0f} MB {_mark(worker_max < TARGET_RSS_MB)}"] + [""] * (span - 1)
        )
        + " | largest Celery process (main or pool child) |"
    )
    lines.append(_availability_row(figures.get("availability"), span))
    return lines


def _availability_row(av: dict | None, span: int) -> str:
    if not av or "p95_ms" not in av:
        return (
            f"| availability, 30 days, 128 devices, 100k allocations: p95 | "
            f"< {TARGET_AVAILABILITY_P95_MS} ms | " + " | ".join(["—"] * span) + " | see the "
            "availability section (bench.availability wrote no var/bench/availability.json "
            "in this run) |"
        )
    p95 = float(av["p95_ms"])
    p50 = av.get("p50_ms")
    value = f"p50 {float(p50):.1f} / p95 {p95:.1f} ms" if p50 is not None else f"p95 {p95:.1f} ms"
    return (
        f"| availability, 30 days, 128 devices, 100k allocations | p95 < "
        f"{TARGET_AVAILABILITY_P95_MS} ms | "
        + " | ".join([f"{value} {_mark(p95 < TARGET_AVAILABILITY_P95_MS)}"] + [""] * (span - 1))
        + f" | bench.availability ({av.get('_written', '?')}); its own section says more |"
    )


def _cpu_table(figures: dict) -> list[str]:
    cases = figures["cases"]
    levels = [_level(c, 32) for c in cases]
    names = [CASE_TITLES.get(c["name"], c["name"]) for c in cases]
    lines = [
        "### CPU per process per confirmed booking, 32 clients",
        "",
        f"From /proc: gunicorn and Celery are the process trees this benchmark started; "
        "PostgreSQL is the backends of the bench database plus the server's WAL writer, "
        "checkpointer and background writer; Redis is the whole redis-server (those shared "
        f"processes also serve anything else on the machine). {CORES} cores give "
        f"{1000 * CORES:,} ms of CPU per second, so {1000 * CORES:,} ÷ total = the ceiling.",
        "",
        "| process | " + " | ".join(f"{n} ms" for n in names) + " |",
        "|---|" + "---:|" * len(cases),
    ]
    roles = list(ROLE_ORDER) + sorted(
        {r for lv in levels if lv for r in lv["cpu_ms_per_booking"]} - set(ROLE_ORDER) - {GENERATOR}
    )
    for role in roles:
        lines.append(
            f"| {role} | "
            + " | ".join(
                f"{lv['cpu_ms_per_booking'].get(role, 0.0):.2f}" if lv else "—" for lv in levels
            )
            + " |"
        )
    budgets = [cpu_budget(lv) if lv else None for lv in levels]
    rows = [
        ("**server total** (ours)", lambda b, lv: f"**{b['server_ms']:.2f}**"),
        (
            "load generator (not ours; per request)",
            lambda b, lv: f"{lv['client_cpu_ms_per_request']:.2f}",
        ),
        ("all processes", lambda b, lv: f"{b['all_ms']:.2f}"),
        ("ceiling on this machine, bookings/s", lambda b, lv: f"{b['ceiling']:.0f}"),
        ("ceiling without the generator", lambda b, lv: f"{b['server_ceiling']:.0f}"),
        ("measured confirmed/s", lambda b, lv: f"{lv['confirmed_per_s']:.0f}"),
        ("cores busy during the run", lambda b, lv: f"{b['busy']:.0%}"),
        ("… of it other programs", lambda b, lv: f"{b['others']:.0%}"),
    ]
    for label, cell in rows:
        lines.append(
            f"| {label} | "
            + " | ".join(
                cell(b, lv) if b and lv else "—" for b, lv in zip(budgets, levels, strict=True)
            )
            + " |"
        )
    return lines


def _case_table(case: dict, figures: dict) -> list[str]:
    pool = figures.get("pool") or {}
    if case["name"] == "gpu pool":
        title = (
            f"### 1-device bookings on {pool.get('code', 'the pool')} "
            f"({pool.get('nodes', '?')} nodes, {pool.get('devices', '?')} devices, 440 per window)"
        )
    else:
        title = "### Equipment bookings (16 types × 4 units, 3 per unit-hour)"
    lines = [
        title,
        "",
        "| clients | requests | confirmed/s | p50 ms | p95 ms | p99 ms | outcomes | server CPU ms/booking "
        "| generator CPU ms/request | cores busy | connections per web process |",
        "|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|",
    ]
    for lv in case["levels"]:
        b = cpu_budget(lv)
        lines.append(
            f"| {lv['clients']} | {lv['requests']} | {lv['confirmed_per_s']:.1f} | {lv['p50_ms']:.0f} | "
            f"{lv['p95_ms']:.0f} | {lv['p99_ms']:.0f} | {_fmt_outcomes(lv['outcomes'])}"
            f"{_pending_note(lv)} | "
            f"{b['server_ms']:.1f} | {lv['client_cpu_ms_per_request']:.2f} | {b['busy']:.0%} | "
            f"{' / '.join(str(n) for n in lv.get('connections_per_web_process') or []) or '?'} |"
        )
    race = case.get("race") or {}
    if race:
        lines += ["", _race_line(race)]
    return lines


def _pending_note(level: dict) -> str:
    """`pending` answers to `Prefer: wait=10` are undecided in time: say how long they took
    (an early `pending` is a wake-up that came back without the decision)."""
    times = level.get("pending_ms") or []
    if not times:
        return ""
    return f" (pending answered after {min(times) / 1000:.1f}–{max(times) / 1000:.1f} s)"


def _race_line(race: dict) -> str:
    if "slots" in race:
        return (
            f"**Race drill** ({race['what']}): {race['exactly_one']}/{race['slots']} slots ended with "
            f"exactly one confirmed booking, {race['extra_bookings']} extra bookings, "
            f"{race['undecided']} undecided in 20 s, {race['overlapping_allocation_pairs']} "
            f"overlapping active unit allocations in the database; "
            f"{race['rejected_with_alternatives']} losers got alternatives."
        )
    return (
        f"**Race drill** ({race['what']}): {race['confirmed']} confirmed (at most "
        f"{race['devices']} may be), {race['rejected']} rejected, outcomes "
        f"{_fmt_outcomes(race['outcomes'])}; {race['devices_held_in_window']} devices held in the "
        f"window; {race['overlapping_allocation_pairs']} overlapping active device allocations in "
        f"the database."
    )


def _rss_table(figures: dict) -> list[str]:
    rss = figures.get("rss_mb") or {}
    lines = [
        "### Memory after the run (VmRSS)",
        "",
        "| process | RSS MB |",
        "|---|---:|",
    ]
    for kind, label in (("web", "gunicorn"), ("worker", "Celery")):
        for _pid, role, mb in rss.get(kind, []):
            lines.append(f"| {label} {'master' if role == 'master' else 'worker'} | {mb:.0f} |")
    return lines


def _pgbench(figures: dict) -> list[str]:
    pg = figures.get("pgbench") or {}
    if "tps" not in pg:
        return ["### PostgreSQL's own rate", "", f"Not measured: {pg.get('error', 'not run')}."]
    settings = pg.get("settings", {})
    lines = [
        "### PostgreSQL's own rate (pgbench) and our share of it",
        "",
        f"`{pg['binary']}` -M prepared, {pg['seconds']} s per client count: each transaction "
        "inserts one row into a table with booking_allocation's exclusion constraint "
        "(btree_gist, `unit WITH =, tstzrange(start, end) WITH &&`, partial on active rows), "
        f"ranges never overlapping. PostgreSQL {settings.get('server_version', '?')}, fsync "
        f"{settings.get('fsync', '?')}, synchronous_commit {settings.get('synchronous_commit', '?')}; "
        "pgbench runs on the same cores.",
        "",
        "| clients | pgbench tx/s | "
        + " | ".join(
            f"{CASE_TITLES.get(c['name'], c['name'])} confirmed/s (share)" for c in figures["cases"]
        )
        + " |",
        "|---:|---:|" + "---:|" * len(figures["cases"]),
    ]
    for clients, tps in sorted(pg["tps"].items(), key=lambda kv: int(kv[0])):
        cells = []
        for case in figures["cases"]:
            lv = _level(case, int(clients))
            cells.append(
                f"{lv['confirmed_per_s']:.0f} ({lv['confirmed_per_s'] / tps:.1%})"
                if lv and tps
                else "—"
            )
        lines.append(f"| {clients} | {tps:,.0f} | " + " | ".join(cells) + " |")
    return lines


def _floor(figures: dict) -> list[str]:
    floor = figures.get("celery_floor_ms") or {}
    if not floor or "error" in floor:
        return []
    hop = sum(floor.get(r, 0.0) for r in ("worker (Celery)", "Redis", GENERATOR))
    return [
        "",
        f"**Floor of one Celery hop**: a task that does nothing costs {hop:.2f} ms of CPU end to "
        f"end here ({floor.get(GENERATOR, 0.0):.2f} ms to send it, "
        f"{floor.get('worker (Celery)', 0.0):.2f} ms in the worker, {floor.get('Redis', 0.0):.2f} ms "
        "in Redis): what a design with one task per booking pays before any booking work.",
    ]


def render(figures: dict) -> str:
    pool = figures.get("pool") or {}
    secs = figures.get("seconds") or {}
    lines = [
        "## Bookings through HTTP, decided by Celery workers",
        "",
        f"`python -m bench.http_booking`: {figures['web']} (as the Dockerfile and docker-compose.yml "
        f"deploy it; access log off) and one {figures['worker']} worker on Redis, PostgreSQL, "
        "and the load generator, all on this machine. Each client sends `POST /api/v1/bookings` "
        "with `Prefer: wait=10` in a closed loop (its next request when the last is answered) for "
        + ", ".join(f"{s:g} s at {c} client{'s' if str(c) != '1' else ''}" for c, s in secs.items())
        + "; latency is from the first byte sent to the decision received. The load generator is "
        "one asyncio process speaking HTTP/1.1 over persistent connections (bench/loadgen.py); its "
        "CPU is counted apart. 64 bookings from 32 clients warm each case up first (not counted). "
        "A gunicorn process keeps each keep-alive connection it accepted, and a burst of new "
        "connections mostly goes to whichever process accepts first (31 of 32 here), which would "
        "measure one process: the generator re-dials surplus connections until each web process "
        "holds its share (what spread-out arrivals or a least-connections proxy give); the tables "
        "show the split. "
        f"The GPU case uses the seeded {pool.get('code', '?')} ({pool.get('nodes', '?')} × 8 = "
        f"{pool.get('devices', '?')} devices, its own policy).",
        "",
    ]
    if figures.get("quick"):
        lines += ["**Quick smoke run (`--quick`): too short to quote.**", ""]
    lines += _summary(figures)
    lines += [""] + _cpu_table(figures)
    for case in figures["cases"]:
        lines += [""] + _case_table(case, figures)
    lines += [""] + _pgbench(figures)
    lines += [""] + _rss_table(figures)
    lines += _floor(figures)
    lines += [
        "",
        "**Noise**: other programs shared these cores during the run (the “other programs” row "
        "above says how much), so rates are lower and tails longer than on a quiet machine. "
        f"A fixed pure-Python loop took {figures.get('calibration_ms', '?')} ms during this run "
        "(it varies by ±30% between runs on this virtual machine; compare runs with it). "
        f"The whole benchmark took {figures.get('elapsed_s', '?')} s.",
    ]
    return "\n".join(lines)
