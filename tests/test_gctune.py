"""testbed/gctune.py: start-up frozen out of the collector's walks, young garbage collected less often."""

from __future__ import annotations

import gc

import pytest

from testbed import gctune


@pytest.fixture
def restored():
    threshold = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*threshold)


def test_it_freezes_what_exists_and_raises_the_first_threshold(restored, monkeypatch):
    monkeypatch.delenv("TESTBED_GC_TUNING", raising=False)
    monkeypatch.setenv("TESTBED_GC_THRESHOLD", "25000")
    assert gctune.tune() is True
    assert gc.get_freeze_count() > 10_000  # the modules, models and settings of this process
    assert gc.get_threshold()[0] == 25_000


def test_a_threshold_below_the_default_or_unreadable_is_not_taken(restored, monkeypatch):
    monkeypatch.setenv("TESTBED_GC_THRESHOLD", "10")
    gctune.tune()
    assert gc.get_threshold()[0] == 700
    monkeypatch.setenv("TESTBED_GC_THRESHOLD", "lots")
    gctune.tune()
    assert gc.get_threshold()[0] == gctune.DEFAULT_THRESHOLD


def test_it_can_be_turned_off(restored, monkeypatch):
    monkeypatch.setenv("TESTBED_GC_TUNING", "0")
    before = gc.get_threshold()
    assert gctune.tune() is False
    assert gc.get_threshold() == before


def test_the_web_and_worker_entry_points_tune_it():
    from pathlib import Path

    import testbed.celery

    # Read, not imported: importing it would tune this test process for the rest of the suite.
    assert "gctune.tune()" in (Path(testbed.celery.__file__).parent / "wsgi.py").read_text()
    assert testbed.celery._tune_garbage_collection in [
        receiver() for _key, receiver in __import__("celery").signals.worker_process_init.receivers
    ]
