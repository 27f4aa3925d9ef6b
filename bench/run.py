"""`make bench`: every benchmark in turn; each rewrites its section of docs/benchmarks.md.

    python -m bench.run [--quick] [NAME ...]

NAME picks benchmarks by their module's last part (e.g. `http_booking availability`).
`--quick` runs only the benchmarks that have a smoke mode, in it (nothing is written to
docs/benchmarks.md by a smoke run). bench.availability runs before bench.http_booking so that
the booking section's summary can quote its figures (var/bench/availability.json, when it
writes one) from the same run: BENCH_RUN_STARTED tells it which files are this run's.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

# (module, extra arguments, arguments in --quick mode or None when it has no smoke mode)
BENCHES: list[tuple[str, list[str], list[str] | None]] = [
    ("bench.availability", [], None),
    ("bench.http_booking", [], ["--quick"]),
    ("bench.trace_replay", [], None),
    ("bench.telemetry_ingest", [], None),
    ("bench.usage_report", [], None),
    ("bench.portal_pages", [], None),
    ("bench.faults", [], None),  # the fault drills (restarts, kills): last, they take longest
]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smoke modes only; docs left alone")
    parser.add_argument("names", nargs="*", help="e.g. http_booking availability (default: all)")
    options = parser.parse_args(argv)
    quick, only = options.quick, set(options.names)
    unknown = only - {module.split(".")[-1] for module, _e, _q in BENCHES}
    if unknown:
        parser.error(f"no benchmark named {', '.join(sorted(unknown))}")
    env = {**os.environ, "BENCH_RUN_STARTED": str(time.time())}
    failed, ran = [], []
    started = time.monotonic()
    for module, extra, quick_args in BENCHES:
        if only and module.split(".")[-1] not in only:
            continue
        if quick and quick_args is None:
            continue
        chosen = quick_args if quick and quick_args is not None else extra
        print(f"=== {module} {' '.join(chosen)}".rstrip(), flush=True)
        t0 = time.monotonic()
        code = subprocess.run([sys.executable, "-m", module, *chosen], check=False, env=env)
        ran.append(f"{module} {time.monotonic() - t0:.0f} s")
        if code.returncode != 0:
            failed.append(module)
    print(f"ran in {time.monotonic() - started:.0f} s: " + ", ".join(ran))
    if failed:
        print("FAILED:", ", ".join(failed))
        return 1
    print("All benchmarks ran; see docs/benchmarks.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
