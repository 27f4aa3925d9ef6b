"""booking_occupancy stays equal to a recomputation from booking_allocation on every write path.

The recomputation here is Python's own (cells of 5 minutes from UTC midnight, pieces off the cell
bounds kept exactly), independent of the SQL in migration 0009_device_occupancy. Write paths: the
allocator's bulk insert, single inserts, cancel, check-out shortening, no-show, move, idle
reclaim, ORM saves, deletes (direct and cascading), truncate, random sequences of all of them
(hypothesis), two writers at once; and `rebuild_occupancy` repairs a damaged table.
"""

from __future__ import annotations

import datetime as dt
import threading
from io import StringIO

import pytest
import time_machine
from django.core.management import CommandError, call_command
from django.db import IntegrityError, connection, connections, transaction
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from booking.models import Allocation, Booking, DiscountRule
from booking.models.occupancy import CELLS_PER_DAY
from booking.services.allocation import booking_allocate
from booking.services.bookings import (
    booking_cancel,
    booking_check_in,
    booking_check_out,
    booking_request,
    bookings_mark_no_shows,
)
from booking.services.idle import booking_reclaim
from booking.services.moves import booking_move
from equipment.models import Device, EquipmentUnit
from tests.factories import (
    EquipmentTypeFactory,
    EquipmentUnitFactory,
    OrganizationFactory,
    UserFactory,
    aware,
    make_pool,
)

pytestmark = [pytest.mark.postgres]

UTC = dt.UTC
EPOCH = dt.datetime(1970, 1, 1, tzinfo=UTC)
DAY = dt.timedelta(days=1)
CELL = dt.timedelta(minutes=5)
NOW = aware(2026, 12, 1, 8, 0)  # a Tuesday, 08:00 KST
MINUTE = dt.timedelta(minutes=1)


def _merged(pieces):
    merged: list[list[dt.datetime]] = []
    for s, e in sorted(pieces):
        if merged and s <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], e)
        else:
            merged.append([s, e])
    return [tuple(p) for p in merged]


def expected() -> dict:
    """(kind, target, day) → (cells as an int, bit k = cell k; exact pieces off the bounds)."""
    cells: dict[tuple, int] = {}
    odd: dict[tuple, list] = {}
    for unit_id, device_id, start, end in Allocation.objects.filter(active=True).values_list(
        "unit_id", "device_id", "start", "end"
    ):
        kind, target = (1, unit_id) if unit_id else (2, device_id)
        day = (start - EPOCH) // DAY
        while EPOCH + day * DAY < end:
            day_start = EPOCH + day * DAY
            key = (kind, target, day_start.date())
            lo, hi = start - day_start, end - day_start
            on_bounds = (lo <= dt.timedelta(0) or not lo % CELL) and (hi >= DAY or not hi % CELL)
            if on_bounds:
                first, last = max(lo // CELL, 0), min(-(-hi // CELL), CELLS_PER_DAY)
                cells[key] = cells.get(key, 0) | ((1 << last) - (1 << first))
            else:
                cells.setdefault(key, 0)
                odd.setdefault(key, []).append((max(start, day_start), min(end, day_start + DAY)))
            day += 1
    return {key: (bits, _merged(odd.get(key, []))) for key, bits in cells.items()}


def stored() -> dict:
    with connection.cursor() as cursor:
        cursor.execute("SELECT kind, target, day, bits::text, odd FROM booking_occupancy")
        rows = cursor.fetchall()
    return {
        (kind, target, day): (
            int(bits[::-1], 2),
            [(r.lower, r.upper) for r in odd] if odd is not None else [],
        )
        for kind, target, day, bits, odd in rows
    }


def assert_in_step():
    assert stored() == expected()


@pytest.fixture
def booking_row(db):
    org, user = OrganizationFactory(), UserFactory()
    pool = make_pool(nodes=2, per_node=2)
    return Booking.objects.create(
        organization=org, user=user, pool=pool, start=NOW, end=NOW + MINUTE, status="confirmed"
    )


@pytest.mark.django_db
def test_it_ors_a_batch_of_inserts_into_day_rows(booking_row):
    d1, d2, d3, _ = Device.objects.filter(node__pool=booking_row.pool).order_by("pk")
    at = aware(2031, 5, 5, 9)  # 00:00 UTC
    rows = [
        Allocation(booking=booking_row, device=d1, node=d1.node, start=at, end=at + 60 * MINUTE),
        # Same device and day in the same statement, back to back.
        Allocation(
            booking=booking_row, device=d1, node=d1.node, start=at + 60 * MINUTE, end=at + DAY
        ),
        # Over three UTC days, ending 37 seconds off a cell bound (an early check-out).
        Allocation(
            booking=booking_row,
            device=d2,
            node=d2.node,
            start=at - 90 * MINUTE,
            end=at + DAY + 10 * MINUTE + dt.timedelta(seconds=37),
        ),
        Allocation(
            booking=booking_row,
            device=d3,
            node=d3.node,
            start=at + 20 * MINUTE,
            end=at + 40 * MINUTE,
            active=False,
        ),
    ]
    Allocation.objects.bulk_create(rows)
    Allocation.objects.create(
        booking=booking_row, device=d3, node=d3.node, start=at + 5 * MINUTE, end=at + 10 * MINUTE
    )
    table = stored()
    assert table == expected()
    day = at.astimezone(UTC).date()
    assert table[(2, d1.pk, day)] == ((1 << CELLS_PER_DAY) - 1, [])  # all day, one row
    assert table[(2, d2.pk, day - DAY)] == (((1 << 18) - 1) << 270, [])  # 22:30–24:00 UTC
    assert table[(2, d2.pk, day)][0] == (1 << CELLS_PER_DAY) - 1
    end = at + DAY + 10 * MINUTE + dt.timedelta(seconds=37)
    assert table[(2, d2.pk, day + DAY)] == (0, [(at.astimezone(UTC) + DAY, end)])
    assert table[(2, d3.pk, day)] == (0b10, [])  # the inactive row holds nothing
    assert len(table) == 5


@pytest.mark.django_db
def test_it_holds_moments_past_2038_and_far_ahead(booking_row):
    """Seconds since 1970 outgrow 32 bits in January 2038."""
    d1 = Device.objects.filter(node__pool=booking_row.pool).first()
    for year, seconds in ((2038, 5), (2040, 0), (2999, 37)):
        at = aware(year, 6, 1, 9)
        Allocation.objects.create(
            booking=booking_row,
            device=d1,
            node=d1.node,
            start=at,
            end=at + 60 * MINUTE + dt.timedelta(seconds=seconds),
        )
    table = stored()
    assert table == expected() and len(table) == 3
    assert table[(2, d1.pk, dt.date(2040, 6, 1))][0] == (1 << 12) - 1


@pytest.mark.django_db
def test_deactivating_shortening_moving_and_deleting_rows_clears_exactly_their_cells(booking_row):
    d1, d2, d3, _ = Device.objects.filter(node__pool=booking_row.pool).order_by("pk")
    at = aware(2031, 5, 5, 9)
    a = Allocation.objects.create(
        booking=booking_row, device=d1, node=d1.node, start=at, end=at + 2 * DAY
    )
    b = Allocation.objects.create(
        booking=booking_row, device=d2, node=d2.node, start=at, end=at + 30 * MINUTE
    )
    c = Allocation.objects.create(
        booking=booking_row,
        device=d2,
        node=d2.node,
        start=at + 30 * MINUTE,
        end=at + 40 * MINUTE + dt.timedelta(seconds=3),
    )
    assert_in_step()
    Allocation.objects.filter(pk=a.pk).update(end=at + 61 * MINUTE + dt.timedelta(seconds=1))
    assert_in_step()
    Allocation.objects.filter(pk=c.pk).update(end=at + 35 * MINUTE)  # back on the bounds
    assert_in_step()
    b.device, b.node = d3, d3.node  # an operator moves it by hand (save() writes every column)
    b.save()
    assert_in_step()
    b.save()  # nothing changed
    assert_in_step()
    Allocation.objects.filter(pk=c.pk).update(active=False)
    assert_in_step()
    Allocation.objects.filter(pk=c.pk).update(active=True)
    assert_in_step()
    Allocation.objects.filter(pk__in=[a.pk, c.pk]).delete()
    assert_in_step()
    booking_row.delete()  # cascades to the allocations left
    assert stored() == {} == expected()


@pytest.mark.django_db
def test_truncating_the_allocations_empties_it(booking_row):
    d1 = Device.objects.filter(node__pool=booking_row.pool).first()
    Allocation.objects.create(
        booking=booking_row, device=d1, node=d1.node, start=NOW, end=NOW + DAY
    )
    assert stored()
    with connection.cursor() as cursor:
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")  # no deferred checks pending
        cursor.execute("TRUNCATE booking_allocation")
    assert stored() == {}


# --- every service that writes allocations ---------------------------------------------------


@pytest.fixture
def lab(db):
    """Weekdays 09–18, 30-minute slots, up to 2 h, a 15-minute buffer, two units."""
    t = EquipmentTypeFactory(
        code="HC-EMG",
        opens_at=dt.time(9),
        closes_at=dt.time(18),
        open_weekdays="01234",
        max_minutes=120,
        buffer_minutes=15,
        hourly_rate=20000,
    )
    EquipmentUnitFactory(equipment_type=t, code="HC-EMG-01")
    EquipmentUnitFactory(equipment_type=t, code="HC-EMG-02")
    return t


def _book(member, org, code, start, end, quantity=1):
    booking = booking_request(
        actor=member,
        organization=org,
        resource_code=code,
        quantity=quantity,
        start=start,
        end=end,
        purpose="연구",
    )
    booking_allocate(booking_id=booking.pk)
    booking.refresh_from_db()
    return booking


@pytest.mark.django_db
def test_every_service_that_writes_allocations_keeps_it_in_step(lab, org, member, manager):
    DiscountRule.objects.all().delete()
    make_pool(nodes=1, per_node=4, code="GPU-H100", idle_minutes=30)
    with time_machine.travel(NOW, tick=False):
        first = _book(member, org, "HC-EMG", aware(2026, 12, 1, 9), aware(2026, 12, 1, 11))
        second = _book(member, org, "HC-EMG", aware(2026, 12, 1, 9), aware(2026, 12, 1, 10))
        late = _book(member, org, "HC-EMG", aware(2026, 12, 2, 14), aware(2026, 12, 2, 15))
        moved = _book(member, org, "HC-EMG", aware(2026, 12, 3, 9), aware(2026, 12, 3, 10))
        pooled = _book(
            member, org, "GPU-H100", aware(2026, 12, 1, 9), aware(2026, 12, 1, 12), quantity=3
        )
        assert {b.status for b in (first, second, late, moved, pooled)} == {"confirmed"}
        assert_in_step()
        booking_cancel(actor=manager, booking=late, reason="project moved", channel="api")
        assert_in_step()
        new = booking_move(
            actor=member,
            booking=moved,
            start=aware(2026, 12, 3, 14),
            end=aware(2026, 12, 3, 15),
            channel="api",
        )
        booking_allocate(booking_id=new.pk)
        new.refresh_from_db()
        assert new.status == "confirmed"
        assert not Allocation.objects.filter(booking=moved, active=True).exists()
        assert_in_step()
    with time_machine.travel(aware(2026, 12, 1, 9, 5), tick=False):
        booking_check_in(actor=member, booking=first, channel="web")
    with time_machine.travel(aware(2026, 12, 1, 9, 16), tick=False):
        assert bookings_mark_no_shows() == 1  # the second never came
    assert_in_step()
    with time_machine.travel(aware(2026, 12, 1, 10, 7) + dt.timedelta(seconds=13), tick=False):
        booking_check_out(actor=member, booking=first, channel="web")
    # Released after the buffer, off every cell bound: kept exactly.
    assert Allocation.objects.get(booking=first).end == aware(2026, 12, 1, 10, 22) + dt.timedelta(
        seconds=13
    )
    assert_in_step()
    Booking.objects.filter(pk=pooled.pk).update(
        status="active", idle_flagged_at=aware(2026, 12, 1, 8, 40)
    )
    pooled.refresh_from_db()
    booking_reclaim(booking=pooled, now=aware(2026, 12, 1, 9, 1))
    assert {a.end for a in Allocation.objects.filter(booking=pooled)} == {aware(2026, 12, 1, 10)}
    assert_in_step()
    assert stored()  # not trivially equal


# --- random sequences of writes --------------------------------------------------------------

operations = st.lists(
    st.tuples(
        st.sampled_from(["insert", "insert", "batch", "deactivate", "shorten", "delete", "move"]),
        st.integers(0, 3),  # target
        st.integers(0, 60 * 24 * 3),  # start, minutes after the base
        st.integers(1, 60 * 30),  # length in minutes
        st.sampled_from([0, 0, 0, 37]),  # seconds off the cells
        st.integers(0, 99),  # which existing row
    ),
    max_size=25,
)


@pytest.mark.django_db
@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(ops=operations, units=st.booleans())
def test_any_sequence_of_writes_keeps_it_equal_to_the_allocations(booking_row, ops, units):
    base = aware(2031, 5, 5, 6, 55)
    with transaction.atomic():
        if units:
            kind = EquipmentTypeFactory()
            targets = [
                EquipmentUnit.objects.create(equipment_type=kind, code=f"{kind.code}-{i}")
                for i in range(4)
            ]
        else:
            targets = list(Device.objects.filter(node__pool=booking_row.pool).order_by("pk"))

        def row(which, offset, length, seconds):
            target = targets[which]
            start = base + offset * MINUTE
            end = start + length * MINUTE + dt.timedelta(seconds=seconds)
            where = {"unit": target} if units else {"device": target, "node": target.node}
            return Allocation(booking=booking_row, start=start, end=end, **where)

        for op, which, offset, length, seconds, pick in ops:
            existing = list(Allocation.objects.filter(booking=booking_row).order_by("pk"))
            chosen = existing[pick % len(existing)] if existing else None
            try:
                with transaction.atomic():  # an overlap is refused by the exclusion constraint
                    if op == "insert":
                        row(which, offset, length, seconds).save()
                    elif op == "batch":
                        Allocation.objects.bulk_create(
                            [
                                row(which, offset, length, seconds),
                                row((which + 1) % 4, offset + 7, length, 0),
                                row(which, offset + length + 1, 5, seconds),
                            ]
                        )
                    elif chosen is None:
                        continue
                    elif op == "deactivate":
                        Allocation.objects.filter(pk=chosen.pk).update(active=not chosen.active)
                    elif op == "shorten":
                        cut = chosen.start + (chosen.end - chosen.start) / 3
                        Allocation.objects.filter(pk=chosen.pk).update(
                            end=cut.replace(microsecond=0) + dt.timedelta(seconds=seconds)
                        )
                    elif op == "delete":
                        chosen.delete()
                    elif op == "move":
                        target = targets[which]
                        where = (
                            {"unit": target} if units else {"device": target, "node": target.node}
                        )
                        Allocation.objects.filter(pk=chosen.pk).update(
                            start=chosen.start + offset % 60 * MINUTE,
                            end=chosen.end + offset % 60 * MINUTE,
                            **where,
                        )
            except IntegrityError:
                pass
            assert_in_step()
        transaction.set_rollback(True)


# --- two writers at once -----------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("first", ["cancel", "insert"])
def test_a_cancel_and_an_insert_on_the_same_device_day_at_once_lose_nothing(first):
    """The first writer keeps its transaction open until the second is waiting for its lock on
    the day's row; whichever order, neither overwrites the other's cells."""
    org, user = OrganizationFactory(), UserFactory()
    pool = make_pool(nodes=1, per_node=1)
    device = Device.objects.get(node__pool=pool)
    booking = Booking.objects.create(
        organization=org, user=user, pool=pool, start=NOW, end=NOW + MINUTE, status="confirmed"
    )
    at = aware(2031, 5, 5, 10)  # 01:00 UTC
    held = Allocation.objects.create(
        booking=booking, device=device, node=device.node, start=at, end=at + 60 * MINUTE
    )
    wrote, go_on = threading.Event(), threading.Event()
    errors: list[BaseException] = []

    def cancel():
        Allocation.objects.filter(pk=held.pk).update(active=False)

    def insert():
        Allocation.objects.create(
            booking=booking,
            device=device,
            node=device.node,
            start=at + 120 * MINUTE,
            end=at + 180 * MINUTE,
        )

    def leader(write):
        try:
            with transaction.atomic():
                write()
                wrote.set()
                assert go_on.wait(20)
        except BaseException as error:  # noqa: BLE001 - reported below
            errors.append(error)
        finally:
            connections.close_all()

    def follower(write):
        try:
            assert wrote.wait(20)
            with transaction.atomic():
                write()
        except BaseException as error:  # noqa: BLE001 - reported below
            errors.append(error)
        finally:
            connections.close_all()

    one, two = (cancel, insert) if first == "cancel" else (insert, cancel)
    threads = [
        threading.Thread(target=leader, args=[one]),
        threading.Thread(target=follower, args=[two]),
    ]
    for thread in threads:
        thread.start()
    assert wrote.wait(20)
    with connection.cursor() as cursor:
        for _ in range(400):  # until the follower waits for the leader's row lock
            cursor.execute(
                "SELECT count(*) FROM pg_stat_activity "
                "WHERE datname = current_database() AND wait_event_type = 'Lock'"
            )
            if cursor.fetchone()[0]:
                break
            threading.Event().wait(0.05)
        else:
            pytest.fail("the second writer never waited for the first")
    go_on.set()
    for thread in threads:
        thread.join(30)
    assert errors == []
    table = stored()
    assert table == expected()
    assert table == {(2, device.pk, at.astimezone(UTC).date()): (((1 << 12) - 1) << 36, [])}


# --- repair ------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_rebuild_repairs_a_damaged_table_and_a_second_run_changes_nothing(booking_row):
    d1, d2, _, _ = Device.objects.filter(node__pool=booking_row.pool).order_by("pk")
    at = aware(2031, 5, 5, 9)
    for device in (d1, d2):
        Allocation.objects.create(
            booking=booking_row,
            device=device,
            node=device.node,
            start=at,
            end=at + DAY + dt.timedelta(seconds=5),
        )
    good = stored()
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL session_replication_role = replica")  # triggers off
        cursor.execute("UPDATE booking_occupancy SET bits = ~bits WHERE target = %s", [d1.pk])
        cursor.execute("DELETE FROM booking_occupancy WHERE target = %s AND odd IS NULL", [d2.pk])
        cursor.execute(
            "INSERT INTO booking_occupancy (kind, target, day, bits) "
            "VALUES (2, %s, '2040-01-01', ~B'0'::bit(288))",
            [d2.pk],
        )
        cursor.execute("SET LOCAL session_replication_role = origin")
    assert stored() != good
    out = StringIO()
    with pytest.raises(CommandError, match="differs from the allocations in 4 rows"):
        call_command("rebuild_occupancy", "--check", stdout=out)
    call_command("rebuild_occupancy", stdout=out)
    assert "4 rows repaired" in out.getvalue()
    assert stored() == good == expected()
    out = StringIO()
    call_command("rebuild_occupancy", stdout=out)
    call_command("rebuild_occupancy", "--check", stdout=out)
    assert out.getvalue().count("0 rows") == 2
