"""`manage.py rebuild_occupancy [--check]`: make booking_occupancy equal to booking_allocation again.

The triggers of migration 0009_device_occupancy keep the table right on every write; this is the
repair for anything that bypassed them (a restore with triggers disabled, hand-made SQL with
session_replication_role = replica). Idempotent: a second run changes nothing. Writers of
booking_allocation wait while it runs (SHARE lock); readers do not.
"""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError
from django.db import connection, transaction

_DIFFERENT = """
    SELECT kind, target, day FROM booking_occupancy o
    FULL JOIN occupancy_expected e USING (kind, target, day)
    WHERE o.bits IS DISTINCT FROM e.bits OR o.odd IS DISTINCT FROM e.odd
"""


class Command(BaseCommand):
    help = "Recompute booking_occupancy from the active allocations and repair what differs."

    def add_arguments(self, parser):
        parser.add_argument(
            "--check",
            action="store_true",
            help="Only report the rows that differ; exit with status 1 when any do.",
        )

    def handle(self, *args, check: bool = False, **options):
        if connection.vendor != "postgresql":
            self.stdout.write("Occupancy is kept on PostgreSQL only: nothing to do.")
            return
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("LOCK TABLE booking_allocation IN SHARE MODE")
            # Dropped at commit, or here when an outer transaction goes on (tests).
            cursor.execute(
                "DROP TABLE IF EXISTS pg_temp.occupancy_expected, pg_temp.occupancy_different"
            )
            cursor.execute(
                "CREATE TEMPORARY TABLE occupancy_expected ON COMMIT DROP AS "
                "SELECT * FROM booking_occupancy_expected"
            )
            cursor.execute(
                f"CREATE TEMPORARY TABLE occupancy_different ON COMMIT DROP AS {_DIFFERENT}"
            )
            cursor.execute("SELECT count(*) FROM occupancy_expected")
            (total,) = cursor.fetchone()
            cursor.execute("SELECT count(*) FROM occupancy_different")
            (different,) = cursor.fetchone()
            if check:
                self.stdout.write(f"{total} unit- and device-days held; {different} rows differ.")
                if different:
                    raise CommandError(
                        f"booking_occupancy differs from the allocations in {different} rows: "
                        "run `manage.py rebuild_occupancy` to repair them.",
                        returncode=1,
                    )
                return
            cursor.execute(
                "DELETE FROM booking_occupancy o USING occupancy_different d "
                "WHERE (o.kind, o.target, o.day) = (d.kind, d.target, d.day)"
            )
            cursor.execute(
                "INSERT INTO booking_occupancy (kind, target, day, bits, odd) "
                "SELECT e.kind, e.target, e.day, e.bits, e.odd FROM occupancy_expected e "
                "JOIN occupancy_different d USING (kind, target, day)"
            )
        self.stdout.write(f"{total} unit- and device-days held; {different} rows repaired.")
