"""PostgreSQL's own rate for what a booking must write: pgbench, one-row inserts per transaction
into a table with booking_allocation's exclusion constraint, at several client counts.

    python -m bench.pgbench_excl [--seconds 10] [--clients 8 32]

The table copies booking_allocation's shape and its partial constraint
(`EXCLUDE USING gist (unit_id WITH =, tstzrange(start, "end") WITH &&) WHERE active AND unit_id
IS NOT NULL`, btree_gist); each pgbench client inserts its own unit's consecutive hours, so no
insert ever collides and every transaction commits. Runs in a scratch database (the bench
database's name + `_pgbench`), dropped afterwards. Needs the `pgbench` binary (Debian:
postgresql-15's /usr/lib/postgresql/15/bin/pgbench, or postgresql-contrib); without it the
figures are None and the report says so.
"""

from __future__ import annotations

import argparse
import glob
import os
import re
import shutil
import subprocess
import tempfile
from urllib.parse import urlsplit

TABLE = """
CREATE EXTENSION IF NOT EXISTS btree_gist;
CREATE TABLE bench_allocation (
    id bigserial PRIMARY KEY,
    booking_id bigint NOT NULL,
    unit_id bigint NULL,
    device_id bigint NULL,
    node_id bigint NULL,
    start timestamptz NOT NULL,
    "end" timestamptz NOT NULL,
    active boolean NOT NULL DEFAULT true,
    CONSTRAINT bench_allocation_unit_no_overlap EXCLUDE USING gist
        (unit_id WITH =, tstzrange(start, "end") WITH &&) WHERE (active AND unit_id IS NOT NULL)
);
"""

# `k` is per client and persists across its transactions (pgbench -D k=0): client c's k-th
# insert takes unit c, hour k: never overlapping another row.
SCRIPT = r"""\set k :k + 1
INSERT INTO bench_allocation (booking_id, unit_id, start, "end", active)
VALUES (:k, :client_id, timestamptz '2030-01-01 00:00+09' + :k * interval '1 hour',
        timestamptz '2030-01-01 00:00+09' + (:k + 1) * interval '1 hour', true);
"""


def pgbench_binary() -> str | None:
    found = shutil.which("pgbench")
    if found:
        return found
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/pgbench"), reverse=True)
    return candidates[0] if candidates else None


def parse_tps(output: str) -> float | None:
    """pgbench's `tps = 1234.5 (without initial connection time)` (any pgbench ≥ 13)."""
    match = re.search(r"^tps = ([0-9.]+) \((?:without|excluding)", output, re.M)
    if match is None:
        match = re.search(r"^tps = ([0-9.]+)", output, re.M)
    return float(match.group(1)) if match else None


def _pg_env(url: str) -> tuple[dict[str, str], str]:
    parts = urlsplit(url)
    env = dict(os.environ)
    env.update(
        PGHOST=parts.hostname or "127.0.0.1",
        PGPORT=str(parts.port or 5432),
        PGUSER=parts.username or "postgres",
    )
    if parts.password:
        env["PGPASSWORD"] = parts.password
    return env, parts.path.lstrip("/")


def measure(database_url: str, *, clients: list[int], seconds: int) -> dict:
    """{"tps": {clients: tx/s}, "settings": {...}, "binary": path} or {"error": why}."""
    binary = pgbench_binary()
    if binary is None:
        return {"error": "pgbench not found (install postgresql-15 or postgresql-contrib)"}
    import psycopg

    env, base_name = _pg_env(database_url)
    name = f"{base_name}_pgbench"
    admin = database_url.rsplit("/", 1)[0].replace("postgres://", "postgresql://") + "/postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
        settings = {
            key: conn.execute(f"SHOW {key}").fetchone()[0]  # type: ignore[index]
            for key in ("fsync", "synchronous_commit", "shared_buffers", "server_version")
        }
    try:
        with psycopg.connect(admin.rsplit("/", 1)[0] + f"/{name}", autocommit=True) as conn:
            conn.execute(TABLE)
        tps: dict[int, float | None] = {}
        with tempfile.NamedTemporaryFile("w", suffix=".sql", delete=False) as fh:
            fh.write(SCRIPT)
            script = fh.name
        try:
            for n in clients:
                with psycopg.connect(admin.rsplit("/", 1)[0] + f"/{name}", autocommit=True) as c:
                    c.execute("TRUNCATE bench_allocation")
                    c.execute("CHECKPOINT")
                run = subprocess.run(
                    [
                        binary,
                        "-n",  # no vacuum of pgbench's own tables
                        "-M",
                        "prepared",
                        "-c",
                        str(n),
                        "-j",
                        str(min(n, os.cpu_count() or 2)),
                        "-T",
                        str(seconds),
                        "-D",
                        "k=0",
                        "-f",
                        script,
                        name,
                    ],
                    env=env,
                    capture_output=True,
                    text=True,
                    check=False,
                )
                tps[n] = parse_tps(run.stdout)
                if tps[n] is None:
                    return {"error": f"pgbench failed: {(run.stderr or run.stdout)[-300:]}"}
        finally:
            os.unlink(script)
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    return {"tps": tps, "settings": settings, "binary": binary, "seconds": seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--clients", type=int, nargs="+", default=[8, 32])
    args = parser.parse_args()
    url = os.environ.get("BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/testbed_bench")
    print(measure(url, clients=args.clients, seconds=args.seconds))


if __name__ == "__main__":
    main()
