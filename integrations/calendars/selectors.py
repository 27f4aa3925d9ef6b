"""Which bookings a feed lists: its owner's rights, a bounded window, and a bounded count.

The window is 90 days back and a year ahead. Cancelled, rejected and no-show bookings are kept
for 30 days after they changed, as CANCELLED events, so that subscribed calendars remove them;
older ones drop out. At most MAX_EVENTS bookings, in time order (start, id): past a cap that
large, the furthest ahead are left out.
Always two queries: the bookings with everything a title needs, and their allocations.
"""

from __future__ import annotations

import datetime as dt

from django.db.models import Prefetch, Q

from booking.choices import BookingStatus
from booking.models import Allocation, Booking
from booking.services.access import visible_organization_ids
from integrations.calendars.choices import FeedScope
from integrations.calendars.models import CalendarFeed

PAST = dt.timedelta(days=90)
AHEAD = dt.timedelta(days=366)
GONE_KEPT = dt.timedelta(days=30)
MAX_EVENTS = 2000
GONE_STATUSES = (BookingStatus.CANCELLED, BookingStatus.REJECTED, BookingStatus.NO_SHOW)


def feed_bookings(feed: CalendarFeed, *, now: dt.datetime) -> list[Booking]:
    """The bookings the feed shows now. Call only for a feed whose owner may follow it
    (services.calendar_feed_for_token checked); a personal feed is narrowed here to the
    organisations the owner still belongs to, as the access module's visibility rule says."""
    qs = Booking.objects.filter(end__gt=now - PAST, start__lt=now + AHEAD).filter(
        ~Q(status__in=GONE_STATUSES) | Q(updated_at__gte=now - GONE_KEPT)
    )
    if feed.scope == FeedScope.USER:
        qs = qs.filter(user_id=feed.owner_id)
        visible = visible_organization_ids(feed.owner)
        if visible is not None:
            qs = qs.filter(organization_id__in=visible)
    elif feed.scope == FeedScope.ORGANIZATION:
        qs = qs.filter(organization=feed.organization)
    elif feed.equipment_type_id is not None:
        qs = qs.filter(equipment_type=feed.equipment_type)
    else:
        qs = qs.filter(pool=feed.pool)
    qs = qs.select_related(
        "organization", "user", "equipment_type__center", "pool__center", "pinned_unit"
    ).prefetch_related(
        Prefetch(
            "allocations",
            queryset=Allocation.objects.select_related("unit", "node").order_by("pk"),
        )
    )
    return list(qs.order_by("start", "pk")[:MAX_EVENTS])
