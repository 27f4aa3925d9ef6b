"""Availability as computed data: free-count step functions and bookable slot starts.

Pure: standard library only, no Django. Availability is always derived from the busy
intervals (never kept as a counter), in one sweep over sorted events.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta

from booking.allocator import END_OF_TIME, add_clipped
from booking.policy import (
    DAY,
    Policy,
    align_up,
    elapsed,
    is_open,
    next_boundary,
    open_span,
    require_aware,
)

Interval = tuple[datetime, datetime]


def _merged_clipped(
    intervals: Sequence[Interval], start: datetime, end: datetime
) -> list[Interval]:
    """One id's busy intervals clipped to [start, end) and merged, so overlaps count once."""
    clipped = sorted(
        (max(s.astimezone(UTC), start), min(e.astimezone(UTC), end))
        for s, e in intervals
        if s < end and e > start
    )
    merged: list[Interval] = []
    for s, e in clipped:
        if merged and s <= merged[-1][1]:
            if e > merged[-1][1]:
                merged[-1] = (merged[-1][0], e)
        else:
            merged.append((s, e))
    return merged


def timeline(
    ids: Sequence[int],
    busy: Mapping[int, Sequence[Interval]],
    start: datetime,
    end: datetime,
) -> list[tuple[datetime, datetime, int]]:
    """How many of `ids` are free, as merged (seg_start, seg_end, free) steps covering [start, end).

    Busy intervals of ids not in `ids` are ignored. Segment bounds are in `start`'s zone.
    """
    require_aware(start, "start")
    require_aware(end, "end")
    zone = start.tzinfo
    # Steps end at END_OF_TIME at the latest: shown in `start`'s zone, a later one could overflow.
    lo, hi = start.astimezone(UTC), min(end, END_OF_TIME).astimezone(UTC)
    if hi <= lo:
        return []
    unique_ids = list(dict.fromkeys(ids))
    events: list[tuple[datetime, int]] = []
    for uid in unique_ids:
        for s, e in _merged_clipped(busy.get(uid, ()), lo, hi):
            events.append((s, 1))
            events.append((e, -1))
    events.sort()

    segments: list[tuple[datetime, datetime, int]] = []
    busy_now = 0
    i = 0
    cursor = lo
    while cursor < hi:
        while i < len(events) and events[i][0] <= cursor:
            busy_now += events[i][1]
            i += 1
        step_end = events[i][0] if i < len(events) else hi
        free = len(unique_ids) - busy_now
        if segments and segments[-1][2] == free:
            segments[-1] = (segments[-1][0], step_end, free)
        else:
            segments.append((cursor, step_end, free))
        cursor = step_end
    return [(s.astimezone(zone), e.astimezone(zone), n) for s, e, n in segments]


def slot_starts(
    policy: Policy, start: datetime, end: datetime, duration: timedelta, *, limit: int = 500
) -> list[datetime]:
    """Every aligned s with start ≤ s and s + duration ≤ end where the resource is open.

    With operating hours, only each open day's hours are walked, so closed nights and
    weekends cost nothing. Nothing past END_OF_TIME is walked (the next day would overflow).
    """
    require_aware(start, "start")
    require_aware(end, "end")
    if duration <= timedelta(0):
        raise ValueError("duration must be positive")
    end = min(end, END_OF_TIME)
    if limit < 1 or end <= start:
        return []
    if policy.around_the_clock:
        spans = [(start, end)]
    else:
        spans = []
        day = start.astimezone(policy.tz).date() - DAY
        last = end.astimezone(policy.tz).date()
        while day <= last:
            if day.weekday() in policy.open_weekdays:
                opening, closing = open_span(policy, day)
                lo, hi = max(opening, start), min(closing, end)
                if lo < hi:
                    spans.append((lo, hi))
            day += DAY

    found: list[datetime] = []
    for span_start, span_end in spans:
        moment = align_up(policy, span_start)
        while True:
            window_end = add_clipped(moment, duration)
            if window_end > span_end or elapsed(moment, window_end) < duration:
                break
            if is_open(policy, moment, window_end):
                found.append(moment)
                if len(found) >= limit:
                    return found
            moment = next_boundary(policy, moment)
    return found
