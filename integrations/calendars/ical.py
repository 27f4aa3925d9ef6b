"""A feed's bookings as an iCalendar (RFC 5545) document, built with the `icalendar` package.

One VEVENT per booking: UID `booking-<id>@<host>` (stable, so calendars update the event in
place), DTSTART/DTEND in Asia/Seoul with a VTIMEZONE, DTSTAMP/LAST-MODIFIED from the booking's
last change (so the same bookings give the same bytes, and the same ETag), STATUS
(confirmed, in use, completed → CONFIRMED; pending, awaiting approval → TENTATIVE; cancelled,
rejected, no-show → CANCELLED), a SUMMARY with the status and resource name, LOCATION (centre and
room, or node names), a DESCRIPTION and the booking page's URL. Titles in Korean or English.
No query runs here: everything comes from the rows selectors.feed_bookings loaded.
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from collections.abc import Iterable

from django.utils import translation
from django.utils.functional import Promise
from django.utils.translation import gettext as _
from django.utils.translation import pgettext, pgettext_lazy
from icalendar import Calendar, Event, Timezone

from booking.choices import BookingStatus
from booking.models import Booking
from integrations.calendars.choices import FeedScope
from integrations.calendars.models import CalendarFeed

TZID = "Asia/Seoul"
SEOUL = zoneinfo.ZoneInfo(TZID)
# A fixed span for the VTIMEZONE: Korea has kept +09:00 without daylight saving since 1988, so
# one STANDARD rule covers it, and the document does not change from one day to the next.
TZ_FIRST = dt.date(2000, 1, 1)
TZ_LAST = dt.date(2100, 1, 1)
MAX_NODE_NAMES = 8  # in LOCATION; DESCRIPTION lists up to MAX_LISTED
MAX_LISTED = 64
REFRESH = dt.timedelta(hours=1)  # a hint; Google and Outlook choose their own interval

ICAL_STATUS: dict[str, str] = {
    BookingStatus.PENDING: "TENTATIVE",
    BookingStatus.AWAITING_APPROVAL: "TENTATIVE",
    BookingStatus.CONFIRMED: "CONFIRMED",
    BookingStatus.ACTIVE: "CONFIRMED",
    BookingStatus.COMPLETED: "CONFIRMED",
    BookingStatus.CANCELLED: "CANCELLED",
    BookingStatus.REJECTED: "CANCELLED",
    BookingStatus.NO_SHOW: "CANCELLED",
}
STATUS_TITLES: dict[str, str | Promise] = {
    BookingStatus.PENDING: pgettext_lazy("calendar", "배정 중"),
    BookingStatus.AWAITING_APPROVAL: pgettext_lazy("calendar", "승인 대기"),
    BookingStatus.CONFIRMED: pgettext_lazy("calendar", "확정"),
    BookingStatus.ACTIVE: pgettext_lazy("calendar", "사용 중"),
    BookingStatus.COMPLETED: pgettext_lazy("calendar", "완료"),
    BookingStatus.CANCELLED: pgettext_lazy("calendar", "취소됨"),
    BookingStatus.REJECTED: pgettext_lazy("calendar", "거절됨"),
    BookingStatus.NO_SHOW: pgettext_lazy("calendar", "미사용"),
}


def _named(obj, language: str) -> str:
    """`name` is Korean, `name_en` English (catalogue rows and centres)."""
    english: str = getattr(obj, "name_en", "") or ""
    return english if language == "en" and english else obj.name


def calendar_name(feed: CalendarFeed, language: str) -> str:
    with translation.override(language):
        if feed.scope == FeedScope.USER:
            return _("testbed · 내 예약 (%(user)s)") % {"user": feed.owner.get_username()}
        if feed.scope == FeedScope.ORGANIZATION:
            return _("testbed · %(organization)s 예약") % {
                "organization": feed.organization.name  # type: ignore[union-attr]
            }
        return _("testbed · %(resource)s 예약 (운영)") % {
            "resource": _named(feed.resource, language)
        }


def _person(user) -> str:
    full = user.get_full_name().strip()
    return f"{full} ({user.get_username()})" if full else user.get_username()


def _listed(names: list[str], limit: int) -> str:
    if len(names) <= limit:
        return ", ".join(names)
    more = len(names) - limit
    return ", ".join(names[:limit]) + " " + pgettext("calendar", "외 %(count)d개") % {"count": more}


def _places(booking: Booking) -> tuple[list[str], list[str]]:
    """(rooms or nodes, unit codes) from the booking's allocation rows, in allocation order."""
    places: list[str] = []
    units: list[str] = []
    allocations = list(booking.allocations.all())  # prefetched
    if booking.pool_id is not None:
        for allocation in allocations:
            name = allocation.node.hostname if allocation.node is not None else ""
            if name and name not in places:
                places.append(name)
        return places, units
    pinned = [booking.pinned_unit] if not allocations and booking.pinned_unit else []
    for unit in [a.unit for a in allocations if a.unit is not None] + pinned:
        if unit.code not in units:
            units.append(unit.code)
        room = f"{unit.location} ({unit.code})" if unit.location else unit.code
        if room not in places:
            places.append(room)
    return places, units


def _event(booking: Booking, *, feed: CalendarFeed, language: str, base_url: str, host: str):
    resource = booking.resource
    centre = _named(resource.center, language)
    status_title = str(STATUS_TITLES.get(booking.status, booking.status))
    title = f"[{status_title}] {_named(resource, language)}"
    if booking.pool_id is not None or booking.quantity > 1:
        title += f" ×{booking.quantity}"
    if feed.scope == FeedScope.ORGANIZATION:
        title += f" · {booking.user.get_username()}"
    elif feed.scope == FeedScope.RESOURCE:
        title += f" · {booking.organization.name}"
    places, units = _places(booking)
    location = f"{centre} · {_listed(places, MAX_NODE_NAMES)}" if places else centre
    url = f"{base_url}/bookings/{booking.pk}/"
    lines = [
        pgettext("calendar", "예약 번호: #%(id)s") % {"id": booking.pk},
        pgettext("calendar", "상태: %(status)s") % {"status": status_title},
        pgettext("calendar", "자원: %(name)s (%(code)s)")
        % {"name": _named(resource, language), "code": resource.code},
        pgettext("calendar", "기관: %(organization)s")
        % {"organization": booking.organization.name},
        pgettext("calendar", "예약한 사람: %(person)s") % {"person": _person(booking.user)},
        pgettext("calendar", "수량: %(quantity)s") % {"quantity": booking.quantity},
    ]
    if booking.pool_id is not None and places:
        lines.append(
            pgettext("calendar", "노드: %(nodes)s") % {"nodes": _listed(places, MAX_LISTED)}
        )
    elif units:
        lines.append(
            pgettext("calendar", "장비: %(units)s") % {"units": _listed(units, MAX_LISTED)}
        )
    if booking.purpose:
        lines.append(pgettext("calendar", "사용 목적: %(purpose)s") % {"purpose": booking.purpose})
    if booking.status == BookingStatus.CANCELLED and booking.cancel_reason:
        lines.append(
            pgettext("calendar", "취소 사유: %(reason)s") % {"reason": booking.cancel_reason}
        )
    if booking.status == BookingStatus.REJECTED and booking.rejection_detail:
        lines.append(
            pgettext("calendar", "거절 사유: %(reason)s") % {"reason": booking.rejection_detail}
        )
    lines.append(pgettext("calendar", "예약 보기: %(url)s") % {"url": url})

    event = Event()
    event.add("uid", f"booking-{booking.pk}@{host}")
    event.add("dtstamp", booking.updated_at.astimezone(dt.UTC))
    event.add("created", booking.created_at.astimezone(dt.UTC))
    event.add("last-modified", booking.updated_at.astimezone(dt.UTC))
    event.add("dtstart", booking.start.astimezone(SEOUL))
    event.add("dtend", booking.end.astimezone(SEOUL))
    event.add("summary", title)
    event.add("status", ICAL_STATUS.get(booking.status, "TENTATIVE"))
    # A cancelled booking no longer holds anyone's time: show it as free.
    event.add(
        "transp",
        "TRANSPARENT"
        if booking.status
        in (
            BookingStatus.CANCELLED,
            BookingStatus.REJECTED,
            BookingStatus.NO_SHOW,
        )
        else "OPAQUE",
    )
    event.add("location", location)
    event.add("description", "\n".join(lines))
    event.add("url", url)
    event.add("categories", [resource.code])
    return event


def render_feed(
    feed: CalendarFeed,
    bookings: Iterable[Booking],
    *,
    language: str,
    base_url: str,
    host: str,
) -> bytes:
    """The whole VCALENDAR. `base_url` is the portal's address (no trailing slash); `host` names
    the UIDs' domain."""
    with translation.override(language):
        calendar = Calendar()
        calendar.add("prodid", f"-//testbed//Shared AI infrastructure bookings//{language.upper()}")
        calendar.add("version", "2.0")
        calendar.add("calscale", "GREGORIAN")
        calendar.add("method", "PUBLISH")
        calendar.add("x-wr-calname", calendar_name(feed, language))
        calendar.add("x-wr-timezone", TZID)
        calendar.add("refresh-interval", REFRESH, parameters={"VALUE": "DURATION"})
        calendar.add("x-published-ttl", "PT1H")
        calendar.add_component(Timezone.from_tzid(TZID, first_date=TZ_FIRST, last_date=TZ_LAST))
        for booking in bookings:
            calendar.add_component(
                _event(booking, feed=feed, language=language, base_url=base_url, host=host)
            )
        return calendar.to_ical()
