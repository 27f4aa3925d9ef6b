"""The operators' console: approvals, today's desk, idle accelerators, maintenance planning,
utilisation heatmap and quota grants. Operators only (booking.services.access.is_operator):
anonymous people are sent to sign in, signed-in non-operators get a 403 page.

Every change goes through a booking service with channel WEB. htmx only enhances: each form
also works as a plain POST (redirect after success, the page again with the error after a refusal).
"""

from __future__ import annotations

import datetime as dt
import functools
from collections import defaultdict

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.db.models import Prefetch, Q
from django.http import HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import pgettext
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from booking.choices import BookingStatus
from booking.models import Booking
from booking.reports import local_midnight
from booking.selectors import booking_list, quota_grant_list
from booking.services.access import is_operator
from booking.services.bookings import booking_approve, booking_reject
from booking.services.idle import booking_reclaim
from booking.services.maintenance import maintenance_preview, maintenance_window_create
from booking.services.quotas import annotate_balances
from booking.utilisation import utilisation_report
from equipment.models import MaintenanceWindow
from portal.forms_operations import MaintenanceForm, RejectForm, UtilisationForm
from testbed.choices import Channel
from testbed.errors import ServiceError

_C = "operations"
UPCOMING_DAYS = 28
HEATMAP_DAYS = 14
QUEUE_LIMIT = 200


def operator_required(view):
    """Anonymous: to /login/. Signed in but not an operator: a clear 403 page."""

    @functools.wraps(view)
    @login_required
    def wrapped(request, *args, **kwargs):
        if not is_operator(request.user):
            return render(request, "portal/operations_forbidden.html", status=403)
        return view(request, *args, **kwargs)

    return wrapped


def _is_htmx(request) -> bool:
    return request.headers.get("HX-Request") == "true"


def _today(now: dt.datetime) -> tuple[dt.date, dt.datetime, dt.datetime]:
    day = timezone.localdate(now)
    return day, local_midnight(day), local_midnight(day + dt.timedelta(days=1))


# --- reads --------------------------------------------------------------------------------------


def _upcoming_windows(now: dt.datetime) -> list[tuple[dt.date, list[MaintenanceWindow]]]:
    """Maintenance windows under way or starting within four weeks, grouped by local start day."""
    windows = (
        MaintenanceWindow.objects.filter(
            end__gt=now, start__lt=now + dt.timedelta(days=UPCOMING_DAYS)
        )
        .select_related("equipment_type", "unit", "pool", "node")
        .prefetch_related(
            Prefetch(
                "affected_bookings",
                queryset=Booking.objects.select_related("organization").order_by("start", "pk"),
            )
        )
        .order_by("start", "pk")
    )
    days: dict[dt.date, list[MaintenanceWindow]] = defaultdict(list)
    for window in windows:
        days[max(timezone.localdate(window.start), timezone.localdate(now))].append(window)
    return sorted(days.items())


def _console_context(user, now: dt.datetime) -> dict:
    day, day_start, day_end = _today(now)
    bookings = booking_list(user=user)
    queue = list(
        bookings.filter(status=BookingStatus.AWAITING_APPROVAL).order_by("created_at", "pk")[
            :QUEUE_LIMIT
        ]
    )
    # One query for the desk: check-ins due today, sessions to end today (or overdue), no-shows.
    desk = list(
        bookings.filter(
            Q(
                status=BookingStatus.CONFIRMED,
                equipment_type__isnull=False,
                start__gte=day_start,
                start__lt=day_end,
            )
            | Q(status=BookingStatus.ACTIVE, end__lt=day_end)
            | Q(status=BookingStatus.NO_SHOW, start__gte=day_start, start__lt=day_end)
        ).order_by("start", "pk")
    )
    idle = list(
        bookings.filter(status=BookingStatus.ACTIVE, idle_flagged_at__isnull=False)
        .prefetch_related(None)
        .order_by("idle_flagged_at", "pk")
    )
    grants = list(
        annotate_balances(quota_grant_list(user=user).filter(period_end__gte=day)).order_by(
            "organization__name", "period_start", "scope", "pk"
        )
    )
    for grant in grants:
        grant.used_hours = grant.held_hours + grant.consumed_hours
        grant.remaining_hours = grant.limit_hours - grant.used_hours
    return {
        "now": now,
        "today": day,
        "today_start": day_start,
        "queue": queue,
        "queue_limited": len(queue) == QUEUE_LIMIT,
        "check_ins": [b for b in desk if b.status == BookingStatus.CONFIRMED],
        "check_outs": sorted(
            (b for b in desk if b.status == BookingStatus.ACTIVE), key=lambda b: (b.end, b.pk)
        ),
        "no_shows": [b for b in desk if b.status == BookingStatus.NO_SHOW],
        "idle": idle,
        "grants": grants,
        "upcoming": _upcoming_windows(now),
    }


def _render_console(request, *, status: int = 200, **extra) -> HttpResponse:
    context = _console_context(request.user, timezone.now())
    context.setdefault("maintenance_form", MaintenanceForm())
    context.update(extra)
    listed = {b.pk for b in context["queue"]} | {b.pk for b in context["idle"]}
    if extra.get("row_error") and extra.get("row_error_booking") not in listed:
        # The booking left its list (decided or reclaimed meanwhile): say so at the top.
        context["page_error"] = extra["row_error"]["message"]
    return render(request, "portal/operations.html", context, status=status)


@require_GET
@operator_required
def console(request):
    """`/operations/`: the whole facility on one screen (the heatmap loads after the page)."""
    return _render_console(request)


# --- approvals and reclaim ------------------------------------------------------------------------


def _booking_for_operator(request, booking_id: int) -> Booking:
    return get_object_or_404(booking_list(user=request.user), pk=booking_id)


def _row_response(request, *, template: str, booking: Booking, error=None, done: str = ""):
    """htmx: the row again (200 even for a refusal, so htmx swaps it in). Plain POST: back to the
    console after success, or the console with the error in the row (400) after a refusal."""
    if _is_htmx(request):
        return render(
            request,
            template,
            {"b": booking, "row_error": error, "done": done, "reject_form": RejectForm()},
        )
    if error is None:
        messages.success(request, done)
        anchor = "idle" if "idle" in template else "queue"
        return redirect(reverse("portal:operations") + f"#{anchor}")
    return _render_console(request, status=400, row_error=error, row_error_booking=booking.pk)


def _refusal(error: ServiceError) -> dict:
    return {"field": error.field or "", "message": error.message}


@require_POST
@operator_required
def approve(request, booking_id: int):
    booking = _booking_for_operator(request, booking_id)
    try:
        booking = booking_approve(actor=request.user, booking=booking, channel=Channel.WEB)
    except ServiceError as error:
        booking.refresh_from_db()
        return _row_response(
            request, template="portal/_operations_queue_row.html", booking=booking,
            error=_refusal(error),
        )  # fmt: skip
    done = pgettext(_C, "예약 #%(id)s을(를) 승인했습니다.") % {"id": booking.pk}
    return _row_response(
        request, template="portal/_operations_queue_row.html", booking=booking, done=done
    )


@require_POST
@operator_required
def reject(request, booking_id: int):
    booking = _booking_for_operator(request, booking_id)
    form = RejectForm(request.POST)
    reason = form.cleaned_data["reason"] if form.is_valid() else None
    try:
        if reason is None:
            raise ServiceError(" ".join(map(str, form.errors["reason"])), field="reason")
        booking = booking_reject(
            actor=request.user, booking=booking, reason=reason, channel=Channel.WEB
        )
    except ServiceError as error:
        booking.refresh_from_db()
        return _row_response(
            request, template="portal/_operations_queue_row.html", booking=booking,
            error=_refusal(error),
        )  # fmt: skip
    done = pgettext(_C, "예약 #%(id)s을(를) 거절했습니다.") % {"id": booking.pk}
    return _row_response(
        request, template="portal/_operations_queue_row.html", booking=booking, done=done
    )


@require_POST
@operator_required
def reclaim(request, booking_id: int):
    booking = _booking_for_operator(request, booking_id)
    try:
        booking = booking_reclaim(
            booking=booking, now=timezone.now(), actor=request.user, channel=Channel.WEB
        )
    except ServiceError as error:
        booking.refresh_from_db()
        return _row_response(
            request, template="portal/_operations_idle_row.html", booking=booking,
            error=_refusal(error),
        )  # fmt: skip
    done = pgettext(_C, "예약 #%(id)s의 가속기를 회수했습니다.") % {"id": booking.pk}
    return _row_response(
        request, template="portal/_operations_idle_row.html", booking=booking, done=done
    )


# --- maintenance planning -------------------------------------------------------------------------


def _maintenance_response(
    request, form, *, preview=None, previewed: str = "", status: int = 200
) -> HttpResponse:
    context = {"maintenance_form": form, "preview": preview, "previewed": previewed}
    if _is_htmx(request):
        context["upcoming"] = _upcoming_windows(timezone.now())
        return render(request, "portal/_operations_maintenance.html", context)
    return _render_console(request, status=status, **context)


@require_http_methods(["GET", "POST"])
@operator_required
def maintenance(request):
    """Plan a window: `preview` lists the bookings it would hit (nothing saved); `save` creates it
    (maintenance_window_create, channel WEB), marking them affected and telling their organisations."""
    if request.method == "GET":
        return redirect(reverse("portal:operations") + "#maintenance")
    form = MaintenanceForm(request.POST)
    if not form.is_valid():
        return _maintenance_response(request, form, status=400)
    data = form.cleaned_data
    # Saving needs a preview of exactly these values first: a changed form is previewed again.
    signature = f"{data['resource']}|{data['start'].isoformat()}|{data['end'].isoformat()}"
    try:
        if data.get("action") != "save" or request.POST.get("previewed") != signature:
            preview = maintenance_preview(target=form.target, start=data["start"], end=data["end"])
            return _maintenance_response(request, form, preview=preview, previewed=signature)
        window, affected = maintenance_window_create(
            actor=request.user,
            target=form.target,
            start=data["start"],
            end=data["end"],
            reason=data["reason"],
            channel=Channel.WEB,
        )
    except ServiceError as error:
        form.add_error(error.field if error.field in form.fields else None, error.message)
        return _maintenance_response(request, form, status=400)
    done = pgettext(_C, "점검 일정을 저장했습니다: %(target)s, 영향받는 예약 %(count)s건.") % {
        "target": data["resource"],
        "count": len(affected),
    }
    if _is_htmx(request):
        return render(
            request,
            "portal/_operations_maintenance.html",
            {
                "maintenance_form": MaintenanceForm(),
                "upcoming": _upcoming_windows(timezone.now()),
                "saved": done,
                "saved_window": window.pk,
            },
        )
    messages.success(request, done)
    return redirect(reverse("portal:operations") + "#maintenance")


# --- utilisation heatmap --------------------------------------------------------------------------


_LEVELS = (0, 1, 25, 50, 75)  # booked share (%) at which each colour step starts


def _level(pct: float | None) -> int:
    if not pct:
        return 0
    return max(i for i, bound in enumerate(_LEVELS) if pct >= bound)


def utilisation_heatmap(*, first_day: dt.date, days: int) -> dict:
    """Resource × day: the operator utilisation report (booking/utilisation.py) of each local day,
    so the figures are the report's own. Resources with nothing booked in the period are left out."""
    day_list = [first_day + dt.timedelta(days=i) for i in range(days)]
    cells: dict[tuple[str, str, str], dict[dt.date, dict]] = defaultdict(dict)
    for day in day_list:
        report = utilisation_report(
            start=local_midnight(day), end=local_midnight(day + dt.timedelta(days=1))
        )
        for row in report.rows:
            cells[(row["center"], row["resource"], row["resource_kind"])][day] = row
    rows = []
    for (center, code, kind), by_day in sorted(cells.items()):
        if not any(r["booked_hours"] for r in by_day.values()):
            continue
        rows.append(
            {
                "center": center,
                "code": code,
                "kind": kind,
                "cells": [
                    {
                        "day": day,
                        "row": by_day.get(day),
                        "level": _level((by_day.get(day) or {}).get("booked_pct")),
                    }
                    for day in day_list
                ],
            }
        )
    return {"days": day_list, "rows": rows}


@require_GET
@operator_required
def utilisation(request):
    """`/operations/utilisation/?week=YYYY-MM-DD`: the heatmap of that week, else the last 14 days."""
    form = UtilisationForm(request.GET)
    today = timezone.localdate()
    status = 200
    if form.is_valid() and form.cleaned_data.get("week"):
        first_day, days = form.cleaned_data["week"], 7
    else:
        status = 200 if form.is_valid() else 400
        first_day, days = today - dt.timedelta(days=HEATMAP_DAYS - 1), HEATMAP_DAYS
    context = {
        "utilisation_form": form,
        "heatmap": utilisation_heatmap(first_day=first_day, days=days),
        "first_day": first_day,
        "last_day": first_day + dt.timedelta(days=days - 1),
        "previous_week": first_day - dt.timedelta(days=7),
        "next_week": first_day + dt.timedelta(days=7),
    }
    if _is_htmx(request):  # htmx swaps only 2xx answers: the error shows in the partial
        return render(request, "portal/_operations_utilisation.html", context)
    return render(request, "portal/operations_utilisation.html", context, status=status)
