"""Calendar subscriptions (`/calendars/`): a person's iCal feeds, made, regenerated and deleted.

The page lists the person's feeds (what each covers, when its address was made and last fetched,
whether it still works) and offers a personal feed, one per organisation they belong to, and
(operators) one per equipment type or pool. The secret address is shown once (no-store): making
or regenerating a feed keeps it in the session and redirects to `/calendars/`, whose next GET
takes it out and shows it (a reload never posts again, nor shows it twice). Only its hash is
stored, so a lost address is regenerated, which revokes the old one at once. Rules: integrations/calendars/services.py.
Links here come from my bookings, my organisation (`?org=<slug>`) and, for operators, a
resource's page (`?resource=<code>`).
"""

from __future__ import annotations

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpResponse, HttpResponseBase
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import translation
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy, pgettext_lazy
from django.views.decorators.http import require_GET, require_POST

from booking.selectors import organization_list
from booking.services.access import is_operator
from integrations.calendars.choices import FeedLanguage, FeedScope
from integrations.calendars.ical import calendar_name
from integrations.calendars.models import CalendarFeed
from integrations.calendars.services import (
    TOKEN_MARK,
    access_calendar_feed,
    calendar_feed_create,
    calendar_feed_delete,
    calendar_feed_regenerate,
    feed_is_live,
    feed_path,
    owner_visible_organizations,
)
from integrations.calendars.views import public_base_url
from testbed.choices import Channel
from testbed.errors import NotFound, ServiceError
from testbed.security import mark_no_store


class CalendarFeedForm(forms.Form):
    scope = forms.ChoiceField(label=gettext_lazy("범위"), choices=FeedScope.choices)
    organization = forms.CharField(
        label=gettext_lazy("기관"), max_length=60, required=False, strip=True
    )
    resource = forms.CharField(
        label=gettext_lazy("장비 또는 풀 코드"), max_length=40, required=False, strip=True
    )
    language = forms.ChoiceField(
        label=pgettext_lazy("calendar", "일정 제목 언어"),
        choices=FeedLanguage.choices,
        required=False,
    )


def _language(request) -> str:
    current = translation.get_language() or ""
    return current if current in FeedLanguage.values else FeedLanguage.KO


def _feeds(request) -> list[dict]:
    visible = owner_visible_organizations(request.user)
    base = public_base_url(request)
    feeds = (
        CalendarFeed.objects.filter(owner_id=request.user.pk)
        .select_related("owner", "organization", "equipment_type", "pool")
        .order_by("scope", "pk")
    )
    return [
        {
            "feed": feed,
            "name": calendar_name(feed, _language(request)),
            "hint": f"{base}/calendar/tbc_{feed.token_prefix}_….ics",
            "live": feed_is_live(feed, visible=visible),
        }
        for feed in feeds
    ]


def _render(request, *, status: int = 200, error: str = "", form_scope: str = "") -> HttpResponse:
    feeds = _feeds(request)
    has = {(f["feed"].scope, f["feed"].target_code) for f in feeds}
    organizations = [
        {"org": org, "has_feed": (FeedScope.ORGANIZATION, org.slug) in has}
        for org in organization_list(user=request.user).order_by("name").only("slug", "name")
    ]
    context = {
        "feeds": feeds,
        "organizations": organizations,
        "has_personal": (FeedScope.USER, "") in has,
        "is_operator": is_operator(request.user),
        "asked_org": (request.GET.get("org") or request.POST.get("organization") or "").strip(),
        "asked_resource": (
            request.GET.get("resource") or request.POST.get("resource") or ""
        ).strip(),
        "language": _language(request),
        "languages": FeedLanguage.choices,
        "error": error,
        "error_scope": form_scope,
    }
    return render(request, "portal/calendars.html", context, status=status)


ONCE_SESSION_KEY = "portal_calendar_shown_once"


def _keep_for_display(request, feed: CalendarFeed, raw: str, *, regenerated: bool):
    """Remember the new address for the next GET of /calendars/, then redirect there."""
    request.session[ONCE_SESSION_KEY] = {"feed": feed.pk, "raw": raw, "regenerated": regenerated}
    return redirect(reverse("portal:calendars"))


def _shown(request, feed: CalendarFeed, raw: str, *, regenerated: bool) -> HttpResponseBase:
    """The one page that shows the secret address: never stored by any cache."""
    url = public_base_url(request) + feed_path(raw)
    response = render(
        request,
        "portal/calendar_feed_created.html",
        {
            "feed": feed,
            "name": calendar_name(feed, _language(request)),
            "url": url,
            "webcal_url": "webcal://" + url.split("://", 1)[-1],
            "regenerated": regenerated,
        },
    )
    return mark_no_store(response)


@login_required
@require_GET
def calendars(request):
    kept = request.session.pop(ONCE_SESSION_KEY, None)
    if kept:
        feed = CalendarFeed.objects.filter(pk=kept.get("feed"), owner_id=request.user.pk).first()
        # Regenerated again elsewhere (the API) since: that address no longer works.
        if feed is not None and kept["raw"].startswith(f"{TOKEN_MARK}_{feed.token_prefix}_"):
            return _shown(request, feed, kept["raw"], regenerated=bool(kept.get("regenerated")))
    return _render(request)


@login_required
@require_POST
def calendar_create(request):
    form = CalendarFeedForm(request.POST)
    if not form.is_valid():
        field, errors = next(iter(form.errors.items()))
        label = form.fields[field].label if field in form.fields else field
        return _render(request, status=400, error=f"{label}: {errors[0]}")
    data = form.cleaned_data
    try:
        feed, raw = calendar_feed_create(
            actor=request.user,
            scope=data["scope"],
            organization=data["organization"] or None,
            resource=data["resource"] or None,
            language=data["language"] or _language(request),
            channel=Channel.WEB,
        )
    except ServiceError as error:
        return _render(
            request, status=error.status, error=_error_text(error), form_scope=data["scope"]
        )
    return _keep_for_display(request, feed, raw, regenerated=False)


def _error_text(error: ServiceError) -> str:
    """The service's message in the page's language where we know it (its codes are stable)."""
    if error.status == 409:
        return _(
            "이미 같은 캘린더 구독 주소가 있습니다. 주소를 잃어버렸다면 아래 목록에서 "
            "‘새 주소 발급’을 누르세요."
        )
    if error.status == 404:
        return _("그런 기관이 없거나 볼 수 없습니다.")
    if error.status == 403:
        return _("이 구독을 만들 권한이 없습니다. 자원 전체 구독은 운영자만 만듭니다.")
    if error.field == "resource":
        return _("그런 장비 또는 풀 코드가 없습니다. 자원 페이지의 코드를 입력하세요.")
    return error.message


def _own_feed(request, feed_id: int) -> CalendarFeed:
    try:
        return access_calendar_feed(actor=request.user, feed_id=feed_id)
    except NotFound:
        raise Http404(_("그런 캘린더 구독이 없습니다.")) from None


@login_required
@require_POST
def calendar_regenerate(request, feed_id: int):
    feed, raw = calendar_feed_regenerate(
        actor=request.user, feed=_own_feed(request, feed_id), channel=Channel.WEB
    )
    return _keep_for_display(request, feed, raw, regenerated=True)


@login_required
@require_POST
def calendar_delete(request, feed_id: int):
    feed = _own_feed(request, feed_id)
    name = calendar_name(feed, _language(request))
    calendar_feed_delete(actor=request.user, feed=feed, channel=Channel.WEB)
    messages.success(
        request,
        _("“%(name)s” 구독 주소를 삭제했습니다. 이 주소로는 더 이상 일정을 받을 수 없습니다.")
        % {"name": name},
    )
    return redirect(reverse("portal:calendars"))
