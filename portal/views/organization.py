"""My organisation: quotas, usage, members and API keys.

`/organization/` shows the organisation the person belongs to (`?org=<slug>` for people in several,
and for operators). Everyone in it sees the quota grants and the monthly usage; managers (and
operators) also see and change the members and the API keys — decided by the access module, as
for the API. Invitations addressed to the person signed in are shown here whatever their role.
The forms post to small sub-routes and come back here (post/redirect/get); the members section is
swapped in place when htmx is there.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal
from urllib.parse import urlencode

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpResponse, HttpResponseForbidden
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone, translation
from django.utils.translation import gettext as _
from django.utils.translation import pgettext
from django.views.decorators.http import require_GET, require_POST

from booking.models import ApiKey, Invitation, Membership, Organization, QuotaGrant
from booking.reports import TZ, local_midnight, report_scope, usage_report
from booking.selectors import invitation_list, organization_list
from booking.services import access
from booking.services.api_keys import api_key_create as create_key
from booking.services.api_keys import api_key_revoke as revoke_key
from booking.services.organizations import invitation_answer as answer_invitation
from booking.services.organizations import member_add, member_remove
from booking.services.quotas import annotate_balances
from portal.charts import Series, bar_chart
from portal.forms_organization import (
    ApiKeyCreateForm,
    InvitationAnswerForm,
    MemberInviteForm,
    MemberRoleForm,
)
from testbed.choices import Channel
from testbed.errors import NotFound, PermissionDenied, ServiceError
from testbed.security import mark_no_store

MONTHS = 12
ZERO = Decimal("0")


# --- which organisation -------------------------------------------------------------------------


def _slug_asked(request) -> str:
    return (request.POST.get("org") or request.GET.get("org") or "").strip()


def _organization_for(request) -> Organization | None:
    """The organisation asked for (404 when the person may not see it), or the person's only one;
    None when they have none or several (the page then lists them)."""
    slug = _slug_asked(request)
    try:
        if slug:
            return access.access_organization(actor=request.user, slug=slug)
        return access.default_organization_for(request.user)
    except NotFound:
        raise Http404(_("그런 기관이 없습니다.")) from None
    except ServiceError:  # none, several, or an operator (who belongs to none): they choose
        return None


def _allowed(check, request, org: Organization) -> bool:
    try:
        check(actor=request.user, slug=org.slug)
    except PermissionDenied:
        return False
    return True


def _guarded(check, request) -> Organization:
    """The organisation of a POST, if the access module lets this person do it (else 404/403)."""
    slug = _slug_asked(request)
    if not slug:
        org = _organization_for(request)
        if org is None:
            raise Http404(_("어느 기관인지 org로 알려 주세요."))
        slug = org.slug
    try:
        return check(actor=request.user, slug=slug)
    except NotFound:
        raise Http404(_("그런 기관이 없습니다.")) from None


def _back(org: Organization, anchor: str = "") -> str:
    return f"{reverse('portal:organization')}?{urlencode({'org': org.slug})}{anchor}"


def _forbidden(error: PermissionDenied) -> HttpResponse:
    return HttpResponseForbidden(error.message)


# --- what the dashboard shows ---------------------------------------------------------------------


@dataclass(frozen=True)
class GrantView:
    grant: QuotaGrant
    limit: Decimal
    held: Decimal
    consumed: Decimal

    @property
    def remaining(self) -> Decimal:
        return self.limit - self.held - self.consumed

    @property
    def over(self) -> bool:
        return self.remaining < 0

    def _pct(self, value: Decimal) -> float:
        if self.limit <= 0:
            return 100.0 if value > 0 else 0.0
        return float(min(max(value, ZERO) / self.limit * 100, Decimal(100)))

    @property
    def consumed_pct(self) -> float:
        return round(self._pct(self.consumed), 1)

    @property
    def held_pct(self) -> float:
        return round(min(self._pct(self.held), 100.0 - self.consumed_pct), 1)


def _grants(org: Organization) -> list[GrantView]:
    grants = annotate_balances(QuotaGrant.objects.filter(organization=org)).order_by(
        "-period_end", "scope", "pk"
    )
    return [
        GrantView(grant=g, limit=g.limit_hours, held=g.held_hours, consumed=g.consumed_hours)
        for g in grants
    ]


def usage_window(today: dt.date) -> tuple[dt.datetime, dt.datetime]:
    """The last 12 months, this one included: [first day 11 months ago, first day of next month)."""
    first = today.replace(day=1)
    for _month in range(MONTHS - 1):
        first = (first - dt.timedelta(days=1)).replace(day=1)
    after = (today.replace(day=28) + dt.timedelta(days=4)).replace(day=1)
    return local_midnight(first), local_midnight(after)


def _month_label(month: dt.date, *, with_year: bool) -> str:
    if translation.get_language() == "en":
        return month.strftime("%b %Y") if with_year else month.strftime("%b")
    return f"{month.year}년 {month.month}월" if with_year else f"{month.month}월"


def _usage(request, org: Organization) -> dict:
    start, end = usage_window(timezone.localdate(timezone=TZ))
    report = usage_report(
        scope_q=report_scope(user=request.user, auth=None),
        start=start,
        end=end,
        group_by=["month"],
        organization_id=org.pk,
    )
    by_month = {row["month"]: row for row in report.rows}
    months: list[dict] = []
    month = start.date()
    while len(months) < MONTHS:
        row = by_month.get(f"{month:%Y-%m}", {})
        months.append(
            {
                "month": month,
                "label": _month_label(month, with_year=True),
                "short": _month_label(month, with_year=not months or month.month == 1),
                "bookings": row.get("bookings", 0),
                "booked_hours": row.get("booked_hours", 0.0),
                "used_hours": row.get("used_hours", 0.0),
                "unit_hours": row.get("unit_hours", 0.0),
                "charge_krw": row.get("charge_krw", 0),
            }
        )
        month = (month.replace(day=28) + dt.timedelta(days=4)).replace(day=1)
    first, last = months[0]["label"], months[-1]["label"]
    chart = bar_chart(
        chart_id="usage-chart",
        title=_("월별 사용량 (단위시간)"),
        description=_(
            "%(first)s부터 %(last)s까지 달마다 예약한 단위시간(실선 막대)과 실제 사용한 "
            "단위시간(빗금 막대). 같은 수치가 아래 표에 있습니다."
        )
        % {"first": first, "last": last},
        categories=[m["short"] for m in months],
        series=[
            Series(pgettext("organization", "예약"), [m["booked_hours"] for m in months]),
            Series(_("사용"), [m["used_hours"] for m in months]),
        ],
    )
    downloads = {
        fmt: "/api/v1/usage?"
        + urlencode(
            {
                "format": fmt,
                "start": start.isoformat(),
                "end": end.isoformat(),
                "organization": org.slug,
                "group_by": "month,resource",
            }
        )
        for fmt in ("csv", "xlsx")
    }
    return {
        "months": months,
        "chart": chart,
        "usage_totals": report.totals,
        "usage_start": start,
        "usage_last": end - dt.timedelta(days=1),
        "downloads": downloads,
    }


def _members_context(request, org: Organization, **extra) -> dict:
    memberships = (
        Membership.objects.filter(organization=org)
        .select_related("user")
        .order_by("user__username")
    )
    pending = (
        Invitation.objects.filter(organization=org, answered_at__isnull=True)
        .select_related("user", "invited_by")
        .order_by("-created_at", "-pk")
    )
    return {
        "org": org,
        "memberships": list(memberships),
        "pending_invitations": list(pending),
        "invite_form": extra.pop("invite_form", None) or MemberInviteForm(),
        "role_form": MemberRoleForm(),
        **extra,
    }


def _my_invitations(request):
    return list(
        invitation_list(user=request.user)
        .filter(answered_at__isnull=True)
        .order_by("-created_at", "-pk")
    )


def _render(request, org: Organization | None, *, status: int = 200, **extra) -> HttpResponse:
    """The whole dashboard (or the list of organisations to choose from)."""
    context: dict = {"my_invitations": _my_invitations(request)}
    if org is None:
        context["choices"] = list(
            organization_list(user=request.user).order_by("name").only("slug", "name")
        )
        return render(request, "portal/organization.html", context, status=status)
    context.update(org=org, role=access.role_in(request.user, org), grants=_grants(org))
    context.update(_usage(request, org))
    if _allowed(access.access_organization_members, request, org):
        context.update(_members_context(request, org, **extra))
        context["can_manage_members"] = True
    if _allowed(access.access_organization_api_keys, request, org):
        context["can_manage_keys"] = True
        context["api_keys"] = list(
            org.api_keys.select_related("created_by").order_by("-created_at", "-pk")
        )
        context["key_form"] = extra.get("key_form") or ApiKeyCreateForm()
    return render(request, "portal/organization.html", context, status=status)


def _members_answer(request, org: Organization, *, status: int = 200, **extra) -> HttpResponse:
    """After a change to the members: the section alone for htmx (200, so htmx swaps it in,
    errors included), else the whole page (errors: 4xx) or a redirect back to it."""
    if request.htmx:
        return render(
            request,
            "portal/_organization_members.html",
            _members_context(request, org, **extra),
        )
    if status >= 400:
        return _render(request, org, status=status, **extra)
    if extra.get("members_notice"):
        messages.success(request, extra["members_notice"])
    return redirect(_back(org, "#members"))


# --- pages ----------------------------------------------------------------------------------------


@login_required
@require_GET
def dashboard(request):
    return _render(request, _organization_for(request))


@login_required
@require_POST
def member_invite(request):
    try:
        org = _guarded(access.access_organization_members, request)
    except PermissionDenied as error:
        return _forbidden(error)
    form = MemberInviteForm(request.POST)
    if not form.is_valid():
        return _members_answer(request, org, status=400, invite_form=form)
    data = form.cleaned_data
    try:
        added = member_add(
            actor=request.user,
            organization=org,
            username=data["username"],
            email=data["email"],
            role=data["role"],
            password=data["password"] or None,
            channel=Channel.WEB,
        )
    except ServiceError as error:
        form.add_error(error.field if error.field in form.fields else None, error.message)
        return _members_answer(request, org, status=error.status, invite_form=form)
    if isinstance(added, Invitation):
        notice = _("%(username)s 님에게 초대를 보냈습니다. 본인이 수락하면 구성원이 됩니다.")
    else:
        notice = _("%(username)s 님을 구성원으로 등록했습니다.")
    return _members_answer(request, org, members_notice=notice % {"username": data["username"]})


def _membership(org: Organization, membership_id: int) -> Membership:
    return get_object_or_404(
        Membership.objects.select_related("user"), pk=membership_id, organization=org
    )


@login_required
@require_POST
def member_role(request, membership_id: int):
    try:
        org = _guarded(access.access_organization_members, request)
    except PermissionDenied as error:
        return _forbidden(error)
    membership = _membership(org, membership_id)
    form = MemberRoleForm(request.POST)
    if not form.is_valid():
        return _members_answer(
            request,
            org,
            status=400,
            members_error=_("역할: 관리자 또는 구성원을 고르세요."),
            members_error_for=membership.pk,
        )
    try:
        member_add(
            actor=request.user,
            organization=org,
            username=membership.user.username,
            email=membership.user.email,
            role=form.cleaned_data["role"],
            channel=Channel.WEB,
        )
    except ServiceError as error:
        return _members_answer(
            request,
            org,
            status=error.status,
            members_error=error.message,
            members_error_for=membership.pk,
        )
    return _members_answer(
        request,
        org,
        members_notice=_("%(username)s 님의 역할을 바꿨습니다.")
        % {"username": membership.user.username},
    )


@login_required
@require_POST
def member_delete(request, membership_id: int):
    try:
        org = _guarded(access.access_organization_members, request)
    except PermissionDenied as error:
        return _forbidden(error)
    membership = _membership(org, membership_id)
    try:
        member_remove(
            actor=request.user,
            organization=org,
            username=membership.user.username,
            channel=Channel.WEB,
        )
    except ServiceError as error:
        return _members_answer(
            request,
            org,
            status=error.status,
            members_error=error.message,
            members_error_for=membership.pk,
        )
    return _members_answer(
        request,
        org,
        members_notice=_("%(username)s 님을 기관에서 내보냈습니다.")
        % {"username": membership.user.username},
    )


@login_required
@require_POST
def api_key_create(request):
    try:
        org = _guarded(access.access_organization_api_keys, request)
    except PermissionDenied as error:
        return _forbidden(error)
    form = ApiKeyCreateForm(request.POST)
    if form.is_valid():
        try:
            key, secret = create_key(
                actor=request.user,
                organization=org,
                name=form.cleaned_data["name"],
                scopes=form.cleaned_data["scopes"],
                channel=Channel.WEB,
            )
        except ServiceError as error:
            form.add_error(error.field if error.field in form.fields else None, error.message)
        else:
            # The secret is on this page only: it is never stored, so no cache may keep it.
            response = render(
                request,
                "portal/organization_api_key_created.html",
                {"org": org, "key": key, "secret": secret},
                status=201,
            )
            return mark_no_store(response)
    return mark_no_store(_render(request, org, status=400, key_form=form))


@login_required
@require_POST
def api_key_revoke(request, key_id: int):
    try:
        org = _guarded(access.access_organization_api_keys, request)
    except PermissionDenied as error:
        return _forbidden(error)
    key = get_object_or_404(ApiKey, pk=key_id, organization=org)
    revoke_key(actor=request.user, key=key, channel=Channel.WEB)
    messages.success(
        request,
        _("API 키 “%(name)s”을(를) 폐기했습니다. 더는 쓸 수 없습니다.") % {"name": key.name},
    )
    return redirect(_back(org, "#api-keys"))


@login_required
@require_POST
def invitation_answer(request, invitation_id: int):
    form = InvitationAnswerForm(request.POST)
    if not form.is_valid():
        messages.error(request, _("초대: 수락 또는 거절을 고르세요."))
        return redirect("portal:organization")
    accept = form.cleaned_data["answer"] == "accept"
    try:
        invitation = answer_invitation(
            actor=request.user, invitation_id=invitation_id, accept=accept, channel=Channel.WEB
        )
    except NotFound:
        raise Http404(_("그런 초대가 없습니다.")) from None
    except ServiceError:
        messages.error(request, _("이 초대에는 이미 답했습니다."))
        return redirect("portal:organization")
    if accept:
        messages.success(
            request,
            _("%(name)s에 가입했습니다.") % {"name": invitation.organization.name},
        )
        return redirect(_back(invitation.organization))
    messages.success(
        request, _("%(name)s의 초대를 거절했습니다.") % {"name": invitation.organization.name}
    )
    return redirect("portal:organization")
