"""Database helpers shared by the apps: PostgreSQL-only constraints, locking helpers."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator

from django.contrib.postgres.constraints import ExclusionConstraint
from django.contrib.postgres.fields import DateTimeRangeField
from django.db import connection, models, transaction


class TsTzRange(models.Func):
    """tstzrange(start, end) with the default '[)' bounds: back-to-back windows do not overlap."""

    function = "TSTZRANGE"
    output_field = DateTimeRangeField()


class PostgresExclusionConstraint(ExclusionConstraint):
    """An exclusion constraint that is a no-op on other databases.

    On the embedded SQLite default the allocation path runs in IMMEDIATE transactions, so
    writers are serialised and the same decision code cannot double-book; PostgreSQL gets
    the real constraint as the backstop.
    """

    @staticmethod
    def _is_postgres(schema_editor) -> bool:
        return schema_editor.connection.vendor == "postgresql"

    def constraint_sql(self, model, schema_editor):
        return (
            super().constraint_sql(model, schema_editor)
            if self._is_postgres(schema_editor)
            else None
        )

    def create_sql(self, model, schema_editor):
        return (
            super().create_sql(model, schema_editor) if self._is_postgres(schema_editor) else None
        )

    def remove_sql(self, model, schema_editor):
        return (
            super().remove_sql(model, schema_editor) if self._is_postgres(schema_editor) else None
        )

    def validate(self, model, instance, exclude=None, using="default"):
        if connection.vendor == "postgresql":
            super().validate(model, instance, exclude=exclude, using=using)


def is_postgres() -> bool:
    return connection.vendor == "postgresql"


def set_lock_timeout(milliseconds: int) -> None:
    """Bound how long this transaction waits for a row lock (PostgreSQL; SQLite uses busy_timeout)."""
    if is_postgres():
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT set_config('lock_timeout', %s, true)", [f"{int(milliseconds)}ms"]
            )


@contextlib.contextmanager
def sweep_step(what: str, pk: object) -> Iterator[None]:
    """One item of a periodic sweep, in a transaction of its own: if it raises, only that item
    is rolled back (and logged with its traceback); the sweep goes on with the next one. Without
    this, one bad row would stop every later row of every run of the sweep."""
    try:
        with transaction.atomic():
            yield
    except Exception:
        logging.getLogger("testbed.sweeps").exception(
            "%s of #%s failed; the sweep goes on", what, pk
        )
