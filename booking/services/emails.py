"""Composing and sending booking emails (Korean first, English after), from a Celery task."""

from __future__ import annotations

from django.conf import settings
from django.core.mail import send_mail
from django.utils import timezone

from booking.choices import Role
from booking.models import Booking
from equipment.models import MaintenanceWindow
from testbed.models import AuditEntry


def _recipients(booking: Booking, *, managers: bool) -> list[str]:
    emails = {booking.user.email} if booking.user.email else set()
    if managers:
        emails.update(
            booking.organization.memberships.filter(role=Role.MANAGER)
            .exclude(user__email="")
            .values_list("user__email", flat=True)
        )
    return sorted(emails)


def _when(booking: Booking) -> str:
    try:
        return f"{timezone.localtime(booking.start):%Y-%m-%d %H:%M}–{timezone.localtime(booking.end):%H:%M} (KST)"
    except OverflowError:  # bad data near datetime.max: shown in UTC rather than not at all
        return f"{booking.start:%Y-%m-%d %H:%M}–{booking.end:%H:%M} (UTC)"


def _operators() -> list[str]:
    """Who hears about faults: active staff with an email address, and settings.ADMINS."""
    from django.contrib.auth import get_user_model

    emails = set(
        get_user_model()
        .objects.filter(is_staff=True, is_active=True)
        .exclude(email="")
        .values_list("email", flat=True)
    )
    for admin in settings.ADMINS:  # (name, address) pairs, or addresses (Django ≥ 6)
        emails.add(admin if isinstance(admin, str) else admin[1])
    return sorted(emails)


def _allocation_failed_send(booking: Booking) -> int:
    """Tell the operators a booking's decision raised: it was rejected as an internal error."""
    recipients = _operators()
    if not recipients:
        return 0
    audit = (
        AuditEntry.objects.filter(
            action="booking.allocate",
            object_type=booking._meta.label_lower,
            object_id=str(booking.pk),
        )
        .order_by("-at", "-id")
        .first()
    )
    error = (audit.data or {}).get("error", "") if audit else ""
    subject = (
        f"[testbed] 배정 오류 / allocation error: 예약 #{booking.pk} rejected as internal_error"
    )
    body = (
        f"예약 #{booking.pk} ({booking.organization.name}, {booking.user.get_username()}): "
        f"{booking.resource_code} ×{booking.quantity}, {_when(booking)}\n"
        f"오류 / error: {error or 'see the worker log'}\n\n"
        "이 예약을 배정하는 중 오류가 발생하여 internal_error 로 거절했습니다. 다른 예약은 정상 "
        "처리되었습니다 / deciding this booking raised, so it was rejected (internal_error) and the "
        "rest of its batch decided. The traceback is in the worker log (logger "
        "booking.services.allocation). Fix the data or the code, then ask the booker to book "
        "again.\n"
    )
    return send_mail(subject, body, settings.DEFAULT_FROM_EMAIL, recipients)


def booking_email_send(*, booking_id: int, event: str) -> int:
    booking = (
        Booking.objects.select_related("organization", "user", "equipment_type", "pool")
        .filter(pk=booking_id)
        .first()
    )
    if booking is None:
        return 0
    if event == "allocation_failed":
        return _allocation_failed_send(booking)
    alternatives = "\n".join(f"  - {a['start']} → {a['end']}" for a in booking.alternatives or [])
    managers = False
    if event == "decided":
        subject = f"[testbed] 예약 #{booking.pk} {booking.get_status_display()} / booking {booking.status}"
        body = (
            f"{booking.resource_code} ×{booking.quantity}, {_when(booking)}\n"
            f"상태 / status: {booking.get_status_display()}\n"
        )
        if booking.rejection_detail:
            body += f"\n사유 / reason: {booking.rejection_detail}\n"
        if alternatives:
            body += f"\n가능한 다른 시간 / windows that fit now:\n{alternatives}\n"
    elif event == "expired":  # undecided at its start (bookings_expire_unapproved)
        managers = True
        subject = f"[testbed] 예약 #{booking.pk} 요청 만료 / request expired"
        body = (
            f"{booking.resource_code} ×{booking.quantity}, {_when(booking)}\n"
            f"사유 / reason: {booking.rejection_detail}\n"
            "예약 한도는 반환되었고 요금은 없습니다 / the quota hold is released and nothing is "
            "charged.\n"
        )
    elif event.startswith("maintenance:"):
        managers = True
        window = MaintenanceWindow.objects.filter(pk=int(event.split(":", 1)[1])).first()
        reason = window.reason if window else ""
        subject = (
            f"[testbed] 예약 #{booking.pk} 점검 일정과 겹침 / maintenance affects your booking"
        )
        body = (
            f"{booking.resource_code} ×{booking.quantity}, {_when(booking)}\n"
            f"점검 / maintenance: {reason}\n"
            "예약을 취소하거나 아래 시간으로 다시 예약해 주세요 / cancel, or book one of these windows:\n"
            f"{alternatives or '  (none free within two weeks)'}\n"
        )
    elif event in {"idle_flagged", "reclaimed"} and booking.pool_id:
        managers = True
        pool = booking.pool
        assert pool is not None
        rule = (
            f"{pool.idle_threshold_pct}% 미만 {pool.idle_minutes}분 / under {pool.idle_threshold_pct}% "
            f"utilisation for {pool.idle_minutes} min"
        )
        if event == "idle_flagged":
            subject = f"[testbed] 예약 #{booking.pk} 유휴 GPU 경고 / idle accelerators flagged"
            body = (
                f"{booking.resource_code} ×{booking.quantity}, {_when(booking)}\n유휴 기준 / idle rule: {rule}\n"
                f"{pool.idle_grace_minutes}분 안에 사용하지 않으면 남은 시간이 회수됩니다 / unless used within "
                f"{pool.idle_grace_minutes} min, the rest of the booking is reclaimed.\n"
            )
        else:
            subject = f"[testbed] 예약 #{booking.pk} 유휴 GPU 회수 / idle accelerators reclaimed"
            body = (
                f"{booking.resource_code} ×{booking.quantity}, {_when(booking)}\n유휴 기준 / idle rule: {rule}\n"
                "남은 시간은 회수되었고 사용하지 않은 쿼터는 반환되었습니다 / the rest of the booking was "
                "released and the unused quota refunded.\n"
            )
    else:
        subject = f"[testbed] 예약 #{booking.pk}: {event}"
        body = f"{booking.resource_code} ×{booking.quantity}, {_when(booking)}\n상태 / status: {booking.status}\n"
        managers = event in {"idle_flagged", "reclaimed", "no_show"}
    recipients = _recipients(booking, managers=managers)
    if not recipients:
        return 0
    return send_mail(subject, body, settings.DEFAULT_FROM_EMAIL, recipients)


def quota_reminder_email_send(*, grant_id: int, threshold: int, used_hours) -> int:
    """Tell an organisation's managers that a quota grant is `threshold`% used (80 or 100)."""
    from booking.models import QuotaGrant

    grant = QuotaGrant.objects.select_related("organization").filter(pk=grant_id).first()
    if grant is None:
        return 0
    recipients = sorted(
        set(
            grant.organization.memberships.filter(role=Role.MANAGER)
            .exclude(user__email="")
            .values_list("user__email", flat=True)
        )
    )
    if not recipients:
        return 0
    subject = (
        f"[testbed] 사용 한도 {threshold}% 도달 / quota {threshold}% used: "
        f"{grant.scope} {grant.period_start}–{grant.period_end}"
    )
    body = (
        f"{grant.organization.name}: 할당 #{grant.pk} ({grant.scope}, {grant.period_start}–{grant.period_end})\n"
        f"사용·예약 / used and held: {used_hours:.2f} / {grant.limit_hours:.2f} unit-hours ({threshold}%+)\n"
        + (
            "한도를 모두 사용했습니다. 추가 예약은 거절되거나 초과로 표시됩니다 / the grant is used up: further "
            "bookings are refused (hard) or flagged over quota (soft).\n"
            if threshold >= 100
            else "남은 한도를 확인하고 필요하면 운영자에게 추가 할당을 요청하세요 / check what is left and ask an "
            "operator for more if you need it.\n"
        )
    )
    return send_mail(subject, body, settings.DEFAULT_FROM_EMAIL, recipients)
