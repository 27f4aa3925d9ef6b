"""Database helpers shared by the apps: PostgreSQL-only constraints, locking helpers."""

from __future__ import annotations

from django.contrib.postgres.constraints import ExclusionConstraint
from django.contrib.postgres.fields import DateTimeRangeField
from django.db import connection, models


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
