"""A real Celery worker consumes tasks: on Redis (production) and on `filesystem://` (make run)."""

from __future__ import annotations

import os
import re
import secrets
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests import conftest
from tests import worker as worker_fixtures
from tests.worker import start_worker

if not hasattr(conftest, "celery_worker"):
    # Until tests/conftest.py imports them; defining them twice would start two workers.
    celery_worker = worker_fixtures.celery_worker
    celery_worker_concurrency = worker_fixtures.celery_worker_concurrency

ROOT = Path(__file__).resolve().parent.parent


def worker_task_totals(name: str) -> int:
    """How many testbed.ping tasks the worker called `name` has run."""
    from testbed.celery import app

    stats = app.control.inspect(destination=[name], timeout=5).stats() or {}
    return stats.get(name, {}).get("total", {}).get("testbed.ping", 0)


@pytest.mark.redis
@pytest.mark.postgres
def test_it_consumes_a_ping_through_redis(transactional_db, celery_worker):
    from django.db import connection

    from testbed.celery import ping

    token = secrets.token_hex(8)
    result = ping.delay(token)

    assert result.get(timeout=20) == f"pong:{token}"
    assert celery_worker.alive()
    assert celery_worker.env["TESTBED_WORKER_UNDER_TEST"] == "1"
    assert celery_worker.env["DATABASE_URL"].endswith("/" + connection.settings_dict["NAME"])


@pytest.mark.redis
@pytest.mark.postgres
def test_it_consumes_many_pings_in_parallel(transactional_db, celery_worker):
    from celery import group

    from testbed.celery import ping

    tokens = [secrets.token_hex(4) for _ in range(20)]
    results = group(ping.s(token) for token in tokens).apply_async()

    assert results.get(timeout=30) == [f"pong:{token}" for token in tokens]


@pytest.mark.redis
@pytest.mark.postgres
def test_start_worker_gives_the_default_queue_to_the_new_worker_alone(
    transactional_db, celery_worker
):
    from testbed.celery import ping

    before = worker_task_totals(celery_worker.name)
    with start_worker({"TESTBED_ALLOCATION_LOCKING": "0"}, concurrency=1) as other:
        assert other.env["TESTBED_ALLOCATION_LOCKING"] == "0"
        assert other.env["DATABASE_URL"] == celery_worker.env["DATABASE_URL"]
        tokens = [secrets.token_hex(4) for _ in range(5)]
        answers = [ping.delay(token).get(timeout=20) for token in tokens]
        assert answers == [f"pong:{token}" for token in tokens]
        assert worker_task_totals(other.name) >= 5  # its own readiness ping, and these five
        assert worker_task_totals(celery_worker.name) == before
    assert not other.alive()

    # The session worker takes the default queue again.
    token = secrets.token_hex(4)
    assert ping.delay(token).get(timeout=20) == f"pong:{token}"
    assert worker_task_totals(celery_worker.name) == before + 1


# --- make run's broker: filesystem:// ------------------------------------------------------


def embedded_env(tmp_path: Path) -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in {"REDIS_URL", "CELERY_RESULT_BACKEND", "CELERY_BROKER_WRITE_URL"}
    }
    env.update(
        CELERY_BROKER_URL="filesystem://",
        TESTBED_VAR_DIR=str(tmp_path),
        DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite3'}",
        DJANGO_SETTINGS_MODULE="testbed.settings",
        PYTHONUNBUFFERED="1",
    )
    return env


SEND_PING = """
import sys
from testbed.celery import ping
result = ping.apply_async(args=[sys.argv[1]])
print(result.id)
"""


def wait_for(predicate, timeout: float, what: str, log: Path) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            tail = log.read_text(errors="replace")[-4000:] if log.exists() else "(no log)"
            pytest.fail(f"{what} within {timeout:.0f} s. Worker log tail:\n{tail}")
        time.sleep(0.2)


def test_a_real_worker_consumes_from_the_filesystem_broker(tmp_path):
    env = embedded_env(tmp_path)
    migrate = subprocess.run(
        [sys.executable, "manage.py", "migrate", "--no-input"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert migrate.returncode == 0, migrate.stdout[-2000:] + migrate.stderr[-2000:]
    queue = tmp_path / "celery" / "out"
    assert queue.is_dir(), "settings make var/celery/out under TESTBED_VAR_DIR"

    log = tmp_path / "worker.log"
    with open(log, "wb") as sink:
        worker = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "testbed", "worker", "-l", "info",
             "--concurrency", "2", "-P", "prefork", "-n", f"fs-{secrets.token_hex(3)}@%h"],
            cwd=ROOT, env=env, stdout=sink, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    try:
        wait_for(lambda: b" ready." in log.read_bytes(), 60, "The worker was not ready", log)

        token = secrets.token_hex(8)
        sent = subprocess.run(
            [sys.executable, "-c", SEND_PING, token],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert sent.returncode == 0, sent.stderr[-2000:]
        task_id = sent.stdout.strip().splitlines()[-1]
        assert re.fullmatch(r"[0-9a-f-]{36}", task_id)

        succeeded = re.compile(
            rf"Task testbed\.ping\[{re.escape(task_id)}\] succeeded in [0-9.]+s: 'pong:{token}'"
        )
        wait_for(
            lambda: succeeded.search(log.read_text(errors="replace")),
            30,
            f"The worker did not log that it ran testbed.ping[{task_id}]",
            log,
        )

        def queued() -> list[Path]:
            return [p for p in queue.iterdir() if task_id.encode() in p.read_bytes()]

        wait_for(lambda: not queued(), 10, "The message was not taken off the queue folder", log)
        assert worker.poll() is None, "the worker died"
    finally:
        if worker.poll() is None:
            worker.terminate()
            try:
                worker.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(worker.pid, 9)
                worker.wait(timeout=15)
        try:
            os.killpg(worker.pid, 9)  # its pool processes, if any are left
        except ProcessLookupError:
            pass
