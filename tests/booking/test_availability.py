"""Free-count timelines and bookable slot starts, checked against brute force."""

import zoneinfo
from datetime import UTC, datetime, time, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from booking.availability import slot_starts, timeline
from booking.policy import FACILITY_TZ, Policy, align_up, is_open, next_boundary

BASE = datetime(2025, 3, 7, 0, 0, tzinfo=UTC)  # Friday 09:00 in Seoul
MINUTE = timedelta(minutes=1)
FAST = settings(max_examples=200, deadline=None)


def at(minutes: int) -> datetime:
    return BASE + minutes * MINUTE


# --- timeline -----------------------------------------------------------------------------


def test_it_counts_free_units_as_merged_steps():
    busy = {
        1: [(at(10), at(30)), (at(20), at(40))],  # overlapping: counts once
        2: [(at(30), at(50))],
        9: [(at(0), at(100))],  # not asked about
    }
    assert timeline([1, 2, 3], busy, at(0), at(60)) == [
        (at(0), at(10), 3),
        (at(10), at(30), 2),
        (at(30), at(40), 1),
        (at(40), at(50), 2),
        (at(50), at(60), 3),
    ]


def test_it_clips_busy_intervals_to_the_window_and_merges_equal_steps():
    busy = {1: [(at(-50), at(5))], 2: [(at(5), at(500))]}
    assert timeline([1, 2], busy, at(0), at(60)) == [(at(0), at(60), 1)]
    assert timeline([], busy, at(0), at(60)) == [(at(0), at(60), 0)]
    assert timeline([1], {}, at(0), at(0)) == []


def test_it_keeps_the_zone_of_the_window():
    start = at(0).astimezone(FACILITY_TZ)
    (segment,) = timeline([1], {}, start, start + timedelta(hours=1))
    assert segment[0].tzinfo == FACILITY_TZ and segment[0].hour == 9


intervals = st.lists(
    st.tuples(st.integers(-30, 200), st.integers(1, 80)).map(lambda t: (at(t[0]), at(t[0] + t[1]))),
    max_size=5,
)


@FAST
@given(
    ids=st.lists(st.integers(1, 6), max_size=6),
    busy=st.dictionaries(st.integers(1, 8), intervals, max_size=8),
    window=st.tuples(st.integers(-10, 180), st.integers(1, 120)),
)
def test_it_matches_per_minute_counting(ids, busy, window):
    start, end = at(window[0]), at(window[0] + window[1])
    segments = timeline(ids, busy, start, end)

    assert segments[0][0] == start
    assert segments[-1][1] == end
    for (_, a_end, a_free), (b_start, _, b_free) in zip(segments, segments[1:], strict=False):
        assert a_end == b_start
        assert a_free != b_free  # equal neighbours are merged
    for seg_start, seg_end, _ in segments:
        assert seg_start < seg_end

    unique = set(ids)
    minute = start
    index = 0
    while minute < end:
        while segments[index][1] <= minute:
            index += 1
        expected = sum(
            1 for uid in unique if not any(s <= minute < e for s, e in busy.get(uid, []))
        )
        assert segments[index][2] == expected, minute
        minute += MINUTE


# --- slot_starts --------------------------------------------------------------------------

LAB = Policy(
    slot_minutes=30,
    min_minutes=30,
    max_minutes=240,
    opens_at=time(9),
    closes_at=time(18),
    open_weekdays=frozenset(range(5)),
)


def test_it_lists_slot_starts_inside_opening_hours_only():
    # Friday 17:00 KST to Monday 10:30 KST, one-hour bookings.
    start = datetime(2025, 3, 7, 17, tzinfo=FACILITY_TZ)
    end = datetime(2025, 3, 10, 10, 30, tzinfo=FACILITY_TZ)
    assert slot_starts(LAB, start, end, timedelta(hours=1)) == [
        datetime(2025, 3, 7, 17, tzinfo=FACILITY_TZ),
        datetime(2025, 3, 10, 9, tzinfo=FACILITY_TZ),
        datetime(2025, 3, 10, 9, 30, tzinfo=FACILITY_TZ),
    ]


def test_it_stops_at_the_limit():
    pool = Policy(slot_minutes=60, min_minutes=60, max_minutes=600)
    found = slot_starts(pool, at(0), at(60 * 24 * 30), timedelta(hours=2), limit=7)
    assert found == [at(60 * h) for h in range(7)]


policies = st.builds(
    lambda slot, hours, weekdays: Policy(
        slot_minutes=slot,
        min_minutes=slot,
        max_minutes=24 * 60,
        opens_at=hours[0],
        closes_at=hours[1],
        open_weekdays=frozenset(weekdays),
    ),
    slot=st.sampled_from([30, 60, 90, 1440]),
    hours=st.sampled_from(
        [(None, None), (time(9), time(18)), (time(8, 15), time(20)), (time(22), time(6))]
    ),
    weekdays=st.sets(st.integers(0, 6), min_size=1),
)


@FAST
@given(
    policy=policies,
    start_minutes=st.integers(0, 3 * 24 * 6).map(lambda n: n * 10),
    span_hours=st.integers(0, 80),
    length_slots=st.integers(1, 3),
    limit=st.integers(1, 60),
)
def test_it_matches_stepping_through_every_slot(
    policy, start_minutes, span_hours, length_slots, limit
):
    duration = timedelta(minutes=policy.slot_minutes * length_slots)
    start = at(start_minutes)
    end = start + timedelta(hours=span_hours)
    expected = []
    moment = align_up(policy, start)
    while moment + duration <= end and len(expected) < limit:
        if is_open(policy, moment, moment + duration):
            expected.append(moment)
        moment = next_boundary(policy, moment)
    assert slot_starts(policy, start, end, duration, limit=limit) == expected


@settings(max_examples=300, deadline=None)
@given(
    moment=st.datetimes(
        min_value=datetime(1, 1, 3), max_value=datetime(9999, 12, 29), timezones=st.just(UTC)
    ),
    zone=st.sampled_from(["Asia/Seoul", "America/New_York", "Australia/Lord_Howe", "Asia/Kolkata"]),
    whole_minute=st.booleans(),
)
def test_iso_moments_write_what_isoformat_writes(moment, zone, whole_minute):
    from booking.availability import IsoMoments

    tz = zoneinfo.ZoneInfo(zone)
    if whole_minute:
        moment = moment.replace(second=0, microsecond=0)
    iso = IsoMoments(tz)
    assert iso(moment) == moment.astimezone(tz).isoformat()
    assert iso(moment.astimezone(tz)) == moment.astimezone(tz).isoformat()  # remembered
    later = moment + timedelta(hours=7)
    if later.year < 9999:
        assert iso(later) == later.astimezone(tz).isoformat()  # the same day's cached text, or not


@settings(max_examples=200, deadline=None)
@given(
    moments=st.lists(
        st.datetimes(
            min_value=datetime(1, 1, 3), max_value=datetime(9999, 12, 29), timezones=st.just(UTC)
        ),
        max_size=20,
    ),
    zone=st.sampled_from(["Asia/Seoul", "America/New_York", "Australia/Lord_Howe", "Asia/Kolkata"]),
    data=st.data(),
)
def test_iso_moments_many_write_what_isoformat_writes(moments, zone, data):
    """The batch path (moments in the zone on whole minutes, from their wall clock) and the
    one-by-one path agree with isoformat, whatever mix of zones and seconds comes in."""
    from booking.availability import IsoMoments

    tz = zoneinfo.ZoneInfo(zone)
    mixed = []
    for moment in moments:
        if data.draw(st.booleans()):
            moment = moment.replace(second=0, microsecond=0)
        mixed.append(moment.astimezone(tz) if data.draw(st.booleans()) else moment)
    assert IsoMoments(tz).many(mixed) == [m.astimezone(tz).isoformat() for m in mixed]
