"""`make run`: the embedded default, everything on one machine with nothing but Python.

Runs `manage.py migrate` and `manage.py load_seeds --demo`, then starts three children and
watches them:

- a real Celery worker (`celery -A testbed worker`),
- Celery beat with django_celery_beat's DatabaseScheduler (from settings),
- the web server (`manage.py runserver HOST:PORT --noreload`).

With no DATABASE_URL / REDIS_URL / CELERY_BROKER_URL set, settings pick SQLite under var/
(or TESTBED_VAR_DIR) and the `filesystem://` Celery broker, so no server is needed. PORT and
HOST override where the web server listens (default 127.0.0.1:8000).

Ctrl-C (SIGINT) or SIGTERM stops every child (terminate, wait, then kill) and exits 0. When
a child dies on its own, the others are stopped and we exit non-zero naming the one that
died. Each child runs in its own process group, so a Ctrl-C at the terminal reaches only us
and the shutdown happens in one order, and the worker's pool processes go with it.

Every child we start is announced on stdout as `devserver: started NAME (pid N)`.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
MANAGE = str(BASE_DIR / "manage.py")
STOP_GRACE_SECONDS = 10.0
WEB_READY_SECONDS = 60.0
POLL_SECONDS = 0.2
BANNER_SETTLE_SECONDS = 2.0

EXIT_CHILD_DIED = 1
EXIT_SETUP_FAILED = 2


def _queues() -> str:
    """The default queue and the integrations queue (testbed/settings.py), as the env names them."""
    default = os.environ.get("CELERY_TASK_DEFAULT_QUEUE") or "celery"
    return f"{default},{os.environ.get('TESTBED_INTEGRATIONS_QUEUE') or 'integrations'}"


def say(message: str) -> None:
    print(f"devserver: {message}", flush=True)


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    """Ask Linux to send the child SIGTERM when we die, even by SIGKILL (no orphans left)."""
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, signal.SIGTERM)
    except Exception:  # noqa: S110 - best effort: not Linux, or no libc
        pass


@dataclass
class Child:
    name: str
    args: list[str]
    process: subprocess.Popen | None = field(default=None, repr=False)

    def start(self, env: dict[str, str], **popen_kwargs) -> None:
        self.process = subprocess.Popen(  # noqa: S603 - our own interpreter and fixed arguments
            self.args,
            cwd=str(BASE_DIR),
            env=env,
            start_new_session=True,
            preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None,
            **popen_kwargs,
        )
        say(f"started {self.name} (pid {self.process.pid})")

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    def returncode(self) -> int | None:
        return self.process.poll() if self.process else None

    def _signal_group(self, sig: int) -> None:
        assert self.process is not None
        try:
            os.killpg(self.process.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass

    def stop(self, grace: float = STOP_GRACE_SECONDS) -> None:
        """SIGTERM (a warm shutdown for Celery), wait up to `grace`, then SIGKILL the group."""
        if self.process is None:
            return
        if self.process.poll() is None:
            try:
                self.process.terminate()
            except ProcessLookupError:
                pass
            try:
                self.process.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                say(
                    f"{self.name} (pid {self.process.pid}) did not stop in {grace:.0f} s: killing it"
                )
                self._signal_group(signal.SIGKILL)
                self.process.wait(timeout=grace)
        # Whatever is left in its process group (the worker's pool processes) goes too.
        self._signal_group(signal.SIGKILL)


class DevServer:
    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        self.host = env.get("HOST", "127.0.0.1")
        self.port = env.get("PORT", "8000")
        self.children: list[Child] = []
        self.stop_signal: int | None = None

    # --- signals --------------------------------------------------------------------------
    def _on_signal(self, signum, frame) -> None:
        # Only note it: the loops below look at the flag, so no child is ever half-started.
        if self.stop_signal is None:
            self.stop_signal = signum

    def install_signal_handlers(self) -> None:
        signal.signal(signal.SIGINT, self._on_signal)
        signal.signal(signal.SIGTERM, self._on_signal)

    @property
    def stop_requested(self) -> bool:
        return self.stop_signal is not None

    # --- commands --------------------------------------------------------------------------
    def manage(self, *args: str) -> list[str]:
        return [sys.executable, MANAGE, *args]

    def celery(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "celery", "-A", "testbed", *args]

    # --- steps -----------------------------------------------------------------------------
    def run_step(self, name: str, args: list[str]) -> tuple[int | None, str]:
        """Run one set-up command to its end, echoing its output; (None, ...) when stopped.

        The output goes to a file we read as it grows (not a pipe we would block on), so a
        Ctrl-C is noticed at once.
        """
        with tempfile.TemporaryDirectory(prefix="testbed-devserver-") as folder:
            path = Path(folder) / f"{name}.log"
            output: list[str] = []
            step = Child(name, args)
            with open(path, "wb") as sink, open(path, encoding="utf-8", errors="replace") as reader:
                self.children = [step]
                step.start(self.env, stdout=sink, stderr=subprocess.STDOUT)
                while True:
                    code = step.returncode()
                    chunk = reader.read()
                    if chunk:
                        sys.stdout.write(chunk)
                        sys.stdout.flush()
                        output.append(chunk)
                    if code is not None or self.stop_requested:
                        break
                    time.sleep(POLL_SECONDS)
            if code is None:
                return None, "".join(output)  # stopped: stop_all() ends it
            self.children = []
            return code, "".join(output)

    def check_port_free(self) -> bool:
        if not self.port.isdigit() or not 0 < int(self.port) < 65536:
            say(f"PORT={self.port!r} is not a port number: set PORT to e.g. 8000")
            return False
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind((self.host, int(self.port)))
            except OSError as exc:
                say(
                    f"cannot listen on {self.host}:{self.port} ({exc.strerror}): stop what uses it, "
                    "or choose another port, e.g. PORT=8001 make run"
                )
                return False
        return True

    def load_seeds_available(self) -> bool:
        import django
        from django.core.management import get_commands

        django.setup()
        return "load_seeds" in get_commands()

    def wait_for_web(self, web: Child) -> bool:
        deadline = time.monotonic() + WEB_READY_SECONDS
        while time.monotonic() < deadline and not self.stop_requested:
            if web.returncode() is not None:
                return False
            try:
                with socket.create_connection((self.host, int(self.port)), timeout=1):
                    return True
            except OSError:
                time.sleep(POLL_SECONDS)
        return False

    def settle(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and not self.stop_requested:
            time.sleep(POLL_SECONDS)

    def banner(self, seed_output: str) -> None:
        from django.conf import settings

        base = f"http://{self.host}:{self.port}"
        database = settings.DATABASES["default"]
        credentials = [
            line.strip()
            for line in seed_output.splitlines()
            if any(word in line.lower() for word in ("password", "비밀번호"))
        ]
        lines = [
            "",
            "=" * 76,
            "testbed is running",
            f"  web page   {base}/",
            f"  admin      {base}/admin/",
            f"  API docs   {base}/api/docs/   (schema {base}/api/schema/)",
            f"  API        {base}/api/v1/     (token: POST {base}/api/v1/auth/token)",
            f"  health     {base}/healthz",
            f"  database   {database['ENGINE'].rsplit('.', 1)[-1]} {database['NAME']}",
            f"  broker     {settings.CELERY_BROKER_URL}",
        ]
        if credentials:
            lines.append("  sign in as (demo users from load_seeds --demo):")
            lines += [f"    {line}" for line in credentials]
        elif seed_output:
            lines.append("  sign in as: the demo users load_seeds printed above")
        else:
            lines.append(
                f"  sign in as: nobody yet; make an operator with "
                f"{sys.executable} manage.py createsuperuser"
            )
        lines += ["Press Ctrl-C to stop everything.", "=" * 76, ""]
        print("\n".join(lines), flush=True)

    # --- run -------------------------------------------------------------------------------
    def run(self) -> int:
        self.install_signal_handlers()
        try:
            code = self._run()
        finally:
            self.stop_all()
        if self.stop_signal is not None:
            say(f"{signal.Signals(self.stop_signal).name} received: everything stopped")
            return 0
        return code

    def _run(self) -> int:
        if not self.check_port_free():
            return EXIT_SETUP_FAILED

        code, _ = self.run_step("migrate", self.manage("migrate", "--no-input"))
        if code is None:
            return 0
        if code != 0:
            say(f"`manage.py migrate` failed with exit code {code}: see its output above")
            return EXIT_SETUP_FAILED

        seed_output = ""
        if self.load_seeds_available():
            code, seed_output = self.run_step("load_seeds", self.manage("load_seeds", "--demo"))
            if code is None:
                return 0
            if code != 0:
                say(
                    f"`manage.py load_seeds --demo` failed with exit code {code}: see its output above"
                )
                return EXIT_SETUP_FAILED
        else:
            say(
                "WARNING: there is no load_seeds command yet, so no demo data is loaded "
                "(`manage.py load_seeds --demo` skipped); starting with an empty catalogue"
            )

        planned = [
            Child(
                "celery worker",
                # One worker serves both queues here (docker-compose.yml gives each its own).
                self.celery("worker", "-l", "info", "-Q", _queues(), "--concurrency", "2"),
            ),
            Child("celery beat", self.celery("beat", "-l", "info")),
            Child("web server", self.manage("runserver", f"{self.host}:{self.port}", "--noreload")),
        ]
        for child in planned:
            if self.stop_requested:
                return 0
            child.start(self.env)
            self.children.append(child)

        if self.wait_for_web(planned[-1]):
            self.settle(BANNER_SETTLE_SECONDS)  # let the children's start-up lines go first
            self.banner(seed_output)
        return self.watch()

    def watch(self) -> int:
        while not self.stop_requested:
            for child in self.children:
                code = child.returncode()
                if code is not None:
                    say(
                        f"{child.name} (pid {child.pid}) exited unexpectedly with code {code}: "
                        "stopping the others"
                    )
                    return code if code > 0 else EXIT_CHILD_DIED
            time.sleep(POLL_SECONDS)
        return 0

    def stop_all(self) -> None:
        running = [child for child in self.children if child.returncode() is None]
        if running:
            say("stopping " + ", ".join(f"{c.name} (pid {c.pid})" for c in running))
        for child in reversed(self.children):  # web first, then beat, then the worker
            try:
                child.stop()
            except Exception as exc:  # keep stopping the rest
                say(f"could not stop {child.name} (pid {child.pid}): {exc}")
        self.children = []


def main() -> int:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "testbed.settings")
    env = dict(os.environ)
    env.setdefault("PYTHONUNBUFFERED", "1")
    return DevServer(env).run()


if __name__ == "__main__":
    sys.exit(main())
