"""A REAL Celery worker process for tests: real broker (Redis), real test database.

Register in tests/conftest.py with:

    from tests.worker import celery_worker, celery_worker_concurrency  # noqa: F401

Use it from tests marked `@pytest.mark.redis` and `@pytest.mark.postgres` that take
`transactional_db`, so the rows a test writes are committed and the worker can see them:

    @pytest.mark.redis
    @pytest.mark.postgres
    def test_it_allocates(transactional_db, celery_worker):
        ...

`celery_worker` is session-scoped: one worker for the whole run, started after pytest-django
has created the test database and stopped before it is dropped. Its concurrency is the
`celery_worker_concurrency` fixture (2, or TESTBED_TEST_WORKER_CONCURRENCY); override that
fixture in a conftest for more.

`start_worker(env_overrides)` starts another worker with different settings (e.g. a control
case with locking off) for the length of a `with` block. By default it is *exclusive*: the
workers started by this module stop consuming the default queue until the block ends, so
every task the test sends goes to the new worker.

Every worker's stdout and stderr go to a log file (never a pipe that could fill and block
it); failures quote its tail.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

import pytest

ROOT = Path(__file__).resolve().parent.parent
READY_TIMEOUT_SECONDS = 30.0
STOP_TIMEOUT_SECONDS = 15.0

# Workers started here that are running now: start_worker(exclusive=True) pauses them.
_running: list[WorkerProcess] = []


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    """Linux: SIGTERM the worker when pytest dies, so a killed run leaves no worker behind."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except Exception:  # noqa: S110 - best effort
        pass


def database_url_for_worker() -> str:
    """The URL of the database the tests use *now* (the test database once it is set up)."""
    from django.db import connection

    settings = connection.settings_dict
    name = settings["NAME"]
    if connection.vendor == "sqlite":
        if not name or str(name) == ":memory:" or "mode=memory" in str(name):
            raise RuntimeError(
                "The test database is SQLite in memory, which a worker process cannot open: "
                "give SQLite a file (DATABASES['default']['TEST']['NAME'])."
            )
        return f"sqlite:///{Path(name).resolve()}"
    if connection.vendor == "postgresql":
        user = quote(settings.get("USER") or "", safe="")
        password = quote(settings.get("PASSWORD") or "", safe="")
        auth = f"{user}:{password}@" if password else (f"{user}@" if user else "")
        host = settings.get("HOST") or "127.0.0.1"
        if ":" in host and not host.startswith("["):
            host = f"[{host}]"
        port = settings.get("PORT") or 5432
        return f"postgres://{auth}{host}:{port}/{quote(name, safe='')}"
    raise RuntimeError(f"No worker support for the {connection.vendor} database backend.")


def worker_env(env_overrides: dict[str, str] | None = None) -> dict[str, str]:
    """This process's environment, pointed at the test database, plus `env_overrides`."""
    env = dict(os.environ)
    env["DATABASE_URL"] = database_url_for_worker()
    env["TESTBED_WORKER_UNDER_TEST"] = "1"
    env.setdefault("DJANGO_SETTINGS_MODULE", "testbed.settings")
    env["PYTHONUNBUFFERED"] = "1"
    for key, value in (env_overrides or {}).items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = str(value)
    return env


@dataclass
class WorkerProcess:
    """A running worker: `.process` (Popen), `.env` it runs with, `.name` (its node name)."""

    process: subprocess.Popen
    env: dict[str, str]
    name: str
    queue: str
    log_path: Path
    _paused: list[WorkerProcess] = field(default_factory=list, repr=False)

    @property
    def pid(self) -> int:
        return self.process.pid

    def log(self) -> str:
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""

    def log_tail(self, chars: int = 4000) -> str:
        return self.log()[-chars:]

    def alive(self) -> bool:
        return self.process.poll() is None

    def ping(self, timeout: float = READY_TIMEOUT_SECONDS) -> str:
        """Round-trip `testbed.ping` through this very worker (its own queue); the answer."""
        from celery.exceptions import TimeoutError as ResultTimeout

        from testbed.celery import ping

        token = secrets.token_hex(8)
        result = ping.apply_async(args=[token], queue=self.queue)
        deadline = time.monotonic() + timeout
        try:
            while True:
                if not self.alive():
                    raise WorkerError(self, f"exited with code {self.process.returncode}")
                try:
                    answer = result.get(timeout=0.5, propagate=True)
                except ResultTimeout:
                    if time.monotonic() > deadline:
                        raise WorkerError(
                            self, f"did not answer testbed.ping within {timeout:.0f} s"
                        ) from None
                    continue
                if answer != f"pong:{token}":
                    raise WorkerError(self, f"answered testbed.ping with {answer!r}")
                return answer
        finally:
            result.forget()

    def drain(self, timeout: float = READY_TIMEOUT_SECONDS) -> None:
        """Wait until nothing is queued for this worker and it runs nothing (e.g. the emails a
        test's decisions queued), so the test database can be flushed without a deadlock."""
        from testbed.celery import app

        deadline = time.monotonic() + timeout
        inspector = app.control.inspect(destination=[self.name], timeout=1)
        while time.monotonic() < deadline:
            queued = sum(_queued(q) for q in (_default_queue(), _integrations_queue(), self.queue))
            busy = [t for tasks in (inspector.active() or {}).values() for t in tasks]
            busy += [t for tasks in (inspector.reserved() or {}).values() for t in tasks]
            if not queued and not busy:
                return
            time.sleep(0.1)
        raise WorkerError(self, f"still had work queued or running after {timeout:.0f} s")

    def stop(self, timeout: float = STOP_TIMEOUT_SECONDS) -> None:
        """Warm shutdown (SIGTERM), then SIGKILL for the whole group when it takes too long."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                _killpg(self.process.pid)
                self.process.wait(timeout=timeout)
        _killpg(self.process.pid)  # pool processes left behind, if any


class WorkerError(RuntimeError):
    def __init__(self, worker: WorkerProcess, problem: str) -> None:
        super().__init__(
            f"The Celery worker {worker.name} (pid {worker.pid}) {problem}.\n"
            f"Its command: {' '.join(worker.process.args)}\n"  # type: ignore[arg-type]
            f"Broker: {worker.env.get('CELERY_BROKER_URL')}; database: {worker.env.get('DATABASE_URL')}\n"
            f"--- last lines of its log ({worker.log_path}) ---\n{worker.log_tail()}"
        )


def _killpg(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


def _queued(queue: str) -> int:
    """Messages waiting in a queue (0 when the broker has no such queue: Redis drops empty ones)."""
    from amqp.exceptions import ChannelError

    from testbed.celery import app

    with app.connection_for_read() as conn:
        try:
            return conn.default_channel.queue_declare(queue=queue, passive=True).message_count
        except ChannelError:
            return 0


def _default_queue() -> str:
    from testbed.celery import app

    return app.conf.task_default_queue


def _integrations_queue() -> str:
    from django.conf import settings

    return settings.TESTBED_INTEGRATIONS_QUEUE


def _set_consuming(workers: list[WorkerProcess], consuming: bool) -> None:
    """Make running workers stop (or resume) taking tasks from the shared queues."""
    from testbed.celery import app

    live = [w for w in workers if w.alive()]
    if not live:
        return
    names = [w.name for w in live]
    for queue in (_default_queue(), _integrations_queue()):
        if consuming:
            replies = app.control.add_consumer(queue, destination=names, reply=True, timeout=5)
        else:
            replies = app.control.cancel_consumer(queue, destination=names, reply=True, timeout=5)
        answered = {name for reply in replies or [] for name in reply}
        missing = set(names) - answered
        if missing:
            action = "resume" if consuming else "pause"
            raise RuntimeError(
                f"Could not {action} the worker(s) {sorted(missing)} on queue {queue!r}."
            )


@contextlib.contextmanager
def start_worker(
    env_overrides: dict[str, str] | None = None,
    *,
    concurrency: int = 2,
    pool: str = "prefork",
    loglevel: str = "warning",
    exclusive: bool = True,
    purge: bool = True,
    ready_timeout: float = READY_TIMEOUT_SECONDS,
    log_dir: Path | None = None,
) -> Iterator[WorkerProcess]:
    """Start a real worker on the test database, wait until it answers a ping, yield it.

    Call it after the test database exists (inside a test using `transactional_db`, or a
    fixture depending on `django_db_setup`). `env_overrides` change its environment (a value
    of None removes the variable). `exclusive` pauses the other workers started here on the
    default queue while the block runs; `purge` drops queued tasks first.
    """
    from testbed.celery import app

    env = worker_env(env_overrides)
    folder = Path(log_dir) if log_dir else Path(tempfile.mkdtemp(prefix="testbed-worker-"))
    folder.mkdir(parents=True, exist_ok=True)
    suffix = secrets.token_hex(4)
    name = f"testbed-test-{suffix}@{os.uname().nodename}"
    own_queue = f"testbed-test-{suffix}"
    log_path = folder / f"worker-{suffix}.log"

    paused = [w for w in _running if w.alive()] if exclusive else []
    _set_consuming(paused, consuming=False)
    if purge:
        from booking.services.wakeup import flags_clear

        app.control.purge()
        flags_clear()  # the purged tasks held them: no decider would be queued until they expire

    args = [
        sys.executable, "-m", "celery", "-A", "testbed", "worker",
        "-l", loglevel, "--concurrency", str(concurrency), "-P", pool,
        "-n", name, "-Q", f"{_default_queue()},{_integrations_queue()},{own_queue}",
        "--without-heartbeat", "--without-gossip", "--without-mingle",
    ]  # fmt: skip
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            args,
            cwd=str(ROOT),
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None,
        )
    worker = WorkerProcess(
        process=process, env=env, name=name, queue=own_queue, log_path=log_path, _paused=paused
    )
    _running.append(worker)
    try:
        worker.ping(timeout=ready_timeout)
        yield worker
    finally:
        from booking.services.wakeup import flags_clear

        _running.remove(worker)
        worker.stop()
        # Tasks it had reserved come back only after the broker's visibility timeout (an hour):
        # the flags they held must not keep the next test's bookings waiting for them.
        flags_clear()
        _set_consuming(paused, consuming=True)


@pytest.fixture(scope="session")
def celery_worker_concurrency() -> int:
    """Processes in the session worker's pool; override this fixture to change it."""
    return int(os.environ.get("TESTBED_TEST_WORKER_CONCURRENCY", "2"))


@pytest.fixture(scope="session")
def celery_worker(
    django_db_setup, django_db_blocker, celery_worker_concurrency, tmp_path_factory
) -> Iterator[WorkerProcess]:
    """One real worker for the session: Redis broker, the test database, prefork pool.

    Tests using it need `transactional_db` (so the worker sees their rows) and the marks
    `redis` and `postgres`.
    """
    with contextlib.ExitStack() as stack:
        with django_db_blocker.unblock():  # only while it starts; tests keep their own marks
            worker = stack.enter_context(
                start_worker(
                    concurrency=celery_worker_concurrency,
                    exclusive=False,
                    log_dir=tmp_path_factory.mktemp("celery-worker"),
                )
            )
        yield worker
