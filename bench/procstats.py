"""CPU time and resident memory of the benchmark's processes, read from /proc (Linux).

Roles are found precisely, because other programs may share the machine: gunicorn and Celery
are the process trees the benchmark started; PostgreSQL is the backends connected to the
benchmark's database (their title names it) plus the server's shared background processes
(WAL writer, checkpointer, background writer: shared with anyone else using the server); Redis
is the whole redis-server (shared likewise); the load generator is this process. The machine's
total busy CPU (from /proc/stat) is read too, so a run can say how much of the machine was
someone else's.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

TICKS = os.sysconf("SC_CLK_TCK")
PG_SHARED = ("walwriter", "checkpointer", "background writer", "autovacuum", "walsender")


@dataclass(frozen=True)
class Proc:
    pid: int
    ppid: int
    cpu_s: float  # user + system
    cmdline: str


def processes() -> dict[int, Proc]:
    out: dict[int, Proc] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            stat = Path(f"/proc/{name}/stat").read_text()
            raw = Path(f"/proc/{name}/cmdline").read_bytes()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        out[int(name)] = Proc(
            pid=int(name),
            ppid=int(fields[1]),
            cpu_s=(int(fields[11]) + int(fields[12])) / TICKS,
            cmdline=raw.replace(b"\0", b" ").decode(errors="replace").strip(),
        )
    return out


def descendants(roots: list[int], procs: dict[int, Proc]) -> set[int]:
    """The roots and every process below them."""
    children: dict[int, list[int]] = {}
    for p in procs.values():
        children.setdefault(p.ppid, []).append(p.pid)
    found, stack = set(), [r for r in roots if r in procs]
    while stack:
        pid = stack.pop()
        if pid not in found:
            found.add(pid)
            stack.extend(children.get(pid, []))
    return found


def role_of(proc: Proc, *, web: set[int], worker: set[int], database: str) -> str | None:
    if proc.pid in web:
        return "web (gunicorn)"
    if proc.pid in worker:
        return "worker (Celery)"
    title = proc.cmdline
    if title.startswith("postgres:"):
        words = title.split()
        if database in words[1:4]:  # "postgres: [15/main:] user database host(port) state"
            return "PostgreSQL"
        if any(word in title for word in PG_SHARED):
            return "PostgreSQL"
        return None
    if title.startswith("redis-server") or "/redis-server" in title.split(" ", 1)[0]:
        return "Redis"
    return None


def machine_busy_s() -> float:
    """CPU seconds the whole machine has spent busy (all cores, everything but idle/iowait)."""
    fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    values = [int(v) for v in fields]
    idle = values[3] + (values[4] if len(values) > 4 else 0)
    return (sum(values[:8]) - idle) / TICKS


@dataclass
class Snapshot:
    by_role: dict[str, float]
    machine_s: float


class CpuMeter:
    """Snapshots of CPU per role; the difference of two is the CPU a run cost."""

    def __init__(self, *, web_root: int, worker_root: int, database: str) -> None:
        self.web_root, self.worker_root, self.database = web_root, worker_root, database

    def snapshot(self) -> Snapshot:
        import resource

        procs = processes()
        web = descendants([self.web_root], procs)
        worker = descendants([self.worker_root], procs)
        by_role: dict[str, float] = {}
        for proc in procs.values():
            role = role_of(proc, web=web, worker=worker, database=self.database)
            if role:
                by_role[role] = by_role.get(role, 0.0) + proc.cpu_s
        usage = resource.getrusage(resource.RUSAGE_SELF)
        by_role["load generator"] = usage.ru_utime + usage.ru_stime
        return Snapshot(by_role=by_role, machine_s=machine_busy_s())

    @staticmethod
    def spent(before: Snapshot, after: Snapshot) -> tuple[dict[str, float], float]:
        """(CPU seconds per role, machine busy seconds) between two snapshots."""
        roles = {
            role: max(0.0, seconds - before.by_role.get(role, 0.0))
            for role, seconds in after.by_role.items()
        }
        return roles, max(0.0, after.machine_s - before.machine_s)


def established_on_port(port: int) -> set[int]:
    """Socket inodes of ESTABLISHED TCP connections whose local port is `port`."""
    inodes: set[int] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            rows = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            cols = row.split()
            if len(cols) > 9 and cols[3] == "01" and int(cols[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(int(cols[9]))
    return inodes


def _socket_owners(pids: set[int]) -> dict[int, int]:
    """Socket inode → pid, for the sockets the given processes hold."""
    owners: dict[int, int] = {}
    for pid in pids:
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                link = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if link.startswith("socket:["):
                owners[int(link[8:-1])] = pid
    return owners


def server_processes(root: int) -> list[int]:
    """The worker processes below a server's master (gunicorn's workers)."""
    return sorted(descendants([root], processes()) - {root})


def owners_of_client_ports(root: int, port: int, client_ports: list[int]) -> dict[int, int]:
    """Which worker below `root` holds the server end of each loopback client connection
    (client's local port → worker pid), for connections to `port`."""
    wanted = set(client_ports)
    by_inode: dict[int, int] = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            rows = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            cols = row.split()
            if len(cols) <= 9 or cols[3] != "01":
                continue
            local, remote = int(cols[1].rsplit(":", 1)[1], 16), int(cols[2].rsplit(":", 1)[1], 16)
            if local == port and remote in wanted:
                by_inode[int(cols[9])] = remote
    owners = _socket_owners(set(server_processes(root)))
    return {remote: owners[inode] for inode, remote in by_inode.items() if inode in owners}


def connections_per_process(root: int, port: int) -> dict[int, int]:
    """How many client connections on `port` each child of `root` holds (gunicorn workers keep
    a keep-alive connection for its whole life, so this is how the load is split)."""
    inodes = established_on_port(port)
    procs = processes()
    out: dict[int, int] = {}
    for pid in sorted(descendants([root], procs) - {root}):
        count = 0
        try:
            for fd in os.listdir(f"/proc/{pid}/fd"):
                try:
                    link = os.readlink(f"/proc/{pid}/fd/{fd}")
                except OSError:
                    continue
                if link.startswith("socket:[") and int(link[8:-1]) in inodes:
                    count += 1
        except OSError:
            continue
        out[pid] = count
    return out


def rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def tree_rss(root: int) -> list[tuple[int, str, float]]:
    """(pid, 'master'|'child', RSS MB) for a process and everything below it."""
    procs = processes()
    out = []
    for pid in sorted(descendants([root], procs)):
        mb = rss_mb(pid)
        if mb is not None:
            out.append((pid, "master" if pid == root else "child", mb))
    return out
