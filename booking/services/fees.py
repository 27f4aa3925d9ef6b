"""Fees in KRW: hourly rates per type and pool, discounts by organisation as data.

The final price is set when a booking is settled (completed, no-show, cancelled), from the
span the lifecycle rule charges (booking/lifecycle.py): the used part of the slot for a
completed booking, the booked time for a no-show or a late cancellation, nothing otherwise.
The quota ledger consumes exactly the same span, so price and quota never disagree.
"""

from __future__ import annotations

import datetime as dt
from decimal import ROUND_HALF_UP, Decimal

from booking.models import Booking, DiscountRule


def discount_for(organization) -> Decimal:
    """The fraction off the list price for this organisation (0 to 1); the largest rule applies."""
    best = Decimal("0")
    for rule in DiscountRule.objects.filter(active=True):
        if rule.applies_to(organization):
            best = max(best, rule.percent / Decimal(100))
    return best


def booking_price(
    booking: Booking,
    *,
    span: tuple[dt.datetime, dt.datetime] | None,
    discount: Decimal | None = None,
) -> int:
    """Won: rate × quantity × hours of the charged `span` × (1 − discount), rounded to the won.

    `discount` is the organisation's (discount_for), when the caller already has it: a page
    pricing many bookings asks for it once per organisation."""
    if span is None:
        return 0
    seconds = max(0, int((span[1] - span[0]).total_seconds()))
    hours = Decimal(seconds) / Decimal(3600)
    gross = Decimal(booking.resource.hourly_rate) * booking.quantity * hours
    if discount is None:
        discount = discount_for(booking.organization)
    net = gross * (Decimal(1) - discount)
    return int(net.quantize(Decimal(1), rounding=ROUND_HALF_UP))


def booking_price_set(*, booking: Booking, span: tuple[dt.datetime, dt.datetime] | None) -> int:
    """Store the final price of the charged span (the lifecycle rule's Charge.span)."""
    price = booking_price(booking, span=span)
    Booking.objects.filter(pk=booking.pk).update(final_price_krw=price)
    booking.final_price_krw = price
    return price
