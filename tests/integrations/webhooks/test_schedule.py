"""The retry schedule: Standard Webhooks' delays with jitter, never past the 24 h window."""

from __future__ import annotations

import datetime as dt
import random

import pytest

from integrations.webhooks.schedule import JITTER, next_attempt_at, nominal_offsets, parse_schedule

DEFAULT = parse_schedule("5,300,1800,7200,18000,36000,36000")
DAY = dt.timedelta(hours=24)
T0 = dt.datetime(2026, 12, 1, 9, tzinfo=dt.UTC)


def test_it_spaces_attempts_like_standard_webhooks_and_ends_at_24_hours():
    offsets = nominal_offsets(DEFAULT, DAY)
    h, m, s = (dt.timedelta(hours=1), dt.timedelta(minutes=1), dt.timedelta(seconds=1))
    assert offsets == [
        0 * s,
        5 * s,
        5 * m + 5 * s,
        35 * m + 5 * s,
        2 * h + 35 * m + 5 * s,
        7 * h + 35 * m + 5 * s,
        17 * h + 35 * m + 5 * s,
        DAY,  # the last 10 h step is brought forward to the end of the window
    ]


@pytest.mark.parametrize("attempts_made", range(1, len(DEFAULT) + 1))
def test_it_waits_the_scheduled_delay_give_or_take_the_jitter(attempts_made):
    delay = DEFAULT[attempts_made - 1]
    seen = set()
    for seed in range(200):
        moment = next_attempt_at(
            attempts_made=attempts_made,
            first_attempt_at=T0,
            now=T0,
            schedule=DEFAULT,
            window=dt.timedelta(days=30),
            rng=random.Random(seed),
        )
        assert moment is not None
        waited = (moment - T0).total_seconds()
        assert delay * (1 - JITTER) <= waited <= delay * (1 + JITTER)
        seen.add(round(waited, 3))
    assert len(seen) > 100  # jittered: failures at one instant do not all come back together


def test_it_brings_the_last_retry_forward_to_the_end_of_the_window():
    now = T0 + dt.timedelta(hours=17, minutes=35, seconds=5)
    moment = next_attempt_at(
        attempts_made=7, first_attempt_at=T0, now=now, schedule=DEFAULT, window=DAY
    )
    assert moment == T0 + DAY


def test_it_gives_up_when_the_schedule_or_the_window_is_spent():
    spent = next_attempt_at(
        attempts_made=len(DEFAULT) + 1, first_attempt_at=T0, now=T0, schedule=DEFAULT, window=DAY
    )
    assert spent is None
    late = next_attempt_at(
        attempts_made=2, first_attempt_at=T0, now=T0 + DAY, schedule=DEFAULT, window=DAY
    )
    assert late is None


@pytest.mark.parametrize("text", ["", "5,-1", "x"])
def test_it_refuses_a_schedule_that_is_not_a_list_of_seconds(text):
    with pytest.raises(ValueError):
        parse_schedule(text)
