"""Usage rollups and the usage report against the quota ledger, with bookings made by the services.

The month (November 2026, facility time) is built through the real lifecycle: request,
allocate, check in and out, cancel (free and late), no-shows, pool sessions started and
completed by the periodic services, one rejection. Then the report must add up to the ledger.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from dataclasses import dataclass, field
from decimal import Decimal

import pytest
import time_machine
from django.db.models import Q

from booking.choices import BookingStatus, LedgerKind
from booking.models import (
    Allocation,
    Booking,
    BookingUsage,
    DailyUsage,
    DiscountRule,
    QuotaGrant,
    QuotaLedgerEntry,
    TelemetrySample,
)
from booking.reports import BOOKED_STATUSES, usage_report
from booking.services.allocation import booking_allocate
from booking.services.bookings import (
    booking_cancel,
    booking_check_in,
    booking_check_out,
    booking_request,
    bookings_complete_ended,
    bookings_mark_no_shows,
    bookings_start_pool_sessions,
)
from booking.services.usage import usage_rollup_bookings, usage_rollup_days, usage_rollup_recent
from tests.factories import EquipmentTypeFactory, EquipmentUnitFactory, aware, make_pool

pytestmark = pytest.mark.django_db

NOVEMBER = (aware(2026, 11, 1), aware(2026, 12, 1))
DECEMBER = (aware(2026, 12, 1), aware(2027, 1, 1))
AFTER = dt.date(2027, 1, 15)  # a "today" after both months: the report reads DailyUsage only
FOUR = Decimal("0.0001")


@dataclass
class Month:
    """The bookings of the scenario by name, and the people."""

    bookings: dict[str, Booking] = field(default_factory=dict)

    def __getitem__(self, name: str) -> Booking:
        booking = self.bookings[name]
        booking.refresh_from_db()
        return booking


def build_month(*, org, other_org, member, outsider) -> Month:
    """November 2026 for two organisations: see the comments for what happens to whom."""
    DiscountRule.objects.all().delete()  # list prices: the default rules would halve the Gwangju org's
    lab = EquipmentTypeFactory(
        code="HC-EMG",
        opens_at=dt.time(9),
        closes_at=dt.time(18),
        open_weekdays="01234",
        max_minutes=120,
        hourly_rate=20000,
    )
    EquipmentUnitFactory(equipment_type=lab, code="HC-EMG-01")
    EquipmentUnitFactory(equipment_type=lab, code="HC-EMG-02")
    make_pool(nodes=2, per_node=8, code="POOL-H")
    QuotaGrant.objects.create(
        organization=org,
        scope="*",
        period_start=dt.date(2026, 11, 1),
        period_end=dt.date(2026, 11, 30),
        limit_hours=1000,
    )
    QuotaGrant.objects.create(
        organization=org,
        scope="POOL-H",
        period_start=dt.date(2026, 12, 1),
        period_end=dt.date(2026, 12, 31),
        limit_hours=1000,
    )
    QuotaGrant.objects.create(
        organization=other_org,
        scope="*",
        period_start=dt.date(2026, 11, 1),
        period_end=dt.date(2026, 11, 30),
        limit_hours=1000,
    )
    month = Month()

    def book(name, who, whom, code, start, end, quantity=1, unit=None):
        booking = booking_request(
            actor=who,
            organization=whom,
            resource_code=code,
            quantity=quantity,
            start=start,
            end=end,
            unit_code=unit,
        )
        booking_allocate(booking_id=booking.pk)
        month.bookings[name] = booking
        return booking

    with time_machine.travel(aware(2026, 11, 1, 8), tick=False) as clock:
        book(
            "a_done",
            member,
            org,
            "HC-EMG",
            aware(2026, 11, 2, 10),
            aware(2026, 11, 2, 11),
            unit="HC-EMG-01",
        )
        book(
            "a_noshow_1",
            member,
            org,
            "HC-EMG",
            aware(2026, 11, 2, 10),
            aware(2026, 11, 2, 11),
            unit="HC-EMG-02",
        )
        book("rejected", member, org, "HC-EMG", aware(2026, 11, 2, 10), aware(2026, 11, 2, 11))
        book("a_noshow_2", member, org, "HC-EMG", aware(2026, 11, 2, 14), aware(2026, 11, 2, 16))
        book("a_cancel_free", member, org, "HC-EMG", aware(2026, 11, 3, 10), aware(2026, 11, 3, 11))
        book("a_cancel_late", member, org, "HC-EMG", aware(2026, 11, 3, 10), aware(2026, 11, 3, 11))
        # Crosses midnight: counts whole on 2 November.
        book(
            "a_midnight",
            member,
            org,
            "POOL-H",
            aware(2026, 11, 2, 22),
            aware(2026, 11, 3, 2),
            quantity=4,
        )
        # Crosses the month end: counts whole in November; the ledger charges each month's grant.
        book(
            "a_month_end",
            member,
            org,
            "POOL-H",
            aware(2026, 11, 30, 20),
            aware(2026, 12, 1, 4),
            quantity=8,
        )
        book(
            "b_done", outsider, other_org, "HC-EMG", aware(2026, 11, 4, 10), aware(2026, 11, 4, 12)
        )
        # 00:00–03:00 KST on 10 November is 15:00–18:00 UTC on 9 November: it is a 10 November booking.
        book(
            "b_local_day",
            outsider,
            other_org,
            "POOL-H",
            aware(2026, 11, 10, 0),
            aware(2026, 11, 10, 3),
            quantity=2,
        )
        book(
            "b_future",
            outsider,
            other_org,
            "POOL-H",
            aware(2026, 12, 20, 9),
            aware(2026, 12, 20, 10),
        )
        booking_cancel(
            actor=member,
            booking=month.bookings["a_cancel_free"],
            reason="plans changed",
            channel="api",
            now=aware(2026, 11, 1, 8),
        )

        def at(moment):
            clock.move_to(moment)
            return moment

        booking_check_in(
            actor=member, booking=month["a_done"], channel="api", now=at(aware(2026, 11, 2, 9, 55))
        )
        booking_check_out(
            actor=member, booking=month["a_done"], channel="api", now=at(aware(2026, 11, 2, 10, 40))
        )
        assert bookings_mark_no_shows(now=at(aware(2026, 11, 2, 14, 30))) == 2
        bookings_start_pool_sessions(now=at(aware(2026, 11, 2, 22)))
        bookings_complete_ended(now=at(aware(2026, 11, 3, 2)))
        booking_cancel(
            actor=member,
            booking=month["a_cancel_late"],
            reason="sick",
            channel="api",
            now=at(aware(2026, 11, 3, 9, 30)),
        )
        booking_check_in(
            actor=outsider, booking=month["b_done"], channel="api", now=at(aware(2026, 11, 4, 10))
        )
        booking_check_out(
            actor=outsider, booking=month["b_done"], channel="api", now=at(aware(2026, 11, 4, 12))
        )
        bookings_start_pool_sessions(now=at(aware(2026, 11, 10, 0)))
        bookings_complete_ended(now=at(aware(2026, 11, 10, 3)))
        bookings_start_pool_sessions(now=at(aware(2026, 11, 30, 20)))
        bookings_complete_ended(now=at(aware(2026, 12, 1, 4)))

    statuses = {name: month[name].status for name in month.bookings}
    assert statuses == {
        "a_done": "completed",
        "a_noshow_1": "no_show",
        "rejected": "rejected",
        "a_noshow_2": "no_show",
        "a_cancel_free": "cancelled",
        "a_cancel_late": "cancelled",
        "a_midnight": "completed",
        "a_month_end": "completed",
        "b_done": "completed",
        "b_local_day": "completed",
        "b_future": "confirmed",
    }
    return month


def roll_up_all() -> None:
    usage_rollup_days(start_day=dt.date(2026, 10, 25), end_day=dt.date(2027, 1, 5))
    usage_rollup_bookings()


@pytest.fixture
def month(org, other_org, member, outsider):
    built = build_month(org=org, other_org=other_org, member=member, outsider=outsider)
    roll_up_all()
    return built


def code_of(booking: Booking) -> str:
    return booking.equipment_type.code if booking.equipment_type_id else booking.pool.code


def expected_by_org_resource(start, end) -> dict:
    """The figures straight from bookings and the ledger, booking by booking, in Python."""
    out: dict = defaultdict(lambda: defaultdict(Decimal))
    for b in Booking.objects.filter(start__gte=start, start__lt=end).select_related(
        "organization", "equipment_type", "pool"
    ):
        row = out[(b.organization.slug, code_of(b))]
        if b.status in BOOKED_STATUSES:
            row["bookings"] += 1
            row["booked_hours"] += (
                Decimal(b.quantity) * Decimal((b.end - b.start).total_seconds()) / 3600
            )
        if b.status == BookingStatus.COMPLETED:
            # From the later of check-in and start to the earlier of check-out and end.
            used = min(b.actual_end, b.end) - max(b.actual_start or b.start, b.start)
            row["used_hours"] += Decimal(b.quantity) * Decimal(used.total_seconds()) / 3600
        row["cancelled"] += b.status == BookingStatus.CANCELLED
        row["no_shows"] += b.status == BookingStatus.NO_SHOW
        if b.status != BookingStatus.REJECTED:
            row["charge_krw"] += b.final_price_krw or 0
        row["unit_hours"] += sum(
            b.ledger.filter(kind__in=[LedgerKind.CONSUME, LedgerKind.ADJUST]).values_list(
                "hours", flat=True
            ),
            Decimal(0),
        )
    names = (
        "bookings",
        "booked_hours",
        "used_hours",
        "unit_hours",
        "cancelled",
        "no_shows",
        "charge_krw",
    )
    return {
        key: {k: (row[k].quantize(FOUR) if "hours" in k else int(row[k])) for k in names}
        for key, row in out.items()
        if any(row.values())
    }


def as_decimals(row: dict) -> dict:
    return {
        k: (Decimal(str(v)).quantize(FOUR) if "hours" in k else v)
        for k, v in row.items()
        if k
        in {
            "bookings",
            "booked_hours",
            "used_hours",
            "unit_hours",
            "cancelled",
            "no_shows",
            "charge_krw",
        }
    }


def test_it_adds_up_to_the_ledger_and_the_bookings(month):
    report = usage_report(
        scope_q=None,
        start=NOVEMBER[0],
        end=NOVEMBER[1],
        group_by=["organization", "resource"],
        today=AFTER,
    )

    got = {(r["organization"], r["resource"]): as_decimals(r) for r in report.rows}
    assert got == expected_by_org_resource(*NOVEMBER)
    # Ledger totals: everything the ledger consumed for bookings starting in November.
    consumed = sum(
        QuotaLedgerEntry.objects.filter(
            kind__in=[LedgerKind.CONSUME, LedgerKind.ADJUST],
            booking__start__gte=NOVEMBER[0],
            booking__start__lt=NOVEMBER[1],
        ).values_list("hours", flat=True)
    )
    # a_done uses 10:00–10:40 (checked in at 09:55: not use); a_cancel_late (cancelled inside the
    # free-cancellation hour) consumes its booked hour, as its fee charges it.
    assert Decimal(str(report.totals["unit_hours"])) == consumed == Decimal("92.6667")
    assert (
        report.totals["bookings"] == 7
        and report.totals["cancelled"] == 2
        and report.totals["no_shows"] == 2
    )
    assert report.totals["charge_krw"] == sum(
        Booking.objects.filter(start__gte=NOVEMBER[0], start__lt=NOVEMBER[1])
        .exclude(final_price_krw=None)
        .values_list("final_price_krw", flat=True)
    )
    for name in ("booked_hours", "used_hours", "unit_hours", "bookings", "charge_krw"):
        assert report.totals[name] == pytest.approx(sum(r[name] for r in report.rows))


@pytest.mark.parametrize(
    "group_by",
    [["organization", "resource"], ["center", "day"], ["month"], ["resource", "organization"]],
)
@pytest.mark.parametrize(
    "window",
    [
        (NOVEMBER[0], DECEMBER[1]),
        (
            aware(2026, 11, 2, 12),
            aware(2026, 11, 10, 2),
        ),  # partial days at both ends, whole days between
    ],
)
def test_it_gives_the_same_rows_from_daily_usage_and_from_the_bookings(month, group_by, window):
    daily = usage_report(
        scope_q=None, start=window[0], end=window[1], group_by=group_by, today=AFTER
    )
    live = usage_report(
        scope_q=None, start=window[0], end=window[1], group_by=group_by, today=dt.date(2026, 10, 1)
    )
    assert daily.rows == live.rows and daily.rows
    assert daily.totals == live.totals


def test_it_counts_a_booking_whole_on_its_local_start_day(month, org):
    by_day = usage_report(
        scope_q=None,
        start=NOVEMBER[0],
        end=DECEMBER[1],
        group_by=["organization", "day"],
        today=AFTER,
    ).rows
    days = {(r["organization"], r["day"]): r for r in by_day}
    # 22:00 → 02:00 with 4 devices: 16 unit-hours on 2 November, nothing on the 3rd from it.
    assert days[("acme", "2026-11-02")]["booked_hours"] == 1 + 1 + 2 + 16
    assert (
        days[("acme", "2026-11-03")]["booked_hours"] == 0
    )  # only the two cancellations start then
    assert days[("acme", "2026-11-03")]["cancelled"] == 2
    # 00:00 KST on 10 November is still 9 November in UTC: the facility day wins.
    assert days[("globex", "2026-11-10")]["booked_hours"] == 6
    assert ("globex", "2026-11-09") not in days
    assert DailyUsage.objects.filter(
        organization__slug="globex", day=dt.date(2026, 11, 10)
    ).exists()


def test_it_counts_a_booking_across_the_month_end_in_its_start_month_while_each_grant_pays_its_part(
    month, org
):
    month_end = month["a_month_end"]
    charged = dict(
        month_end.ledger.filter(kind=LedgerKind.CONSUME).values_list("grant__period_start", "hours")
    )
    assert charged == {dt.date(2026, 11, 1): Decimal("32"), dt.date(2026, 12, 1): Decimal("32")}

    by_month = usage_report(
        scope_q=Q(organization=org),
        start=NOVEMBER[0],
        end=DECEMBER[1],
        group_by=["month", "resource"],
        today=AFTER,
    ).rows
    pool = {r["month"]: r for r in by_month if r["resource"] == "POOL-H"}
    assert pool["2026-11"]["booked_hours"] == 16 + 64
    assert pool["2026-11"]["unit_hours"] == 16 + 64  # both grants' parts
    assert "2026-12" not in pool
    december = usage_report(
        scope_q=Q(organization=org),
        start=DECEMBER[0],
        end=DECEMBER[1],
        group_by=["organization"],
        today=AFTER,
    )
    assert december.rows == []


def test_it_computes_partial_days_from_the_bookings(month):
    start, end = aware(2026, 11, 2, 12), aware(2026, 11, 3, 12)  # starts 12:00 on the 2nd
    report = usage_report(scope_q=None, start=start, end=end, group_by=["resource"], today=AFTER)
    rows = {r["resource"]: r for r in report.rows}
    assert rows["HC-EMG"]["booked_hours"] == 2  # the 14:00 no-show; not the 10:00 bookings
    assert rows["HC-EMG"]["cancelled"] == 2
    assert rows["POOL-H"]["booked_hours"] == 16
    whole = usage_report(
        scope_q=None,
        start=aware(2026, 11, 2, 0),
        end=aware(2026, 11, 2, 12),
        group_by=["resource"],
        today=AFTER,
    )
    assert {r["resource"]: r["booked_hours"] for r in whole.rows} == {"HC-EMG": 2}


def test_it_scopes_to_the_organisation(month, org, other_org):
    mine = usage_report(
        scope_q=Q(organization__memberships__user__username="member"),
        start=NOVEMBER[0],
        end=NOVEMBER[1],
        group_by=["organization"],
        today=AFTER,
    )
    assert [r["organization"] for r in mine.rows] == ["acme"]
    nobody = usage_report(
        scope_q=Q(organization__memberships__user__username="nobody"),
        start=NOVEMBER[0],
        end=NOVEMBER[1],
        group_by=["organization"],
        today=dt.date(2026, 11, 15),
    )
    assert nobody.rows == [] and nobody.totals["bookings"] == 0


def snapshot():
    daily = sorted(
        DailyUsage.objects.values_list(
            "organization_id",
            "resource_code",
            "resource_kind",
            "center_code",
            "day",
            "bookings",
            "booked_hours",
            "used_hours",
            "unit_hours",
            "cancelled",
            "no_shows",
            "charge_krw",
        )
    )
    per_booking = sorted(
        BookingUsage.objects.values_list(
            "booking_id",
            "booked_unit_hours",
            "used_unit_hours",
            "mean_utilization_pct",
            "energy_kwh",
            "charge_krw",
            "samples",
        )
    )
    return daily, per_booking


def test_it_rolls_up_idempotently(month):
    first = snapshot()
    assert first[0] and first[1]
    roll_up_all()
    roll_up_all()
    assert snapshot() == first
    assert DailyUsage.objects.count() == len(first[0])
    # Stale rows of a recomputed day go away.
    DailyUsage.objects.filter(day=dt.date(2026, 11, 2)).update(booked_hours=999)
    usage_rollup_days(start_day=dt.date(2026, 11, 2), end_day=dt.date(2026, 11, 2))
    assert snapshot() == first


def test_it_rolls_up_each_booking(month):
    usage = {
        b: BookingUsage.objects.get(booking=month[b])
        for b in ("a_done", "a_noshow_2", "a_cancel_late")
    }
    assert usage["a_done"].booked_unit_hours == 1 and usage["a_done"].used_unit_hours == Decimal(
        "0.6667"  # checked in 09:55 for 10:00, out 10:40: the 5 minutes before the slot are not use
    )
    assert usage["a_done"].charge_krw == month["a_done"].final_price_krw > 0
    assert usage["a_noshow_2"].booked_unit_hours == 2 and usage["a_noshow_2"].used_unit_hours == 0
    assert usage["a_cancel_late"].booked_unit_hours == 0 and usage["a_cancel_late"].charge_krw > 0
    assert not BookingUsage.objects.filter(booking=month["rejected"]).exists()


def test_it_takes_utilisation_and_energy_from_telemetry_in_one_query(
    month, django_assert_max_num_queries
):
    booking = month["a_midnight"]
    allocations = list(Allocation.objects.filter(booking=booking).order_by("device_id")[:2])
    counter, powered = allocations
    at = aware(2026, 11, 2, 22)
    TelemetrySample.objects.bulk_create(
        [
            # A device with an energy counter: 3.6 MJ between first and last sample = 1 kWh.
            TelemetrySample(
                device_id=counter.device_id,
                node_id=counter.node_id,
                booking=booking,
                at=at,
                utilization_pct=40,
                power_w=500,
                energy_j=1_000_000,
            ),
            TelemetrySample(
                device_id=counter.device_id,
                node_id=counter.node_id,
                booking=booking,
                at=at + dt.timedelta(hours=1),
                utilization_pct=60,
                power_w=500,
                energy_j=4_600_000,
            ),
            # One without: mean power 300 W over one hour = 0.3 kWh.
            TelemetrySample(
                device_id=powered.device_id,
                node_id=powered.node_id,
                booking=booking,
                at=at,
                utilization_pct=100,
                power_w=200,
            ),
            TelemetrySample(
                device_id=powered.device_id,
                node_id=powered.node_id,
                booking=booking,
                at=at + dt.timedelta(hours=1),
                utilization_pct=0,
                power_w=400,
            ),
        ]
    )
    with django_assert_max_num_queries(4):  # bookings, telemetry, upsert, end of batches
        assert usage_rollup_bookings(booking_ids=[booking.pk]) == 1
    usage = BookingUsage.objects.get(booking=booking)
    assert usage.samples == 4
    assert usage.mean_utilization_pct == pytest.approx(50)
    assert usage.energy_kwh == Decimal("1.3000")
    assert usage.booked_unit_hours == usage.used_unit_hours == 16


def test_the_beat_task_recomputes_the_days_of_recently_changed_bookings(month):
    DailyUsage.objects.all().delete()
    BookingUsage.objects.all().delete()
    result = usage_rollup_recent(
        now=aware(2026, 12, 1, 5)
    )  # an hour after the month-end booking completed
    days = set(DailyUsage.objects.values_list("day", flat=True))
    assert dt.date(2026, 11, 30) in days  # the start day of the booking that completed at 04:00
    assert dt.date(2026, 11, 2) not in days  # nothing there changed in the last hours
    assert result["bookings"] == BookingUsage.objects.count() >= 1
    assert BookingUsage.objects.filter(booking=month["a_month_end"]).exists()
