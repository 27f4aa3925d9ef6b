"""Processes and ports for the drills' private stack: free ports, children, who owns a socket.

Only the processes a drill started are ever signalled, by process group id (each server runs
in its own session), never by name.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path


def free_port(preferred: int) -> int:
    """`preferred` if nothing listens there, else the next free port above it."""
    for port in range(preferred, preferred + 200):
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port in {preferred}..{preferred + 200}")


def wait_port(port: int, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.1)
    return False


def children(pid: int) -> list[int]:
    """Direct child processes of `pid` (from /proc)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            found.append(int(entry))
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _tcp_inodes_by_port() -> dict[int, str]:
    """Local port → socket inode, for IPv4/IPv6 TCP sockets on this machine."""
    out: dict[int, str] = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            parts = line.split()
            out[int(parts[1].rsplit(":", 1)[1], 16)] = parts[9]
    return out


def pids_owning_ports(ports: list[int], candidates: list[int]) -> dict[int, int]:
    """Which of `candidates` holds a socket bound locally to each port (port → pid)."""
    inodes = _tcp_inodes_by_port()
    wanted = {f"socket:[{inodes[p]}]": p for p in ports if p in inodes}
    owners: dict[int, int] = {}
    for pid in candidates:
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if target in wanted:
                owners[wanted[target]] = pid
    return owners


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen
    log: Path
    killed: bool = False  # stopped on purpose (by a drill): the supervisor leaves it dead

    @property
    def pid(self) -> int:
        return self.popen.pid

    def kill_group(self, sig: int = signal.SIGKILL) -> None:
        try:
            os.killpg(self.popen.pid, sig)
        except ProcessLookupError:
            pass

    def stop(self, timeout: float = 10) -> None:
        if self.popen.poll() is None:
            self.kill_group(signal.SIGTERM)
            try:
                self.popen.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                pass
        self.kill_group(signal.SIGKILL)  # and any child left behind in the group
        try:
            self.popen.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
