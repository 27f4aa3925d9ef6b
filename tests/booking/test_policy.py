"""Window, quantity and maintenance rules, with worked examples in Seoul local time.

Inputs are mostly given in UTC on purpose: the rules are stated in facility hours
(Asia/Seoul, UTC+9), so 00:00 UTC is 09:00 in Seoul.
"""

from datetime import UTC, datetime, time
from zoneinfo import ZoneInfo

import pytest

from booking.policy import (
    FACILITY_TZ,
    Policy,
    Refusal,
    align_up,
    check_maintenance,
    check_quantity,
    check_window,
    fmt_weekdays,
    is_open,
    opening_times,
)

SEOUL = FACILITY_TZ
WEEKDAYS = frozenset(range(5))

# Monday 2025-03-03 09:00 in Seoul.
NOW = datetime(2025, 3, 3, 0, 0, tzinfo=UTC)

LAB = Policy(
    slot_minutes=30,
    min_minutes=30,
    max_minutes=240,
    min_lead_minutes=60,
    opens_at=time(9),
    closes_at=time(18),
    open_weekdays=WEEKDAYS,
)
POOL = Policy(slot_minutes=60, min_minutes=60, max_minutes=72 * 60)  # around the clock
DAILY = Policy(slot_minutes=1440, min_minutes=1440, max_minutes=7 * 1440)


def utc(*args):
    return datetime(*args, tzinfo=UTC)


def seoul(*args):
    return datetime(*args, tzinfo=SEOUL)


def refuse(policy, start, end, now=NOW) -> Refusal:
    refusal = check_window(policy, start, end, now)
    assert refusal is not None, "expected a refusal"
    return refusal


# --- check_window -----------------------------------------------------------------------


def test_it_accepts_a_window_inside_the_rules():
    assert check_window(LAB, utc(2025, 3, 3, 2), utc(2025, 3, 3, 4), NOW) is None  # 11–13 KST


def test_it_refuses_an_end_before_the_start():
    refusal = refuse(LAB, utc(2025, 3, 3, 2), utc(2025, 3, 3, 1))
    assert (refusal.code, refusal.field) == ("invalid", "end")
    assert "2025-03-03 11:00 KST" in refusal.message  # the start, in Seoul time
    assert "end at 2025-03-03 11:30 KST" in refusal.message


def test_it_refuses_an_empty_window_as_invalid():
    assert refuse(LAB, utc(2025, 3, 3, 2), utc(2025, 3, 3, 2)).code == "invalid"


def test_it_refuses_a_start_in_the_past_and_names_the_earliest_start():
    refusal = refuse(LAB, utc(2025, 3, 2, 23), utc(2025, 3, 3, 1))  # 08:00 KST, now 09:00
    assert (refusal.code, refusal.field) == ("lead_time", "start")
    assert "in the past" in refusal.message
    assert "2025-03-03 10:00 KST" in refusal.message  # now + 1 hour lead


def test_it_refuses_a_start_inside_the_lead_time_with_an_aligned_earliest_start():
    now = utc(2025, 3, 3, 0, 7)  # 09:07 KST; + 60 min = 10:07, aligned up to 10:30
    refusal = refuse(LAB, utc(2025, 3, 3, 0, 30), utc(2025, 3, 3, 2), now=now)
    assert (refusal.code, refusal.field) == ("lead_time", "start")
    assert "1 hour" in refusal.message
    assert "2025-03-03 10:30 KST" in refusal.message


def test_it_refuses_a_start_beyond_the_booking_horizon_and_names_the_last_date():
    refusal = refuse(LAB, utc(2025, 4, 3, 0), utc(2025, 4, 3, 1))
    assert (refusal.code, refusal.field) == ("lead_time", "start")
    assert "30 days" in refusal.message
    assert "2025-04-02" in refusal.message


def test_it_allows_a_start_exactly_at_the_horizon():
    assert check_window(LAB, utc(2025, 4, 2, 0), utc(2025, 4, 2, 1), NOW) is None


def test_it_refuses_an_unaligned_start_on_a_30_minute_grid_and_proposes_the_nearest():
    refusal = refuse(LAB, utc(2025, 3, 3, 2, 10), utc(2025, 3, 3, 3))  # 11:10–12:00 KST
    assert (refusal.code, refusal.field) == ("not_aligned", "start")
    assert "30 minutes" in refusal.message
    assert "Try 2025-03-03 11:00 KST to 2025-03-03 12:00 KST" in refusal.message


def test_it_refuses_an_unaligned_end_on_a_60_minute_grid():
    refusal = refuse(POOL, utc(2025, 3, 3, 2), utc(2025, 3, 3, 4, 40))  # ends 13:40 KST
    assert (refusal.code, refusal.field) == ("not_aligned", "end")
    assert "Try 2025-03-03 11:00 KST to 2025-03-03 14:00 KST" in refusal.message


def test_it_aligns_to_seoul_midnight_not_utc_midnight_for_whole_days():
    # 00:00 UTC is 09:00 in Seoul: not a day boundary there.
    refusal = refuse(DAILY, utc(2025, 3, 4, 0), utc(2025, 3, 5, 0))
    assert (refusal.code, refusal.field) == ("not_aligned", "start")
    assert "whole days" in refusal.message
    assert "Try 2025-03-04 00:00 KST to 2025-03-05 00:00 KST" in refusal.message
    # Seoul midnight is 15:00 UTC the day before.
    assert check_window(DAILY, utc(2025, 3, 3, 15), utc(2025, 3, 5, 15), NOW) is None


def test_it_never_proposes_an_empty_window_when_aligning():
    refusal = refuse(LAB, seoul(2025, 3, 3, 11, 5), seoul(2025, 3, 3, 11, 10))
    assert "Try 2025-03-03 11:00 KST to 2025-03-03 11:30 KST" in refusal.message


def test_it_refuses_a_too_short_window_and_states_the_range():
    policy = Policy(slot_minutes=30, min_minutes=60, max_minutes=240)
    refusal = refuse(policy, utc(2025, 3, 3, 2), utc(2025, 3, 3, 2, 30))
    assert (refusal.code, refusal.field) == ("too_short", "end")
    assert "between 1 hour and 4 hours" in refusal.message
    assert "End at 2025-03-03 12:00 KST or later" in refusal.message


def test_it_refuses_a_too_long_window_and_states_the_range():
    refusal = refuse(LAB, utc(2025, 3, 3, 2), utc(2025, 3, 3, 7))  # 5 hours
    assert (refusal.code, refusal.field) == ("too_long", "end")
    assert "between 30 minutes and 4 hours" in refusal.message
    assert "End at 2025-03-03 15:00 KST or earlier" in refusal.message


def test_it_refuses_a_window_past_closing_time_in_seoul_hours():
    refusal = refuse(LAB, utc(2025, 3, 3, 8, 30), utc(2025, 3, 3, 9, 30))  # 17:30–18:30 KST
    assert (refusal.code, refusal.field) == ("outside_hours", "start")
    assert "Mon–Fri 09:00–18:00" in refusal.message
    assert "2025-03-04 09:00 KST to 2025-03-04 10:00 KST" in refusal.message


def test_it_accepts_a_window_ending_exactly_at_closing_time():
    assert check_window(LAB, utc(2025, 3, 3, 8), utc(2025, 3, 3, 9), NOW) is None  # 17–18 KST


def test_it_refuses_a_weekend_and_suggests_monday():
    refusal = refuse(LAB, seoul(2025, 3, 8, 10), seoul(2025, 3, 8, 11))  # Saturday
    assert refusal.code == "outside_hours"
    assert "2025-03-10 09:00 KST to 2025-03-10 10:00 KST" in refusal.message


def test_it_refuses_a_window_longer_than_a_day_of_opening_hours():
    policy = Policy(
        slot_minutes=60, min_minutes=60, max_minutes=24 * 60, opens_at=time(9), closes_at=time(18)
    )
    refusal = refuse(policy, seoul(2025, 3, 3, 10), seoul(2025, 3, 4, 10))
    assert refusal.code == "outside_hours"
    assert "9 hours" in refusal.message


def test_it_accepts_a_24h_pool_window_across_midnight():
    assert check_window(POOL, seoul(2025, 3, 3, 22), seoul(2025, 3, 4, 2), NOW) is None
    assert is_open(POOL, utc(2025, 3, 3, 13), utc(2025, 3, 3, 17))  # 22:00–02:00 KST


def test_it_refuses_an_around_the_clock_window_touching_a_closed_day():
    policy = Policy(slot_minutes=60, min_minutes=60, max_minutes=72 * 60, open_weekdays=WEEKDAYS)
    refusal = refuse(policy, seoul(2025, 3, 7, 22), seoul(2025, 3, 8, 2))  # Fri into Sat
    assert refusal.code == "outside_hours"
    assert "Mon–Fri, around the clock" in refusal.message
    # Ending exactly at Saturday 00:00 does not touch Saturday.
    assert check_window(policy, seoul(2025, 3, 7, 22), seoul(2025, 3, 8, 0), NOW) is None


def test_it_supports_hours_that_run_past_midnight():
    night = Policy(
        slot_minutes=60, min_minutes=60, max_minutes=600, opens_at=time(22), closes_at=time(6)
    )
    assert is_open(night, seoul(2025, 3, 3, 23), seoul(2025, 3, 4, 5))
    assert not is_open(night, seoul(2025, 3, 4, 5), seoul(2025, 3, 4, 7))


def test_it_checks_in_order_and_returns_the_first_failure():
    # Unaligned and too long and outside hours: alignment is reported first.
    assert refuse(LAB, seoul(2025, 3, 3, 10, 15), seoul(2025, 3, 3, 23)).code == "not_aligned"
    # In the past and unaligned: the lead time is reported first.
    assert refuse(LAB, seoul(2025, 3, 3, 8, 15), seoul(2025, 3, 3, 9)).code == "lead_time"


def test_it_refuses_naive_datetimes():
    with pytest.raises(ValueError, match="timezone-aware"):
        check_window(LAB, datetime(2025, 3, 3, 11), seoul(2025, 3, 3, 12), NOW)
    with pytest.raises(ValueError):
        align_up(LAB, datetime(2025, 3, 3, 11))


# --- alignment helpers --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("slot", "moment", "expected"),
    [
        (30, seoul(2025, 3, 3, 10, 0), seoul(2025, 3, 3, 10, 0)),
        (30, seoul(2025, 3, 3, 10, 1), seoul(2025, 3, 3, 10, 30)),
        (60, utc(2025, 3, 3, 1, 30), seoul(2025, 3, 3, 11, 0)),
        (90, seoul(2025, 3, 3, 23, 0), seoul(2025, 3, 4, 0, 0)),
        (1440, utc(2025, 3, 3, 0, 0), seoul(2025, 3, 4, 0, 0)),
        (1440, utc(2025, 3, 2, 15, 0), seoul(2025, 3, 3, 0, 0)),
        (7, seoul(2025, 3, 3, 23, 57), seoul(2025, 3, 4, 0, 0)),  # grid restarts at midnight
    ],
)
def test_it_aligns_up_from_seoul_midnight(slot, moment, expected):
    policy = Policy(slot_minutes=slot, min_minutes=slot, max_minutes=slot * 10)
    aligned = align_up(policy, moment)
    assert aligned == expected
    assert aligned.tzinfo == SEOUL


def test_it_aligns_from_local_midnight_in_another_zone_too():
    policy = Policy(slot_minutes=60, min_minutes=60, max_minutes=600, tz=ZoneInfo("Asia/Kolkata"))
    # 10:00 UTC is 15:30 in Kolkata: the next local hour is 16:00, 10:30 UTC.
    assert align_up(policy, utc(2025, 3, 3, 10)) == utc(2025, 3, 3, 10, 30)


def test_it_lists_opening_times_of_open_days_only():
    times = opening_times(LAB, utc(2025, 3, 6, 0), utc(2025, 3, 10, 0))  # Thu 09:00 .. Mon 09:00
    assert times == [seoul(2025, 3, 6, 9), seoul(2025, 3, 7, 9), seoul(2025, 3, 10, 9)]
    assert opening_times(POOL, utc(2025, 3, 6, 0), utc(2025, 3, 10, 0)) == []


def test_it_names_open_days_compactly():
    assert fmt_weekdays(frozenset(range(5))) == "Mon–Fri"
    assert fmt_weekdays(frozenset({0, 2, 4})) == "Mon, Wed, Fri"
    assert fmt_weekdays(frozenset({0, 1, 2, 5, 6})) == "Mon–Wed, Sat, Sun"
    assert fmt_weekdays(frozenset(range(7))) == "every day"


# --- check_quantity ---------------------------------------------------------------------


def test_it_refuses_a_quantity_below_one():
    refusal = check_quantity(0, capacity=4)
    assert refusal == Refusal("invalid", "quantity", refusal.message)
    assert "at least 1" in refusal.message


def test_it_refuses_more_than_the_capacity_and_says_how_many_there_are():
    refusal = check_quantity(5, capacity=4)
    assert (refusal.code, refusal.field) == ("capacity", "quantity")
    assert "4 units in all; ask for 4 or fewer" in refusal.message
    assert "4 devices" in check_quantity(40, capacity=4, node_sizes=[2, 2]).message


def test_it_suggests_both_neighbouring_whole_node_sizes():
    refusal = check_quantity(12, capacity=32, node_sizes=[8, 8, 8, 8])
    assert (refusal.code, refusal.field) == ("node_shape", "quantity")
    assert "larger than one node (8 devices) take whole nodes" in refusal.message
    assert "ask for 8 or 16" in refusal.message


def test_it_suggests_only_node_multiples_within_capacity():
    refusal = check_quantity(28, capacity=24, node_sizes=[8, 8, 8])
    assert refusal.code == "capacity"
    refusal = check_quantity(20, capacity=24, node_sizes=[8, 8, 8])
    assert "ask for 16 or 24" in refusal.message
    refusal = check_quantity(30, capacity=31, node_sizes=[8, 8, 8, 7])
    # 32 would exceed the 31 devices; 31 is every node whole (8 + 8 + 8 + 7).
    assert "ask for 24 or 31 instead" in refusal.message


def test_it_accepts_quantities_that_fit_one_node_or_whole_nodes():
    for quantity in (1, 3, 8, 16, 32):
        assert check_quantity(quantity, capacity=32, node_sizes=[8, 8, 8, 8]) is None
    assert check_quantity(3, capacity=5) is None


# --- check_maintenance ------------------------------------------------------------------

MAINTENANCE = [(utc(2025, 3, 3, 1), utc(2025, 3, 3, 3), "firmware update")]  # 10–12 KST


def test_it_refuses_a_window_overlapping_maintenance_and_suggests_after_it():
    refusal = check_maintenance(MAINTENANCE, utc(2025, 3, 3, 2), utc(2025, 3, 3, 4))
    assert (refusal.code, refusal.field) == ("maintenance", "start")
    assert "2025-03-03 10:00 KST to 2025-03-03 12:00 KST" in refusal.message
    assert "firmware update" in refusal.message
    assert "start at or after 2025-03-03 12:00 KST" in refusal.message


def test_it_allows_a_window_touching_maintenance():
    assert check_maintenance(MAINTENANCE, utc(2025, 3, 3, 3), utc(2025, 3, 3, 4)) is None
    assert check_maintenance(MAINTENANCE, utc(2025, 3, 3, 0), utc(2025, 3, 3, 1)) is None


def test_it_suggests_a_start_clear_of_back_to_back_maintenance():
    windows = MAINTENANCE + [(utc(2025, 3, 3, 3, 30), utc(2025, 3, 3, 5), "cooling check")]
    refusal = check_maintenance(windows, utc(2025, 3, 3, 2), utc(2025, 3, 3, 3))
    assert "start at or after 2025-03-03 14:00 KST" in refusal.message  # a 1 h gap is too short
