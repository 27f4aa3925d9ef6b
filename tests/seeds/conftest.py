"""Fixtures for the seed tests: the catalogue loaded once per module, and editable copies."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from django.db import transaction

from seeds.loader import load_catalogue
from seeds.schema import DEFAULT_DATA_DIR


@pytest.fixture(scope="module")
def catalogue(django_db_setup, django_db_blocker):
    """The shipped catalogue, loaded once for the module and rolled back after its last test.

    Each test still runs in its own savepoint (pytest-django's `db`), so what a test changes
    is undone before the next one.
    """
    with django_db_blocker.unblock(), transaction.atomic():
        yield load_catalogue()
        transaction.set_rollback(True)


@pytest.fixture
def data_copy(tmp_path) -> Path:
    """A copy of seeds/data that a test may edit."""
    target = tmp_path / "data"
    shutil.copytree(DEFAULT_DATA_DIR, target)
    return target


def edit(path: Path, old: str, new: str) -> None:
    """Replace `old` (which must be there, exactly once) with `new` in a data file."""
    text = path.read_text(encoding="utf-8")
    assert text.count(old) == 1, f"{old!r} should appear exactly once in {path}"
    path.write_text(text.replace(old, new), encoding="utf-8")
