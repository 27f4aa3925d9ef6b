"""Moving a booking to another window from the portal (booking/services/moves.py does the work).

GET `/bookings/<id>/move/` shows the form on a page of its own; the booking page includes the
same form (portal/_booking_move.html). POST asks for the move (`booking_move`, channel WEB) and
sends the person to the NEW booking's page, which polls until the worker decides; the old
booking keeps its slot until then. Refusals show the form again with the field named (htmx:
the form alone, 200; without JavaScript: the page, 400/403/409) and change nothing.
"""

from __future__ import annotations

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.http import Http404
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy as _lazy
from django.views.decorators.http import require_http_methods
from django_htmx.http import HttpResponseClientRedirect

from booking.models import Booking
from booking.services.access import check_can_change_booking
from booking.services.moves import booking_can_move, booking_move, pending_move_of
from portal.forms import LocalDateTimeField, local_input
from testbed.choices import Channel
from testbed.errors import ServiceError

PARTIAL = "portal/_booking_move.html"
PAGE = "portal/move.html"


class MoveForm(forms.Form):
    start = LocalDateTimeField(label=_lazy("새 시작"))
    end = LocalDateTimeField(label=_lazy("새 종료"))

    def clean(self):
        data = super().clean()
        start, end = data.get("start"), data.get("end")
        if start and end and end <= start:
            self.add_error("end", _("종료는 시작보다 뒤여야 합니다."))
        return data


def _booking_for(request, booking_id: int) -> Booking:
    """The booking if this person may change it; another organisation's answers 404 (its
    existence is private), a colleague who may not change it 403."""
    booking = (
        Booking.objects.select_related("organization", "user", "equipment_type", "pool")
        .filter(pk=booking_id)
        .first()
    )
    if booking is None:
        raise Http404(_("예약을 찾을 수 없습니다."))
    try:
        check_can_change_booking(actor=request.user, booking=booking)
    except ServiceError as error:
        if error.status == 404:
            raise Http404(_("예약을 찾을 수 없습니다.")) from None
        raise DjangoPermissionDenied(error.message) from None
    return booking


def _context(booking: Booking, *, form: MoveForm | None = None, user=None) -> dict:
    if form is not None and form.is_bound:
        values = {"start": form.data.get("start", ""), "end": form.data.get("end", "")}
        errors = {
            ("all" if name == "__all__" else name): str(errs[0])
            for name, errs in form.errors.items()
        }
    else:
        values = {"start": local_input(booking.start), "end": local_input(booking.end)}
        errors = {}
    return {
        "booking": booking,
        "resource": booking.resource,
        "move_values": values,
        "move_errors": errors,
        "can_move": user is None or booking_can_move(actor=user, booking=booking),
        "pending_move": pending_move_of(booking),
    }


def _refused(request, booking: Booking, form: MoveForm, status: int):
    htmx = bool(request.headers.get("HX-Request"))
    context = _context(booking, form=form)
    return render(request, PARTIAL if htmx else PAGE, context, status=200 if htmx else status)


@login_required
@require_http_methods(["GET", "POST"])
def booking_move_view(request, booking_id: int):
    booking = _booking_for(request, booking_id)
    if request.method == "GET":
        return render(request, PAGE, _context(booking, user=request.user))
    form = MoveForm(request.POST)
    if not form.is_valid():
        return _refused(request, booking, form, 400)
    try:
        moved = booking_move(
            actor=request.user,
            booking=booking,
            start=form.cleaned_data["start"],
            end=form.cleaned_data["end"],
            channel=Channel.WEB,
        )
    except ServiceError as error:
        form.add_error(error.field if error.field in ("start", "end") else None, error.message)
        return _refused(request, booking, form, error.status if error.status in (403, 409) else 400)
    messages.success(
        request,
        _(
            "예약 #%(old)s을(를) 옮기는 요청을 받았습니다. 새 시간이 확정되면 예약 #%(old)s은(는) "
            "취소되고, 거절되면 그대로 남습니다."
        )
        % {"old": booking.pk},
    )
    url = reverse("portal:booking", args=[moved.pk])
    return HttpResponseClientRedirect(url) if request.headers.get("HX-Request") else redirect(url)
