"""Occupancy kept pre-aggregated: per unit or device and UTC day, the 5-minute cells its active
allocations hold, written by PostgreSQL triggers on booking_allocation in the writing transaction.

Derived data, never a counter: every row can be recomputed from booking_allocation
(`manage.py rebuild_occupancy`), and tests/booking/test_availability_occupancy.py checks every write
path keeps it equal to that recomputation. The triggers, the backfill and the SQL functions are in
migration 0009_device_occupancy; availability reads it in booking/occupancy.py. On SQLite (`make
run`) the table exists but stays empty and availability aggregates the allocation rows instead.
"""

from __future__ import annotations

from django.db import models
from django.utils.translation import gettext_lazy as _

# The stored cell and how many make a UTC day: availability uses the table for a resource whose
# slot and buffer are whole multiples of it (every resource in seeds/), otherwise the allocation rows.
CELL_MINUTES = 5
CELLS_PER_DAY = 24 * 60 // CELL_MINUTES


class CellBitsField(models.Field):
    """`bit(288)` on PostgreSQL: bit k (from the left) = cell k of the day busy at some moment."""

    description = "a fixed-length bit string of cells"

    def db_type(self, connection):
        return f"bit({CELLS_PER_DAY})" if connection.vendor == "postgresql" else "blob"


class TimeRangesField(models.Field):
    """`tstzmultirange` on PostgreSQL: exact busy intervals that do not sit on cell bounds."""

    description = "a set of time ranges"

    def db_type(self, connection):
        return "tstzmultirange" if connection.vendor == "postgresql" else "text"


class Occupancy(models.Model):
    """What the active allocations of one unit or device hold during one UTC day.

    `bits`: the cells wholly covered by allocations that start and end on cell bounds (within the
    day); `odd`: the other allocations' pieces within the day, exact (early check-outs), or null.
    Maintenance windows are not included (availability reads those directly: they are few).
    """

    class Kind(models.IntegerChoices):
        UNIT = 1, _("장비(개별)")
        DEVICE = 2, _("장치")

    kind = models.PositiveSmallIntegerField(choices=Kind.choices)
    target = models.BigIntegerField(help_text="The unit's or device's id (by kind).")
    day = models.DateField(help_text="A UTC day.")
    bits = CellBitsField()
    odd = TimeRangesField(null=True)

    class Meta:
        db_table = "booking_occupancy"
        constraints = [
            # The triggers' upserts and availability's reads go through it.
            models.UniqueConstraint(fields=["kind", "target", "day"], name="booking_occupancy_key")
        ]
        verbose_name = _("점유 현황")
        verbose_name_plural = _("점유 현황")

    def __str__(self) -> str:
        return f"{self.get_kind_display()} {self.target} {self.day}"

    @property
    def busy_cells(self) -> int:
        return str(self.bits or "").count("1")
