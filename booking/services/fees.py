"""Fees in KRW: hourly rates per type and pool, discounts by organisation as data.

The final price is set at completion from actual use (booked time for a no-show), as ZEUS
records a final price.
"""

from __future__ import annotations

import datetime as dt
from decimal import ROUND_HALF_UP, Decimal

from booking.choices import BookingStatus
from booking.models import Booking, DiscountRule


def discount_for(organization) -> Decimal:
    """The fraction off the list price for this organisation (0 to 1); the largest rule applies."""
    best = Decimal("0")
    for rule in DiscountRule.objects.filter(active=True):
        if rule.applies_to(organization):
            best = max(best, rule.percent / Decimal(100))
    return best


def booking_price(booking: Booking) -> int:
    """Won: rate × quantity × billable hours × (1 − discount), rounded to the won."""
    resource = booking.resource
    if booking.status == BookingStatus.NO_SHOW:
        start, end = booking.start, booking.end
    elif booking.status == BookingStatus.CANCELLED:
        late = booking.cancelled_at and booking.cancelled_at > booking.start - _free_window(
            resource
        )
        if not late:
            return 0
        start, end = booking.start, booking.end
    else:
        start = booking.actual_start or booking.start
        end = booking.actual_end or booking.end
        start = max(start, booking.start)
    seconds = max(0, int((end - start).total_seconds()))
    hours = Decimal(seconds) / Decimal(3600)
    gross = Decimal(resource.hourly_rate) * booking.quantity * hours
    net = gross * (Decimal(1) - discount_for(booking.organization))
    return int(net.quantize(Decimal(1), rounding=ROUND_HALF_UP))


def _free_window(resource):
    return dt.timedelta(minutes=resource.cancel_free_minutes)


def booking_price_set(*, booking: Booking) -> int:
    price = booking_price(booking)
    Booking.objects.filter(pk=booking.pk).update(final_price_krw=price)
    booking.final_price_krw = price
    return price
