"""`make run` (python -m testbed.devserver) on a fresh machine: starts, serves, stops cleanly.

Runs the real thing in a subprocess with a fresh TESTBED_VAR_DIR and none of DATABASE_URL,
REDIS_URL, CELERY_BROKER_URL: the embedded default (SQLite, filesystem broker). Every
process it starts carries TESTBED_VAR_DIR=<this test's folder> in its environment, which is
how the test finds (and, on failure, kills) anything left behind.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
START_TIMEOUT = 90.0
STOP_TIMEOUT = 60.0
SERVICE_VARIABLES = {
    "DATABASE_URL",
    "REDIS_URL",
    "CELERY_BROKER_URL",
    "CELERY_RESULT_BACKEND",
    "CELERY_BROKER_WRITE_URL",
    "CELERY_BROKER_READ_URL",
}

MAKE_TOKEN = """
from django.contrib.auth import get_user_model
from testbed.api.auth import token_for
user, _ = get_user_model().objects.get_or_create(username="devserver-test")
print(token_for(user))
"""

SEND_PING = """
import sys
from testbed.celery import ping
print(ping.apply_async(args=[sys.argv[1]]).id)
"""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def load_seeds_exists() -> bool:
    from django.core.management import get_commands

    return "load_seeds" in get_commands()


def get(url: str, token: str | None = None) -> tuple[int, dict | None]:
    request = urllib.request.Request(url)  # noqa: S310 - http://127.0.0.1 only
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as error:
        return error.code, None
    except (urllib.error.URLError, ConnectionError, TimeoutError, json.JSONDecodeError):
        return 0, None


def processes_marked(marker: str) -> list[int]:
    """Live (not zombie) processes whose environment holds `marker` (Linux /proc)."""
    found = []
    needle = marker.encode() + b"\0"
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if (entry / "stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
                continue
            if needle in (entry / "environ").read_bytes() + b"\0":
                found.append(int(entry.name))
        except (OSError, IndexError):
            continue
    return found


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


class DevServer:
    def __init__(self, tmp_path: Path) -> None:
        self.var_dir = tmp_path / "var"
        self.var_dir.mkdir()
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.env = {k: v for k, v in os.environ.items() if k not in SERVICE_VARIABLES}
        self.env.update(
            TESTBED_VAR_DIR=str(self.var_dir), PORT=str(self.port), PYTHONUNBUFFERED="1"
        )
        self.marker = f"TESTBED_VAR_DIR={self.var_dir}"
        self.log_path = tmp_path / "devserver.log"
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        with open(self.log_path, "wb") as sink:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "testbed.devserver"],
                cwd=ROOT, env=self.env, stdout=sink, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def fail(self, message: str) -> None:
        pytest.fail(f"{message}\n--- devserver output (tail) ---\n{self.log()[-6000:]}")

    def child_pids(self) -> dict[str, int]:
        return {
            name: int(pid)
            for name, pid in re.findall(r"devserver: started (.+?) \(pid (\d+)\)", self.log())
        }

    def manage_py(self, script: str, *args: str) -> str:
        """Run Python against the devserver's own database and settings; its stdout."""
        env = dict(self.env)
        env.pop("PORT")
        done = subprocess.run(
            [sys.executable, "-c", "import django; django.setup()\n" + script, *args],
            cwd=ROOT, env={**env, "DJANGO_SETTINGS_MODULE": "testbed.settings"},
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        if done.returncode != 0:
            self.fail(f"helper script failed: {done.stderr[-2000:]}")
        return done.stdout.strip().splitlines()[-1]

    def wait_until(self, predicate, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            if self.process is not None and self.process.poll() is not None:
                self.fail(f"the devserver exited with code {self.process.returncode} before {what}")
            if time.monotonic() > deadline:
                self.fail(f"{what} did not happen within {timeout:.0f} s")
            time.sleep(0.3)

    def cleanup(self) -> None:
        """Whatever happened: stop the devserver, then kill anything it left (by pid)."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)
        for pid in processes_marked(self.marker):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


@pytest.fixture
def devserver(tmp_path):
    server = DevServer(tmp_path)
    try:
        yield server
    finally:
        server.cleanup()


def test_make_run_starts_everything_serves_and_stops_cleanly_on_ctrl_c(devserver):
    seeds = load_seeds_exists()
    devserver.start()

    devserver.wait_until(
        lambda: get(f"{devserver.base}/healthz")[0] == 200, START_TIMEOUT, "GET /healthz = 200"
    )
    assert get(f"{devserver.base}/healthz") == (200, {"database": "ok", "broker": "ok"})
    children = devserver.child_pids()
    assert {"celery worker", "celery beat", "web server"} <= set(children), devserver.log()
    for name in ("celery worker", "celery beat", "web server"):
        assert alive(children[name]), f"{name} is not running"
    devserver.wait_until(lambda: "testbed is running" in devserver.log(), 30, "the banner")
    log = devserver.log()
    for where in ("/admin/", "/api/docs/", f"http://127.0.0.1:{devserver.port}/"):
        assert where in log, f"the banner does not say where {where} is"
    assert (devserver.var_dir / "testbed.sqlite3").exists(), (
        "the database is not under TESTBED_VAR_DIR"
    )
    assert "django_celery_beat.schedulers.DatabaseScheduler" in log

    token = devserver.manage_py(MAKE_TOKEN)
    status, body = get(f"{devserver.base}/api/v1/equipment-types", token)
    assert status == 200
    if seeds:
        assert body["count"] > 0, "load_seeds --demo loaded no equipment types"
        assert "load_seeds" in log
    else:
        assert "WARNING" in log and "load_seeds" in log, "the skipped seed step is not announced"

    # The worker it started consumes tasks from the filesystem broker.
    ping_token = secrets.token_hex(6)
    task_id = devserver.manage_py(SEND_PING, ping_token)
    devserver.wait_until(
        lambda: f"Task testbed.ping[{task_id}] succeeded" in devserver.log(),
        30,
        "the worker running testbed.ping",
    )

    devserver.process.send_signal(signal.SIGINT)
    try:
        code = devserver.process.wait(timeout=STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        devserver.fail(f"the devserver did not stop within {STOP_TIMEOUT:.0f} s of SIGINT")
    assert code == 0, devserver.log()[-3000:]
    left = {name: pid for name, pid in children.items() if alive(pid)}
    assert not left, f"still running after Ctrl-C: {left}"
    assert processes_marked(devserver.marker) == [], "processes with our TESTBED_VAR_DIR are left"


def test_make_run_stops_everything_and_names_a_child_that_dies(devserver):
    devserver.start()
    devserver.wait_until(
        lambda: get(f"{devserver.base}/healthz")[0] == 200, START_TIMEOUT, "GET /healthz = 200"
    )
    children = devserver.child_pids()

    os.kill(children["celery beat"], signal.SIGKILL)

    try:
        code = devserver.process.wait(timeout=STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        devserver.fail("the devserver kept running after celery beat died")
    assert code != 0
    assert re.search(r"celery beat \(pid \d+\) exited unexpectedly", devserver.log())
    assert not [name for name, pid in children.items() if alive(pid)]
    assert processes_marked(devserver.marker) == []


def test_make_run_says_when_the_port_is_taken(devserver):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as holder:
        holder.bind(("127.0.0.1", devserver.port))
        holder.listen()
        devserver.start()
        code = devserver.process.wait(timeout=60)

    assert code != 0
    assert "cannot listen on" in devserver.log() and "PORT=" in devserver.log()
    assert devserver.child_pids() == {}


def test_make_run_stops_everything_on_sigterm(devserver):
    devserver.start()
    devserver.wait_until(
        lambda: get(f"{devserver.base}/healthz")[0] == 200, START_TIMEOUT, "GET /healthz = 200"
    )
    children = devserver.child_pids()

    devserver.process.send_signal(signal.SIGTERM)

    assert devserver.process.wait(timeout=STOP_TIMEOUT) == 0
    assert "SIGTERM received" in devserver.log()
    assert not [name for name, pid in children.items() if alive(pid)]
    assert processes_marked(devserver.marker) == []


def test_make_run_can_be_stopped_while_it_migrates(devserver):
    devserver.start()
    devserver.wait_until(lambda: "started migrate" in devserver.log(), 30, "the migrate step")

    devserver.process.send_signal(signal.SIGINT)

    assert devserver.process.wait(timeout=STOP_TIMEOUT) == 0
    assert "started celery worker" not in devserver.log()
    assert processes_marked(devserver.marker) == []
