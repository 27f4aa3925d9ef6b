import pytest


@pytest.fixture(autouse=True)
def worker_drained_before_flush(transactional_db, celery_worker):
    """Set up after transactional_db, so torn down before its flush: the flush's TRUNCATE must
    not meet tasks the test left running (they would deadlock against it)."""
    yield
    celery_worker.drain()
