"""Booking form, my bookings and one booking's page.

Thin views: parse with a form, call the booking services (booking/services/requests.py,
bookings.py) or selectors with `channel=Channel.WEB`, render. Permissions are the access
module's; another organisation's booking answers 404 like the API.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from urllib.parse import urlencode

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.db.models import Q
from django.http import Http404, HttpResponse
from django.shortcuts import redirect, render
from django.template import TemplateDoesNotExist
from django.template.loader import get_template
from django.urls import reverse
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy as _lazy
from django.views.decorators.http import require_GET, require_http_methods
from django_htmx.http import HttpResponseClientRedirect, HttpResponseClientRefresh

from booking.choices import BookingStatus, Role
from booking.lifecycle import CHECK_IN_EARLY
from booking.models import Booking
from booking.selectors import booking_list as booking_selector
from booking.selectors import organization_list
from booking.services import bookings as booking_services
from booking.services.access import (
    access_booking_organization,
    check_can_book_for,
    check_can_change_booking,
    check_can_use_booking,
    is_operator,
    role_in,
)
from booking.services.decisions import decision_listen, decision_wait
from booking.services.moves import booking_can_move
from booking.services.requests import (
    booking_check,
    booking_estimate,
    booking_prices,
    booking_request,
)
from booking.services.resources import resource_for_code
from portal.forms import (
    STATUS_LABELS,
    BookingFilterForm,
    BookingForm,
    CancelForm,
    StrOrPromise,
    local_input,
)
from testbed.choices import Channel
from testbed.errors import ServiceError
from testbed.models import AuditEntry

# How long the form waits for the worker's decision before showing the booking page, which
# then polls (the API's `Prefer: wait` semantics, without holding a transaction).
DECISION_WAIT_SECONDS = 5.0
PAGE_SIZE = 25
FORM_FIELDS = ("organization", "resource", "start", "end", "quantity", "purpose")


def _is_htmx(request) -> bool:
    return bool(request.headers.get("HX-Request"))


def _label(booking) -> None:
    booking.status_label = STATUS_LABELS.get(booking.status, booking.status)


# --- the booking form ----------------------------------------------------------------------------


def _organizations(user) -> list:
    return list(organization_list(user=user).filter(is_active=True).order_by("name"))


def _add_service_error(form: BookingForm, error: ServiceError) -> None:
    field = error.field if error.field in form.fields else None
    if field and field in form.errors:
        return  # the field already says what is wrong with it
    form.add_error(field, error.message)


def _check(request, form: BookingForm):
    """Run the request's policy checks (booking_check: no write) on a bound form; return the
    organisation and resource when the request could be sent, adding refusals to the form."""
    if not form.is_valid():
        return None, None
    data = form.cleaned_data
    try:
        organization = access_booking_organization(
            actor=request.user, slug=data.get("organization") or None
        )
        resource = resource_for_code(data["resource"])
        booking_check(
            actor=request.user,
            organization=organization,
            resource_code=data["resource"],
            quantity=data["quantity"],
            start=data["start"],
            end=data["end"],
        )
    except ServiceError as error:
        _add_service_error(form, error)
        return None, None
    return organization, resource


def _estimate(organization, resource, form: BookingForm):
    data = form.cleaned_data
    return booking_estimate(
        organization=organization,
        resource=resource,
        quantity=data["quantity"],
        start=data["start"],
        end=data["end"],
    )


def _initial_from_address(request) -> dict:
    """`/book/?resource=&start=&end=&quantity=`: the values shared in an address, shown as typed."""
    return {
        name: request.GET[name]
        for name in ("resource", "start", "end", "quantity", "purpose", "organization")
        if request.GET.get(name)
    }


def _render_form(request, form, *, estimate=None, resource=None, status=200, partial=None):
    context = {
        "form": form,
        "estimate": estimate,
        "resource": resource,
        "values": _values(form),
    }
    return render(request, partial or "portal/book.html", context, status=status)


def _values(form: BookingForm) -> dict:
    """What each input shows: a moment in facility time (as datetime-local wants it), else what
    was typed or given in the address."""
    cleaned = getattr(form, "cleaned_data", {})
    values = {}
    for name in FORM_FIELDS:
        value = cleaned.get(name) if name in ("start", "end") else None
        if value is None:
            value = form[name].value()
        if isinstance(value, str) and name in ("start", "end"):
            try:
                parsed = parse_datetime(value.strip())
            except ValueError:
                parsed = None
            value = parsed or value
        if isinstance(value, dt.datetime):
            value = local_input(value if timezone.is_aware(value) else timezone.make_aware(value))
        values[name] = "" if value is None else value
    return values


@login_required
@require_http_methods(["GET", "POST"])
def book(request):
    """`/book/`: GET shows the form prefilled from the address; POST with `check` validates as
    the person types (no write); POST books and waits a few seconds for the decision."""
    organizations = _organizations(request.user)
    if request.method == "GET":
        initial = _initial_from_address(request)
        if {"resource", "start", "end"} <= initial.keys():
            form = BookingForm({"quantity": "1", **initial}, organizations=organizations)
            organization, resource = _check(request, form)
            estimate = _estimate(organization, resource, form) if resource else None
            return _render_form(request, form, estimate=estimate, resource=resource)
        form = BookingForm(initial={"quantity": 1, **initial}, organizations=organizations)
        return _render_form(request, form)

    form = BookingForm(request.POST, organizations=organizations)
    organization, resource = _check(request, form)
    if request.POST.get("check") or request.GET.get("check"):
        for name in FORM_FIELDS:  # while typing, a field not filled in yet is not an error
            if not request.POST.get(name, "").strip() and name in form.errors:
                del form.errors[name]
        estimate = _estimate(organization, resource, form) if resource else None
        return _render_form(
            request, form, estimate=estimate, resource=resource, partial="portal/_book_check.html"
        )
    if resource is None:
        # Refused with the field named; nothing was stored.
        status = 200 if _is_htmx(request) else 400
        partial = "portal/_book_form.html" if _is_htmx(request) else None
        return _render_form(request, form, status=status, partial=partial)

    data = form.cleaned_data
    listened = decision_listen()  # subscribed before the booking exists: no decision is missed
    try:
        booking = booking_request(
            actor=request.user,
            organization=organization,
            resource_code=data["resource"],
            quantity=data["quantity"],
            start=data["start"],
            end=data["end"],
            purpose=data["purpose"],
            channel=Channel.WEB,
        )
    except ServiceError as error:  # a rule that changed between the check and the request
        _add_service_error(form, error)
        status = 200 if _is_htmx(request) else 400
        partial = "portal/_book_form.html" if _is_htmx(request) else None
        return _render_form(request, form, status=status, partial=partial)
    decision_wait(booking.pk, DECISION_WAIT_SECONDS, listened=listened)
    url = reverse("portal:booking", args=[booking.pk])
    return HttpResponseClientRedirect(url) if _is_htmx(request) else redirect(url)


# --- my bookings ---------------------------------------------------------------------------------


def _sees_organization(user) -> bool:
    """Managers (and operators) get their organisation's bookings next to their own."""
    if is_operator(user):
        return True
    return any(role_in(user, org) == Role.MANAGER for org in organization_list(user=user))


def _export_query(data: dict) -> dict:
    """The API's filters for the same list (its CSV and XLSX are the files the API gives)."""
    query: dict = {}
    if data.get("status"):
        query["status"] = data["status"]
    if data.get("resource"):
        query["resource"] = data["resource"]
    if data.get("date_from"):
        query["start"] = _day_start(data["date_from"]).isoformat()
    if data.get("date_to"):
        query["end"] = _day_start(data["date_to"] + dt.timedelta(days=1)).isoformat()
    return query


def _day_start(day: dt.date) -> dt.datetime:
    return timezone.make_aware(dt.datetime.combine(day, dt.time.min))


@login_required
@require_GET
def booking_list(request):
    """`/bookings/`: my bookings (managers: the organisation's), filtered, newest start first."""
    sees_organization = _sees_organization(request.user)
    filters = BookingFilterForm(request.GET or None)
    data = filters.cleaned_data if filters.is_bound and filters.is_valid() else {}
    scope = data.get("scope") or ("organization" if sees_organization else "mine")
    if not sees_organization:
        scope = "mine"
    qs = booking_selector(user=request.user).order_by("-start", "-id")
    if scope == "mine":
        qs = qs.filter(user=request.user)
    if data.get("status"):
        qs = qs.filter(status=data["status"])
    if data.get("resource"):
        code = data["resource"]
        qs = qs.filter(Q(equipment_type__code=code) | Q(pool__code=code))
    if data.get("date_from"):
        qs = qs.filter(end__gt=_day_start(data["date_from"]))
    if data.get("date_to"):
        qs = qs.filter(start__lt=_day_start(data["date_to"] + dt.timedelta(days=1)))
    page = Paginator(qs, PAGE_SIZE).get_page(request.GET.get("page"))
    bookings = list(page.object_list)
    prices = booking_prices(bookings)
    for booking in bookings:
        _label(booking)
        booking.price = prices[booking.pk]
    export = _export_query(data)
    keep = {k: v for k, v in request.GET.items() if k != "page" and v}
    return render(
        request,
        "portal/bookings.html",
        {
            "filters": filters if filters.is_bound else BookingFilterForm(),
            "page": page,
            "bookings": bookings,
            "scope": scope,
            "sees_organization": sees_organization,
            "csv_url": "/api/v1/bookings?" + urlencode({**export, "format": "csv"}),
            "xlsx_url": "/api/v1/bookings?" + urlencode({**export, "format": "xlsx"}),
            "page_query": urlencode(keep),
        },
    )


# --- one booking ---------------------------------------------------------------------------------


def _booking_for(request, booking_id: int):
    """The booking if this person may see it (the selector filters by organisation); else 404."""
    booking = booking_selector(user=request.user).filter(pk=booking_id).first()
    if booking is None:
        raise Http404(_("예약을 찾을 수 없습니다."))
    _label(booking)
    return booking


def _allowed(check, user, booking) -> bool:
    try:
        check(actor=user, booking=booking)
    except ServiceError:
        return False
    return True


def _may_book_for(user, organization) -> bool:
    try:
        check_can_book_for(actor=user, organization=organization)
    except ServiceError:
        return False
    return True


def _alternatives(booking) -> list[dict]:
    windows = []
    for window in booking.alternatives or []:
        try:
            start = dt.datetime.fromisoformat(window["start"])
            end = dt.datetime.fromisoformat(window["end"])
        except (KeyError, TypeError, ValueError):
            continue
        windows.append({"start": start, "end": end})
    return windows


ACTION_LABELS = {
    "booking.request": _lazy("예약 요청"),
    "booking.allocate": _lazy("배정 결정"),
    "booking.approve": _lazy("승인"),
    "booking.reject": _lazy("거절"),
    "booking.cancel": _lazy("취소"),
    "booking.check_in": _lazy("체크인"),
    "booking.check_out": _lazy("체크아웃"),
    "booking.complete": _lazy("완료"),
    "booking.no_show": _lazy("노쇼 처리"),
    "booking.start": _lazy("사용 시작"),
    "booking.reclaim": _lazy("유휴 회수"),
    "booking.expire": _lazy("만료"),
}


def _history(booking) -> list[dict]:
    """The booking's audit entries, oldest first (who, when, channel, from → to), labelled in
    the page's language."""
    entries = (
        AuditEntry.objects.filter(object_type="booking.booking", object_id=str(booking.pk))
        .select_related("actor")
        .order_by("at", "id")
    )
    return [
        {
            "at": entry.at,
            "actor": entry.actor,
            "channel": entry.get_channel_display(),
            "action": ACTION_LABELS.get(entry.action, entry.action),
            "from_state": STATUS_LABELS.get(entry.from_state, entry.from_state),
            "to_state": STATUS_LABELS.get(entry.to_state, entry.to_state),
        }
        for entry in entries
    ]


def _detail_context(request, booking, *, errors=None) -> dict:
    now = timezone.now()
    user = request.user
    may_change = _allowed(check_can_change_booking, user, booking)
    may_use = _allowed(check_can_use_booking, user, booking)
    booking.price = booking_prices([booking])[booking.pk]
    return {
        "booking": booking,
        "resource": booking.resource,
        "allocations": [a for a in booking.allocations.all() if a.active]
        or list(booking.allocations.all()),
        "alternatives": _alternatives(booking),
        "history": _history(booking),
        "can_cancel": may_change and booking.status in booking_services.CANCELLABLE,
        "can_check_in": may_use
        and booking.status == BookingStatus.CONFIRMED
        and booking.start - CHECK_IN_EARLY <= now < booking.end,
        "can_check_out": may_use and booking.status == BookingStatus.ACTIVE,
        # P5's "move" action (portal/_booking_move.html) shows when the person may change it.
        "can_move": may_change and booking_can_move(actor=user, booking=booking, now=now),
        "can_rebook": _may_book_for(user, booking.organization),
        "move_template": _move_template(),
        "polling": booking.status == BookingStatus.PENDING,
        "errors": errors or {},
        "cancel_form": CancelForm(),
    }


def _move_template() -> str | None:
    """Moving a booking is another page's work (portal/_booking_move.html); shown once it exists."""
    try:
        get_template("portal/_booking_move.html")
    except TemplateDoesNotExist:
        return None
    return "portal/_booking_move.html"


ACTIONS: dict[str, tuple[Callable[..., Booking], StrOrPromise]] = {
    "cancel": (booking_services.booking_cancel, _lazy("예약을 취소했습니다.")),
    "check_in": (booking_services.booking_check_in, _lazy("체크인했습니다.")),
    "check_out": (booking_services.booking_check_out, _lazy("체크아웃했습니다.")),
}


@login_required
@require_http_methods(["GET", "POST"])
def booking_detail(request, booking_id: int):
    """`/bookings/<id>/`: everything about it; POST `action` = cancel (with `reason`), check_in,
    check_out — each allowed or refused by the access module and the lifecycle services."""
    booking = _booking_for(request, booking_id)
    if request.method == "GET":
        return render(request, "portal/booking.html", _detail_context(request, booking))

    action = request.POST.get("action", "")
    if action not in ACTIONS:
        errors = {"action": _("알 수 없는 동작입니다.")}
        return render(
            request,
            "portal/booking.html",
            _detail_context(request, booking, errors=errors),
            status=400,
        )
    service, done = ACTIONS[action]
    kwargs = {}
    if action == "cancel":
        form = CancelForm(request.POST)
        if not form.is_valid():
            return render(
                request,
                "portal/booking.html",
                _detail_context(request, booking, errors={"reason": form.errors["reason"][0]}),
                status=400,
            )
        kwargs["reason"] = form.cleaned_data["reason"]
    try:
        service(actor=request.user, booking=booking, channel=Channel.WEB, **kwargs)
    except ServiceError as error:
        field = error.field if error.field == "reason" else "action"
        return render(
            request,
            "portal/booking.html",
            _detail_context(request, booking, errors={field: error.message}),
            status=error.status if error.status in (400, 403, 409) else 400,
        )
    messages.success(request, str(done))
    return redirect("portal:booking", booking_id=booking.pk)


@login_required
@require_GET
def booking_status(request, booking_id: int):
    """The status fragment the booking page polls while the worker decides; once decided, an
    htmx request is told to reload the whole page (allocations, rejection, alternatives)."""
    booking = _booking_for(request, booking_id)
    if _is_htmx(request) and booking.status != BookingStatus.PENDING:
        return HttpResponseClientRefresh()
    response: HttpResponse = render(
        request,
        "portal/_booking_status.html",
        {"booking": booking, "polling": booking.status == BookingStatus.PENDING},
    )
    return response
