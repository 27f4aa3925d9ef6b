"""Booking window rules: alignment, lead time, duration, operating hours, quantity shape.

Pure: standard library only, no Django. Every check returns a `Refusal` (or None) whose
message tells the person what was wrong *and* what would work instead, with concrete local
times in the facility's zone. Time arithmetic on slots is wall-clock arithmetic counted from
local midnight, so a 30-minute grid stays on :00/:30 whatever the UTC offset.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

FACILITY_TZ = ZoneInfo("Asia/Seoul")

DAY = timedelta(days=1)
WEEKDAY_NAMES = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
# How far ahead a refusal looks for an open window to suggest.
SUGGESTION_HORIZON = timedelta(days=14)


@dataclass(frozen=True)
class Policy:
    slot_minutes: int
    min_minutes: int
    max_minutes: int
    min_lead_minutes: int = 0
    max_lead_days: int = 30
    opens_at: time | None = None  # None with closes_at None → open around the clock
    closes_at: time | None = None
    open_weekdays: frozenset[int] = frozenset(range(7))  # Monday=0
    buffer_minutes: int = 0
    tz: ZoneInfo = FACILITY_TZ

    def __post_init__(self) -> None:
        if self.slot_minutes < 1:
            raise ValueError("slot_minutes must be at least 1")
        if self.min_minutes < 1 or self.max_minutes < self.min_minutes:
            raise ValueError("need 1 <= min_minutes <= max_minutes")
        if self.min_lead_minutes < 0 or self.max_lead_days < 0 or self.buffer_minutes < 0:
            raise ValueError("lead times and buffer cannot be negative")
        weekdays = frozenset(self.open_weekdays)
        if not weekdays <= frozenset(range(7)):
            raise ValueError("open_weekdays holds weekday numbers 0 (Monday) to 6 (Sunday)")
        object.__setattr__(self, "open_weekdays", weekdays)

    @property
    def around_the_clock(self) -> bool:
        return self.opens_at is None and self.closes_at is None

    @property
    def every_day(self) -> bool:
        return len(self.open_weekdays) == 7

    @property
    def slot(self) -> timedelta:
        return timedelta(minutes=self.slot_minutes)

    @property
    def buffer(self) -> timedelta:
        return timedelta(minutes=self.buffer_minutes)


@dataclass(frozen=True)
class Refusal:
    code: str  # stable machine code
    field: str  # which input field is at fault: "start", "end", "quantity", "unit", "resource"
    message: str  # for a person: what was wrong AND what would work instead


# --- time helpers -----------------------------------------------------------------------


def require_aware(moment: datetime, name: str = "datetime") -> datetime:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware, got naive {moment.isoformat()}")
    return moment


def add_elapsed(moment: datetime, delta: timedelta) -> datetime:
    """`moment + delta` in elapsed time (not wall-clock), kept in `moment`'s zone."""
    return (moment.astimezone(UTC) + delta).astimezone(moment.tzinfo)


def elapsed(start: datetime, end: datetime) -> timedelta:
    """Real time from start to end (aware subtraction within one zone is wall-clock)."""
    return end.astimezone(UTC) - start.astimezone(UTC)


def _utc(moment: datetime) -> datetime:
    return moment.astimezone(UTC)


def _local(policy: Policy, moment: datetime) -> datetime:
    return require_aware(moment).astimezone(policy.tz)


def _at(policy: Policy, day: date, clock: time) -> datetime:
    return datetime.combine(day, clock, tzinfo=policy.tz)


def _wall_since_midnight(local: datetime) -> timedelta:
    return local.replace(tzinfo=None) - datetime.combine(local.date(), time(0))


def is_aligned(policy: Policy, moment: datetime) -> bool:
    wall = _wall_since_midnight(_local(policy, moment))
    if policy.slot_minutes >= 1440:
        return wall == timedelta(0)
    return wall % policy.slot == timedelta(0)


def align_up(policy: Policy, moment: datetime) -> datetime:
    """The next slot boundary at or after `moment` (slots counted from local midnight)."""
    local = _local(policy, moment)
    wall = _wall_since_midnight(local)
    if wall == timedelta(0):
        return local
    next_midnight = _at(policy, local.date() + DAY, time(0))
    if policy.slot_minutes >= 1440:
        return next_midnight
    slots = -(-wall // policy.slot)  # ceiling division of timedeltas
    wall_up = slots * policy.slot
    if wall_up >= DAY:
        return next_midnight
    return _at(policy, local.date(), time(0)) + wall_up


def align_down(policy: Policy, moment: datetime) -> datetime:
    """The last slot boundary at or before `moment`."""
    local = _local(policy, moment)
    midnight = _at(policy, local.date(), time(0))
    if policy.slot_minutes >= 1440:
        return midnight
    wall = _wall_since_midnight(local)
    return midnight + (wall // policy.slot) * policy.slot


def align_nearest(policy: Policy, moment: datetime) -> datetime:
    down, up = align_down(policy, moment), align_up(policy, moment)
    return down if moment - down < up - moment else up


def next_boundary(policy: Policy, moment: datetime) -> datetime:
    """The first slot boundary strictly after `moment`."""
    return align_up(policy, moment + timedelta(microseconds=1))


# --- operating hours --------------------------------------------------------------------


def open_span(policy: Policy, day: date) -> tuple[datetime, datetime]:
    """[opening, closing] of local `day`; closing at or before opening means the next day."""
    opens = policy.opens_at or time(0)
    closes = policy.closes_at or time(0)
    closing_day = day if closes > opens else day + DAY
    return _at(policy, day, opens), _at(policy, closing_day, closes)


def _days_touched(policy: Policy, start: datetime, end: datetime) -> Iterator[date]:
    day = _local(policy, start).date()
    last = _local(policy, end - timedelta(microseconds=1)).date()
    while day <= last:
        yield day
        day += DAY


def within_hours(policy: Policy, start: datetime, end: datetime) -> bool:
    """Operating hours and open weekdays only (no alignment)."""
    start, end = _utc(start), _utc(end)
    if policy.around_the_clock:
        if policy.every_day:
            return True
        return all(d.weekday() in policy.open_weekdays for d in _days_touched(policy, start, end))
    first_day = _local(policy, start).date()
    for day in (first_day - DAY, first_day):
        if day.weekday() not in policy.open_weekdays:
            continue
        opening, closing = open_span(policy, day)
        if opening <= start and end <= closing:
            return True
    return False


def is_open(policy: Policy, start: datetime, end: datetime) -> bool:
    """Aligned, inside operating hours, on open weekdays (no lead-time or duration checks)."""
    require_aware(start, "start")
    require_aware(end, "end")
    if _utc(end) <= _utc(start):
        return False
    return (
        is_aligned(policy, start) and is_aligned(policy, end) and within_hours(policy, start, end)
    )


def opening_times(policy: Policy, after: datetime, until: datetime) -> list[datetime]:
    """Each open day's opening time (aware, local) in [after, until]; [] when around the clock."""
    require_aware(after, "after")
    require_aware(until, "until")
    if policy.around_the_clock:
        return []
    opens = policy.opens_at or time(0)
    day = _local(policy, after).date() - DAY
    last = _local(policy, until).date()
    result = []
    while day <= last:
        if day.weekday() in policy.open_weekdays:
            moment = _at(policy, day, opens)
            if _utc(after) <= moment <= _utc(until):
                result.append(moment)
        day += DAY
    return result


def reopening_times(policy: Policy, after: datetime, until: datetime) -> list[datetime]:
    """Where an around-the-clock resource opens again after a closed weekday, in [after, until].

    `opening_times` is empty around the clock, but with closed weekdays the local midnight
    that starts an open day after a closed one is where open windows begin again.
    """
    require_aware(after, "after")
    require_aware(until, "until")
    if not policy.around_the_clock or policy.every_day or not policy.open_weekdays:
        return []
    day = _local(policy, after).date()
    last = _local(policy, until).date()
    result = []
    while day <= last:
        if (
            day.weekday() in policy.open_weekdays
            and (day - DAY).weekday() not in policy.open_weekdays
        ):
            moment = _at(policy, day, time(0))
            if _utc(after) <= moment <= _utc(until):
                result.append(moment)
        day += DAY
    return result


def next_open_window(
    policy: Policy, start: datetime, duration: timedelta, *, horizon: timedelta = SUGGESTION_HORIZON
) -> tuple[datetime, datetime] | None:
    """The earliest open window of `duration` starting at or after `start`, within `horizon`.

    Open windows can only begin at `start` aligned up or where the resource opens, so only
    those points are tried.
    """
    until = add_elapsed(start, horizon)
    candidates = {align_up(policy, start)}
    candidates.update(
        align_up(policy, t)
        for t in opening_times(policy, start, until) + reopening_times(policy, start, until)
    )
    for candidate in sorted(candidates):
        end = add_elapsed(candidate, duration)
        if candidate <= until and is_open(policy, candidate, end):
            return candidate, end
    return None


# --- wording ----------------------------------------------------------------------------


def fmt_moment(moment: datetime, tz: ZoneInfo = FACILITY_TZ) -> str:
    local = moment.astimezone(tz)
    return f"{local:%Y-%m-%d %H:%M} {local.tzname()}"


def fmt_minutes(minutes: int | float) -> str:
    minutes = int(minutes)
    if minutes and minutes % 1440 == 0:
        days = minutes // 1440
        return f"{days} day{'s' if days != 1 else ''}"
    hours, rest = divmod(minutes, 60)
    parts = []
    if hours:
        parts.append(f"{hours} hour{'s' if hours != 1 else ''}")
    if rest or not hours:
        parts.append(f"{rest} minute{'s' if rest != 1 else ''}")
    return " ".join(parts)


def _fmt_clock(clock: time | None, *, closing: bool = False) -> str:
    if clock is None or (closing and clock == time(0)):
        return "24:00" if closing else "00:00"
    return f"{clock:%H:%M}"


def fmt_weekdays(weekdays: frozenset[int]) -> str:
    """Mon–Fri, Mon, Wed, Fri, Mon–Wed, Sat, Sun, every day, no day."""
    if len(weekdays) == 7:
        return "every day"
    if not weekdays:
        return "no day"
    runs: list[list[int]] = []
    for day in sorted(weekdays):
        if runs and runs[-1][-1] == day - 1:
            runs[-1].append(day)
        else:
            runs.append([day])
    parts = []
    for run in runs:
        if len(run) >= 3:
            parts.append(f"{WEEKDAY_NAMES[run[0]]}–{WEEKDAY_NAMES[run[-1]]}")
        else:
            parts.extend(WEEKDAY_NAMES[d] for d in run)
    return ", ".join(parts)


def fmt_hours(policy: Policy) -> str:
    """E.g. "Mon–Fri 09:00–18:00" or "Mon–Sat, around the clock"."""
    days = fmt_weekdays(policy.open_weekdays)
    if policy.around_the_clock:
        return f"{days}, around the clock"
    return f"{days} {_fmt_clock(policy.opens_at)}–{_fmt_clock(policy.closes_at, closing=True)}"


# --- checks -----------------------------------------------------------------------------


def check_window(policy: Policy, start: datetime, end: datetime, now: datetime) -> Refusal | None:
    """Validate a requested window; the first failing rule wins (see module docstring)."""
    require_aware(start, "start")
    require_aware(end, "end")
    require_aware(now, "now")
    # Compare in UTC: aware datetimes sharing one zone compare by wall clock.
    start, end, now = _utc(start), _utc(end), _utc(now)
    tz = policy.tz

    def when(moment: datetime) -> str:
        return fmt_moment(moment, tz)

    if end <= start:
        example_end = add_elapsed(start, timedelta(minutes=policy.min_minutes))
        return Refusal(
            "invalid",
            "end",
            f"The end ({when(end)}) must be after the start ({when(start)}); "
            f"for example end at {when(example_end)}.",
        )

    earliest = align_up(policy, add_elapsed(now, timedelta(minutes=policy.min_lead_minutes)))
    if start < now:
        return Refusal(
            "lead_time",
            "start",
            f"The start ({when(start)}) is in the past; the earliest start you can book now "
            f"is {when(earliest)}.",
        )
    if start < add_elapsed(now, timedelta(minutes=policy.min_lead_minutes)):
        return Refusal(
            "lead_time",
            "start",
            f"Bookings must start at least {fmt_minutes(policy.min_lead_minutes)} from now; "
            f"the earliest start allowed is {when(earliest)}.",
        )
    latest = add_elapsed(now, timedelta(days=policy.max_lead_days))
    if start > latest:
        latest_start = align_down(policy, latest)
        return Refusal(
            "lead_time",
            "start",
            f"Bookings can start at most {policy.max_lead_days} days ahead; the latest start "
            f"allowed now is on {latest_start.astimezone(tz):%Y-%m-%d} (at {when(latest_start)}).",
        )

    start_ok, end_ok = is_aligned(policy, start), is_aligned(policy, end)
    if not (start_ok and end_ok):
        proposed_start = align_nearest(policy, start)
        proposed_end = align_nearest(policy, end)
        if proposed_end <= proposed_start:
            proposed_end = next_boundary(policy, proposed_start)
        if policy.slot_minutes >= 1440:
            grid = f"in whole days, from midnight to midnight ({tz.key} time)"
        else:
            grid = f"on boundaries every {fmt_minutes(policy.slot_minutes)} from midnight ({tz.key} time)"
        return Refusal(
            "not_aligned",
            "start" if not start_ok else "end",
            f"Bookings here must start and end {grid}; {when(start)} to {when(end)} does not. "
            f"Try {when(proposed_start)} to {when(proposed_end)}.",
        )

    minutes = elapsed(start, end) / timedelta(minutes=1)
    allowed = f"between {fmt_minutes(policy.min_minutes)} and {fmt_minutes(policy.max_minutes)}"
    if minutes < policy.min_minutes:
        fixed_end = add_elapsed(start, timedelta(minutes=policy.min_minutes))
        return Refusal(
            "too_short",
            "end",
            f"A booking here lasts {allowed}; {fmt_minutes(minutes)} is too short. "
            f"End at {when(fixed_end)} or later.",
        )
    if minutes > policy.max_minutes:
        fixed_end = add_elapsed(start, timedelta(minutes=policy.max_minutes))
        return Refusal(
            "too_long",
            "end",
            f"A booking here lasts {allowed}; {fmt_minutes(minutes)} is too long. "
            f"End at {when(fixed_end)} or earlier, or make several bookings.",
        )

    if not within_hours(policy, start, end):
        suggestion = next_open_window(policy, start, end - start)
        if suggestion is not None:
            instead = f"The next window of the same length that fits is {when(suggestion[0])} to {when(suggestion[1])}."
        elif policy.around_the_clock:
            instead = "Choose a window that stays on open days."
        else:
            opening, closing = open_span(policy, _local(policy, start).date())
            instead = f"A booking must fit within one day's hours ({fmt_minutes((closing - opening) / timedelta(minutes=1))})."
        return Refusal(
            "outside_hours",
            "start",
            f"This resource is open {fmt_hours(policy)} ({tz.key} time); "
            f"{when(start)} to {when(end)} falls outside those hours. {instead}",
        )
    return None


def node_shapes(node_sizes: Iterable[int]) -> dict[int, int]:
    """Device count per node → how many nodes have it, largest first (nodes with none left out)."""
    shapes: dict[int, int] = {}
    for size in sorted((s for s in node_sizes if s > 0), reverse=True):
        shapes[size] = shapes.get(size, 0) + 1
    return shapes


def whole_node_counts(shapes: Mapping[int, int], quantity: int) -> dict[int, int] | None:
    """How many whole nodes of each size add up to exactly `quantity`, using the fewest nodes
    (ties: more of the larger nodes); None when no set of whole nodes does.

    `shapes`: device count per node → nodes available of that size. A bounded knapsack over
    the sums up to `quantity`, each size split into binary bundles, so a pool of a thousand
    nodes in a few shapes costs a few thousand steps.
    """
    if quantity < 1:
        return None
    sizes = sorted((s for s, n in shapes.items() if s > 0 and n > 0), reverse=True)
    # best[sum] = (nodes used, counts per size in `sizes` order)
    best: dict[int, tuple[int, tuple[int, ...]]] = {0: (0, (0,) * len(sizes))}
    for position, size in enumerate(sizes):
        left, bundle = shapes[size], 1
        while left > 0:
            take = min(bundle, left)
            left -= take
            bundle *= 2
            step = take * size
            for total, (nodes, counts) in sorted(best.items(), reverse=True):
                reached = total + step
                if reached > quantity:
                    continue
                candidate = (
                    nodes + take,
                    counts[:position] + (counts[position] + take,) + counts[position + 1 :],
                )
                known = best.get(reached)
                if known is None or (candidate[0], [-c for c in candidate[1]]) < (
                    known[0],
                    [-c for c in known[1]],
                ):
                    best[reached] = candidate
    found = best.get(quantity)
    if found is None:
        return None
    return {size: count for size, count in zip(sizes, found[1], strict=True) if count}


def _reachable(shapes: Mapping[int, int], limit: int) -> int:
    """Bit i set when some set of whole nodes has exactly i devices (i <= limit)."""
    bits = 1
    mask = (1 << (limit + 1)) - 1
    for size, count in shapes.items():
        left, bundle = count, 1
        while left > 0:
            take = min(bundle, left)
            left -= take
            bundle *= 2
            bits = (bits | (bits << (take * size))) & mask
    return bits


def _fmt_shapes(shapes: Mapping[int, int]) -> str:
    return " + ".join(f"{nodes} × {size}" for size, nodes in shapes.items())


def check_quantity(
    quantity: int, *, capacity: int, node_sizes: Sequence[int] = ()
) -> Refusal | None:
    """Units: any count up to capacity. Pool devices: any count that fits on one node, or exactly
    the devices of a set of whole nodes (nodes may differ in size: 12 = 8 + 4)."""
    noun = "devices" if node_sizes else "units"
    if quantity < 1:
        return Refusal(
            "invalid", "quantity", f"Ask for at least 1 of the {noun}; you asked for {quantity}."
        )
    if quantity > capacity:
        return Refusal(
            "capacity",
            "quantity",
            f"This resource has {capacity} {noun} in all; ask for {capacity} or fewer.",
        )
    shapes = node_shapes(node_sizes)
    if not shapes:
        return None
    largest = max(shapes)
    if quantity <= largest:
        return None
    reachable = _reachable(shapes, capacity)
    if reachable >> quantity & 1:
        return None
    lower = next((n for n in range(quantity - 1, largest, -1) if reachable >> n & 1), largest)
    higher = next((n for n in range(quantity + 1, capacity + 1) if reachable >> n & 1), None)
    options = [str(n) for n in (lower, higher) if n is not None]
    mixed = f" (this pool's nodes: {_fmt_shapes(shapes)} devices)" if len(shapes) > 1 else ""
    return Refusal(
        "node_shape",
        "quantity",
        f"Requests larger than one node ({largest} devices) take whole nodes{mixed}, and no set "
        f"of whole nodes has exactly {quantity}: ask for {' or '.join(options)} instead of "
        f"{quantity}.",
    )


def check_maintenance(
    windows: Sequence[tuple[datetime, datetime, str]], start: datetime, end: datetime
) -> Refusal | None:
    """Refuse a window that overlaps maintenance; suggest the first start clear of all of it."""
    require_aware(start, "start")
    require_aware(end, "end")
    start, end = _utc(start), _utc(end)
    ordered = sorted(
        (
            (_utc(require_aware(w_start)), _utc(require_aware(w_end)), reason)
            for w_start, w_end, reason in windows
        ),
        key=lambda w: (w[0], w[1]),
    )
    for m_start, m_end, reason in ordered:
        if m_start < end and start < m_end:
            duration = end - start
            retry = m_end
            for o_start, o_end, _ in ordered:  # chained windows push the suggestion on
                if o_start < retry + duration and retry < o_end:
                    retry = o_end
            because = f" ({reason})" if reason else ""
            return Refusal(
                "maintenance",
                "start",
                f"The resource is under maintenance from {fmt_moment(m_start)} to "
                f"{fmt_moment(m_end)}{because}; start at or after {fmt_moment(retry)}.",
            )
    return None
