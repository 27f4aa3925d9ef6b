"""Occupancy kept pre-aggregated by PostgreSQL triggers on booking_allocation (booking/models/occupancy.py).

Every write to booking_allocation, whatever the code path, updates booking_occupancy in the same
statement and transaction (statement-level triggers with transition tables: one upsert for a
worker's batch of rows; a FOR EACH ROW trigger cost 15× more per row, bench/occupancy_writes.py):
- INSERT: the new active rows' cells are OR-ed into their (unit or device, UTC day) rows.
- UPDATE (a changed active, start, end, unit or device) and DELETE: the old versions' cells are
  cleared (AND NOT, multirange minus), then the new versions' OR-ed in. Exact because one unit's or
  device's active allocations never overlap (the exclusion constraint): no other allocation holds
  the cells or pieces being cleared. Rows are locked in key order; the operations commute, so
  concurrent writers of one unit-day cannot lose each other's cells.
- TRUNCATE empties the table.
Cells are 5 minutes from UTC midnight, bit k of `bits` (from the left) = cell k; a piece of an
allocation within a day that does not start and end on cell bounds (an early check-out) goes to
`odd` exactly instead. booking_occupancy_expected is the same aggregate computed from scratch: the
backfill below and `manage.py rebuild_occupancy` use it.
Only on PostgreSQL; on SQLite the table stays empty and unused.
"""

from django.db import migrations, models

import booking.models.occupancy

# Rows of booking_allocation (a transition table, or the difference of two) cut into day pieces,
# summed per (kind, target, day): bits = the on-bound pieces' cells, odd = the other pieces.
_SUMMED = """
    SELECT CASE WHEN r.unit_id IS NULL THEN 2 ELSE 1 END AS kind,
           coalesce(r.unit_id, r.device_id) AS target, p.day,
           bit_or(p.bits) AS bits, range_agg(p.odd) FILTER (WHERE p.odd IS NOT NULL) AS odd
    FROM ({rows}) r, LATERAL booking_occupancy_pieces(r.start, r."end") p
    WHERE r.active
    GROUP BY 1, 2, 3
"""
_COLUMNS = 'id, active, unit_id, device_id, start, "end"'
_GONE = f"SELECT {_COLUMNS} FROM before EXCEPT ALL SELECT {_COLUMNS} FROM after"
_CAME = f"SELECT {_COLUMNS} FROM after EXCEPT ALL SELECT {_COLUMNS} FROM before"


def _plus(rows: str) -> str:
    """OR the rows' cells in, creating rows as needed (one upsert, in key order)."""
    return f"""
    INSERT INTO booking_occupancy AS o (kind, target, day, bits, odd)
    SELECT * FROM ({_SUMMED.format(rows=rows)}) s ORDER BY 1, 2, 3
    ON CONFLICT (kind, target, day) DO UPDATE
    SET bits = o.bits | excluded.bits,
        odd = CASE WHEN o.odd IS NULL THEN excluded.odd
                   WHEN excluded.odd IS NULL THEN o.odd
                   ELSE o.odd + excluded.odd END;"""


def _minus(rows: str) -> str:
    """Take the rows' cells out: summed once into arrays, their rows locked in key order, then
    cleared (exact: a unit's or device's active allocations never overlap, so no other one holds
    these cells or pieces); rows left holding nothing go. Declares kinds … odds."""
    keys = "(o.kind, o.target, o.day) = (s.kind, s.target, s.day)"
    gone = "unnest(kinds, targets, days, cells, odds) s(kind, target, day, bits, odd)"
    return f"""
    SELECT array_agg(kind), array_agg(target), array_agg(day), array_agg(bits), array_agg(odd)
    INTO kinds, targets, days, cells, odds
    FROM ({_SUMMED.format(rows=rows)}) summed;
    IF kinds IS NOT NULL THEN
        PERFORM 1 FROM booking_occupancy o JOIN {gone} ON {keys}
        ORDER BY o.kind, o.target, o.day FOR UPDATE OF o;
        UPDATE booking_occupancy o
        SET bits = o.bits & ~s.bits,
            odd = CASE WHEN s.odd IS NULL THEN o.odd ELSE nullif(o.odd - s.odd, '{{}}') END
        FROM {gone} WHERE {keys};
        DELETE FROM booking_occupancy o USING {gone}
        WHERE {keys} AND o.odd IS NULL AND o.bits = B'0'::bit(288);
    END IF;"""


_DECLARE = """DECLARE
    kinds int[];
    targets bigint[];
    days date[];
    cells bit(288)[];
    odds tstzmultirange[];"""


# One day's cells: 288 bits, bit 0 (leftmost) = 00:00–00:05 UTC.
FUNCTIONS = r"""
CREATE FUNCTION booking_occupancy_pieces(s timestamptz, e timestamptz)
RETURNS TABLE (day date, bits bit(288), odd tstzrange)
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT date '1970-01-01' + d,
           CASE WHEN on_bounds
                THEN (~B'0'::bit(288) >> greatest(floor(lo / 300), 0)::int)
                     & ~(~B'0'::bit(288) >> least(ceil(hi / 300), 288)::int)
                ELSE B'0'::bit(288) END,
           CASE WHEN NOT on_bounds
                THEN tstzrange(greatest(s, (date '1970-01-01' + d)::timestamp AT TIME ZONE 'UTC'),
                               least(e, (date '1970-01-01' + d + 1)::timestamp AT TIME ZONE 'UTC'))
           END
    FROM (SELECT extract(epoch FROM s) AS x0, extract(epoch FROM e) AS x1) x,
         generate_series(floor(x.x0 / 86400)::int, ceil(x.x1 / 86400)::int - 1) d,
         LATERAL (SELECT x.x0 - d * 86400::bigint AS lo, x.x1 - d * 86400::bigint AS hi) r,
         LATERAL (SELECT (lo <= 0 OR mod(lo, 300) = 0) AND (hi >= 86400 OR mod(hi, 300) = 0)
                  AS on_bounds) b
$$;

CREATE VIEW booking_occupancy_expected AS
SELECT CASE WHEN a.unit_id IS NULL THEN 2 ELSE 1 END::int2 AS kind,
       coalesce(a.unit_id, a.device_id) AS target,
       p.day,
       bit_or(p.bits) AS bits,
       range_agg(p.odd) FILTER (WHERE p.odd IS NOT NULL) AS odd
FROM booking_allocation a, LATERAL booking_occupancy_pieces(a.start, a."end") p
WHERE a.active
GROUP BY 1, 2, 3;

CREATE FUNCTION booking_occupancy_added() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    {plus_added}
    RETURN NULL;
END $$;

CREATE FUNCTION booking_occupancy_changed() RETURNS trigger LANGUAGE plpgsql AS $$
{declare}
BEGIN
    {minus_changed}
    {plus_changed}
    RETURN NULL;
END $$;

CREATE FUNCTION booking_occupancy_removed() RETURNS trigger LANGUAGE plpgsql AS $$
{declare}
BEGIN
    {minus_removed}
    RETURN NULL;
END $$;

CREATE FUNCTION booking_occupancy_cleared() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM booking_occupancy;
    RETURN NULL;
END $$;

CREATE TRIGGER booking_occupancy_insert AFTER INSERT ON booking_allocation
REFERENCING NEW TABLE AS added FOR EACH STATEMENT EXECUTE FUNCTION booking_occupancy_added();
CREATE TRIGGER booking_occupancy_update AFTER UPDATE ON booking_allocation
REFERENCING OLD TABLE AS before NEW TABLE AS after
FOR EACH STATEMENT EXECUTE FUNCTION booking_occupancy_changed();
CREATE TRIGGER booking_occupancy_delete AFTER DELETE ON booking_allocation
REFERENCING OLD TABLE AS before FOR EACH STATEMENT EXECUTE FUNCTION booking_occupancy_removed();
CREATE TRIGGER booking_occupancy_truncate AFTER TRUNCATE ON booking_allocation
FOR EACH STATEMENT EXECUTE FUNCTION booking_occupancy_cleared();

INSERT INTO booking_occupancy (kind, target, day, bits, odd)
SELECT kind, target, day, bits, odd FROM booking_occupancy_expected;
ANALYZE booking_occupancy;
""".format(
    plus_added=_plus("SELECT * FROM added"),
    minus_changed=_minus(_GONE),
    plus_changed=_plus(_CAME),
    declare=_DECLARE,
    minus_removed=_minus("SELECT * FROM before"),
)

DROP = """
DROP TRIGGER IF EXISTS booking_occupancy_insert ON booking_allocation;
DROP TRIGGER IF EXISTS booking_occupancy_update ON booking_allocation;
DROP TRIGGER IF EXISTS booking_occupancy_delete ON booking_allocation;
DROP TRIGGER IF EXISTS booking_occupancy_truncate ON booking_allocation;
DROP FUNCTION IF EXISTS booking_occupancy_added();
DROP FUNCTION IF EXISTS booking_occupancy_changed();
DROP FUNCTION IF EXISTS booking_occupancy_removed();
DROP FUNCTION IF EXISTS booking_occupancy_cleared();
DROP VIEW IF EXISTS booking_occupancy_expected;
DROP FUNCTION IF EXISTS booking_occupancy_pieces(timestamptz, timestamptz);
"""


def _on_postgresql(sql):
    def run(apps, schema_editor):
        if schema_editor.connection.vendor == "postgresql":
            schema_editor.execute(sql)

    return run


class Migration(migrations.Migration):
    dependencies = [
        ("booking", "0008_booking_replaces"),
    ]

    operations = [
        migrations.CreateModel(
            name="Occupancy",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                (
                    "kind",
                    models.PositiveSmallIntegerField(choices=[(1, "장비(개별)"), (2, "장치")]),
                ),
                (
                    "target",
                    models.BigIntegerField(help_text="The unit's or device's id (by kind)."),
                ),
                ("day", models.DateField(help_text="A UTC day.")),
                ("bits", booking.models.occupancy.CellBitsField()),
                ("odd", booking.models.occupancy.TimeRangesField(null=True)),
            ],
            options={
                "verbose_name": "점유 현황",
                "verbose_name_plural": "점유 현황",
                "db_table": "booking_occupancy",
                "constraints": [
                    models.UniqueConstraint(
                        fields=("kind", "target", "day"), name="booking_occupancy_key"
                    )
                ],
            },
        ),
        migrations.RunPython(_on_postgresql(FUNCTIONS), _on_postgresql(DROP), elidable=False),
    ]
