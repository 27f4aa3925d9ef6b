"""`make bench`: every benchmark in turn; each rewrites its section of docs/benchmarks.md."""

from __future__ import annotations

import subprocess
import sys

BENCHES = [
    ("bench.http_booking", []),
    ("bench.availability", []),
    ("bench.trace_replay", []),
    ("bench.telemetry_ingest", []),
    ("bench.usage_report", []),
    ("bench.portal_pages", []),
]


def main() -> int:
    only = set(sys.argv[1:])
    failed = []
    for module, extra in BENCHES:
        if only and module.split(".")[-1] not in only:
            continue
        print(f"=== {module}", flush=True)
        if subprocess.run([sys.executable, "-m", module, *extra], check=False).returncode != 0:
            failed.append(module)
    if failed:
        print("FAILED:", ", ".join(failed))
        return 1
    print("All benchmarks ran; see docs/benchmarks.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
