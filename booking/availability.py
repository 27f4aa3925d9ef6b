"""Availability as computed data: free-count steps, bookable slot starts, and fits as bitmaps.

Pure: standard library only, no Django. Availability is always derived from the busy intervals
(never kept as a counter).

Two ways to the same answer:
- `timeline` sweeps sorted busy intervals: exact for any input, used when the intervals are few
  (the SQLite fallback, the reference the tests and the benchmark compare against), with
  `slot_starts` / `slot_start_minutes` walking every bookable start of a window.
- The *cell* functions (booking/cells.py) answer a whole window at once from bitmaps that
  PostgreSQL keeps or builds (booking/occupancy.py); they need one UTC offset over the window
  (`fixed_offset`), otherwise the caller uses the sweep.
`IsoMoments` writes an answer's moments as the API's datetime field does, each once.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime, time, timedelta

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
MINUTE = timedelta(minutes=1)
# Moments this far inside the calendar's ends are safe to shift by a day in any zone.
_EDGE = timedelta(days=3)


def merged_clipped(intervals: Sequence[Interval], start: datetime, end: datetime) -> list[Interval]:
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
        for s, e in merged_clipped(busy.get(uid, ()), lo, hi):
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


def fixed_offset(policy: Policy, start: datetime, end: datetime) -> timedelta | None:
    """The zone's one UTC offset over [start, end] (checked at every local midnight), or None."""
    if start.astimezone(UTC) < datetime.min.replace(tzinfo=UTC) + _EDGE:
        return None
    if end.astimezone(UTC) > END_OF_TIME - _EDGE:
        return None
    offset = start.astimezone(policy.tz).utcoffset()
    day = start.astimezone(policy.tz).date() - DAY
    last = end.astimezone(policy.tz).date() + DAY
    while day <= last:
        if datetime.combine(day, time(0), tzinfo=policy.tz).utcoffset() != offset:
            return None
        day += DAY
    if end.astimezone(policy.tz).utcoffset() != offset:
        return None
    return offset


def _open_spans(policy: Policy, start: datetime, end: datetime) -> list[Interval]:
    """Where open windows can lie: each open day's hours, or runs of open days around the clock."""
    if policy.around_the_clock:
        if policy.every_day:
            return [(start, end)]
        spans: list[Interval] = []
        day = start.astimezone(policy.tz).date()
        last = end.astimezone(policy.tz).date()
        run_start: date | None = None
        while day <= last + DAY:
            is_open_day = day <= last and day.weekday() in policy.open_weekdays
            if is_open_day and run_start is None:
                run_start = day
            elif not is_open_day and run_start is not None:
                lo = max(datetime.combine(run_start, time(0), tzinfo=policy.tz), start)
                hi = min(datetime.combine(day, time(0), tzinfo=policy.tz), end)
                if lo < hi:
                    spans.append((lo, hi))
                run_start = None
            day += DAY
        return spans
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
    return spans


def local_minutes(moment: datetime, offset: timedelta) -> int:
    """Whole wall-clock minutes since 1970-01-01 00:00 local, for a moment on a minute."""
    return (moment.astimezone(UTC) + offset - datetime(1970, 1, 1, tzinfo=UTC)) // MINUTE


def slot_start_minutes(
    policy: Policy, start: datetime, end: datetime, duration: timedelta
) -> tuple[list[int], timedelta] | None:
    """`slot_starts` as local wall minutes since 1970 (and the offset), or None when the zone
    changes its offset near the window (then use `slot_starts`). Integer arithmetic only."""
    require_aware(start, "start")
    require_aware(end, "end")
    if duration <= timedelta(0):
        raise ValueError("duration must be positive")
    end = min(end, END_OF_TIME)
    offset = fixed_offset(policy, start, end)
    if offset is None:
        return None
    if end <= start or duration % MINUTE:
        return [], offset  # a start on a whole minute plus a part-minute never ends aligned
    length = duration // MINUTE
    slot = policy.slot_minutes
    found: list[int] = []
    for span_start, span_end in _open_spans(policy, start, end):
        first = align_up(policy, span_start)
        if first.astimezone(UTC) >= span_end.astimezone(UTC):
            continue
        moment = local_minutes(first, offset)
        # The last start whose window still ends inside the span (span_end may be mid-minute).
        last = (span_end.astimezone(UTC) + offset - datetime(1970, 1, 1, tzinfo=UTC)) // MINUTE
        last -= length
        while moment <= last:
            wall_end = (moment + length) % 1440
            if (wall_end == 0) if slot >= 1440 else (wall_end % slot == 0):
                found.append(moment)
            wall = moment % 1440
            step = slot if slot < 1440 and wall + slot < 1440 else 1440 - wall
            moment += step
    return found, offset


def _from_local_minutes(minutes: int, offset: timedelta, tz) -> datetime:
    return (datetime(1970, 1, 1, tzinfo=UTC) + minutes * MINUTE - offset).astimezone(tz)


def slot_starts(
    policy: Policy,
    start: datetime,
    end: datetime,
    duration: timedelta,
    *,
    limit: int | None = None,
) -> list[datetime]:
    """Every aligned s with start ≤ s and s + duration ≤ end where the resource is open.

    The whole window is walked: `limit` (None: no limit) only shortens the answer for callers
    that want the first few. Only open hours are walked, so closed nights and weekends cost
    nothing; with one UTC offset over the window the walk is integer arithmetic. Nothing past
    END_OF_TIME is walked (the next day would overflow).
    """
    if limit is not None and limit < 1:
        return []
    fast = slot_start_minutes(policy, start, end, duration)
    if fast is not None:
        minutes, offset = fast
        if limit is not None:
            minutes = minutes[:limit]
        return [_from_local_minutes(m, offset, policy.tz) for m in minutes]
    end = min(end, END_OF_TIME)
    if end <= start:
        return []
    found: list[datetime] = []
    for span_start, span_end in _open_spans(policy, start, end):
        moment = align_up(policy, span_start)
        while True:
            window_end = add_clipped(moment, duration)
            if window_end > span_end or elapsed(moment, window_end) < duration:
                break
            if is_open(policy, moment, window_end):
                found.append(moment)
                if limit is not None and len(found) >= limit:
                    return found
            moment = next_boundary(policy, moment)
    return found


_CLOCK = [f"{m // 60:02d}:{m % 60:02d}:00" for m in range(1440)]


class IsoMoments:
    """moment → `moment.astimezone(zone).isoformat()`, remembered: an answer's timeline bounds
    and fits share most of their moments, and whole-minute ones are put together from a cached
    date and offset text (a third of isoformat's cost)."""

    def __init__(self, zone) -> None:
        self.zone = zone
        self.memo: dict[datetime, str] = {}
        self.days: dict[int, str] = {}
        self.offsets: dict[timedelta | None, str] = {}

    def __call__(self, moment: datetime) -> str:
        text = self.memo.get(moment)
        if text is None:
            local = moment.astimezone(self.zone)
            if local.second or local.microsecond:
                text = local.isoformat()
            else:
                offset = local.utcoffset()
                suffix = self.offsets.get(offset)
                if suffix is None:  # "YYYY-MM-DDTHH:MM:SS" is 19 characters in every year
                    suffix = self.offsets[offset] = local.isoformat()[19:]
                day = local.toordinal()
                prefix = self.days.get(day)
                if prefix is None:
                    prefix = self.days[day] = local.isoformat()[:11]
                text = prefix + _CLOCK[local.hour * 60 + local.minute] + suffix
            self.memo[moment] = text
        return text

    def many(self, moments: Sequence[datetime]) -> list[str]:
        """`[self(m) for m in moments]`, faster for what an answer is made of: moments already in
        this zone on whole minutes are written from their own wall clock and UTC offset, neither
        converted nor hashed (an aware datetime's hash converts it to UTC)."""
        zone, clock = self.zone, _CLOCK
        days, offsets = self.days, self.offsets
        out: list[str] = []
        append = out.append
        for m in moments:
            if m.tzinfo is not zone or m.second or m.microsecond:
                append(self(m))
                continue
            offset = m.utcoffset()
            suffix = offsets.get(offset)
            if suffix is None:
                suffix = offsets[offset] = m.isoformat()[19:]
            day = m.toordinal()
            prefix = days.get(day)
            if prefix is None:
                prefix = days[day] = m.isoformat()[:11]
            append(prefix + clock[m.hour * 60 + m.minute] + suffix)
        return out
