"""`python -m bench.faults [name ...] [--no-write]`: every drill in turn, each in its own process
and on its own private stack; prints each verdict and writes the `faults` section of
docs/benchmarks.md. Exits 1 when any drill FAILs."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent
DRILLS = [
    "kill_worker",
    "restart_redis",
    "restart_postgres",
    "duplicate_delivery",
    "flag_holder_dies",
    "cluster",
]
KEY_FIGURES = (
    "requests sent",
    "201 outcomes",
    "errors during the fault",
    "max time to final after the fault, s",
    "wait bound, s",
)


def _run(name: str, folder: Path) -> dict:
    out = folder / f"{name}.json"
    t0 = time.monotonic()
    code = subprocess.run(
        [sys.executable, "-m", f"bench.faults.{name}", "--json", str(out)], cwd=ROOT, check=False
    ).returncode
    if out.exists():
        result = json.loads(out.read_text())
    else:  # it crashed before writing its verdict
        result = {"name": name, "state": "FAIL", "figures": {}, "failures": [f"exit code {code}"]}
    result["seconds"] = round(time.monotonic() - t0)
    return result


def _cell(value) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{k} {v}" for k, v in value.items()) or "none"
    return str(value)


def markdown(results: list[dict]) -> str:
    lines = [
        "## Fault drills under load",
        "",
        "`python -m bench.faults` (each alone: `python -m bench.faults.<name>`). Every drill starts "
        "its own PostgreSQL 15 cluster (fsync on) and Redis (append-only file), migrates, loads a "
        "small catalogue (2 equipment types × 2 units, a 3 × 4-device GPU pool, two organisations "
        "with a hard and a soft quota grant), runs gunicorn (gthread) and prefork Celery workers with "
        "production settings, a sweeper queueing `booking.sweep_pending` every 2 s "
        "(TESTBED_PENDING_SWEEP_SECONDS=6), and 8–10 clients posting bookings with `Prefer: wait=5` "
        "at a steady 12–16 requests/s with colliding windows, while the fault happens. Then: every "
        "booking final within the bound (sweep interval + sweeper period + 10 s, + the flag TTL for "
        "the flag drill), no overlapping active allocations and never more booked than capacity, "
        "every 201 has its row and the status the client was told, every hold on the quota ledger "
        "matches a holding booking and no hard grant is overdrawn, no booking decided twice.",
        "",
        "| drill | verdict | requests | 201 outcomes | errors during the fault | longest wait after the fault / bound (s) |",
        "|---|---|---:|---|---|---|",
    ]
    for r in results:
        f = r.get("figures", {})
        lines.append(
            f"| {r['name']} | **{r['state']}** | {f.get('requests sent', '?')} | "
            f"{_cell(f.get('201 outcomes', {}))} | {_cell(f.get('errors during the fault', {}))} | "
            f"{f.get('max time to final after the fault, s', '?')} / {f.get('wait bound, s', '?')} |"
        )
    lines.append("")
    for r in results:
        lines.append(f"**{r['name']}** ({r.get('title', '')}; {r.get('seconds', '?')} s):")
        for key, value in r.get("figures", {}).items():
            if key not in KEY_FIGURES:
                lines.append(f"- {key}: {_cell(value)}")
        for failure in r.get("failures", []):
            lines.append(f"- FAIL: {failure}")
        for note in r.get("notes", []):
            lines.append(f"- note: {note}")
        lines.append("")
    return "\n".join(lines)


def main() -> int:
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    chosen = [d for d in DRILLS if not args or d in args]
    unknown = set(args) - set(DRILLS)
    if unknown:
        print(f"unknown drill(s): {', '.join(sorted(unknown))}; known: {', '.join(DRILLS)}")
        return 2
    with tempfile.TemporaryDirectory(prefix="faults-report-") as folder:
        results = [_run(name, Path(folder)) for name in chosen]
    text = markdown(results)
    print("\n" + "\n".join(f"{r['name']}: {r['state']}" for r in results))
    if "--no-write" not in sys.argv and not args:
        from bench.report import write_section

        print("written to", write_section("faults", text))
    return 1 if any(r["state"] == "FAIL" for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
