"""When a failed webhook delivery is tried again: the retry schedule with jitter, and its window.

Pure logic (no models): the delays come from settings.TESTBED_WEBHOOKS_RETRY_SCHEDULE (seconds
after each failed attempt: 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h by default, as Standard
Webhooks / Svix do), each stretched or shrunk by up to JITTER so that many deliveries failing at
once do not all come back at the same instant. No retry is made later than `window` after the
first attempt: the last one is brought forward to the end of the window, then the delivery fails.
"""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Sequence

JITTER = 0.1  # ± 10 % of each delay


def parse_schedule(text: str) -> tuple[float, ...]:
    """'5,300,1800' → (5.0, 300.0, 1800.0). The setting is checked at start-up; this is strict too."""
    delays = tuple(float(part) for part in text.split(",") if part.strip())
    if not delays or any(d < 0 for d in delays):
        raise ValueError(f"not a retry schedule: {text!r}")
    return delays


def next_attempt_at(
    *,
    attempts_made: int,
    first_attempt_at: dt.datetime,
    now: dt.datetime,
    schedule: Sequence[float],
    window: dt.timedelta,
    rng: random.Random | None = None,
) -> dt.datetime | None:
    """When to try again after `attempts_made` attempts have failed (the last one just now), or
    None when the schedule or the window is spent and the delivery has failed for good."""
    index = attempts_made - 1
    if index < 0 or index >= len(schedule):
        return None
    deadline = first_attempt_at + window
    if now >= deadline:
        return None
    factor = 1 + (rng or random).uniform(-JITTER, JITTER)
    moment = now + dt.timedelta(seconds=schedule[index] * factor)
    return min(moment, deadline)


def nominal_offsets(schedule: Sequence[float], window: dt.timedelta) -> list[dt.timedelta]:
    """When each attempt happens after the first, without jitter (for the docs and the tests)."""
    offsets = [dt.timedelta(0)]
    for delay in schedule:
        following = offsets[-1] + dt.timedelta(seconds=delay)
        if offsets[-1] >= window:
            break
        offsets.append(min(following, window))
    return offsets
