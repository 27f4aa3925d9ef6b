"""Webhooks of my organisation: endpoints (add, edit events, turn off/on, rotate, test, delete)
and each endpoint's delivery log with redelivery.

Managers change them; operators see them read-only (access module:
access_organization_webhooks). `?org=<slug>` picks the organisation as on `/organization/`. A
new or rotated secret is shown once, never cached, and never as the answer to the POST itself (a
reload would post again): the POST keeps it in the session and redirects to the endpoint's page,
whose next GET takes it out of the session and shows it on its own page. Plain forms,
post/redirect/get.
"""

from __future__ import annotations

from urllib.parse import urlencode

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.db.models import Prefetch
from django.http import Http404, HttpResponseForbidden
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy, pgettext_lazy
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from booking.events import PUBLIC_EVENTS
from booking.models import Organization
from booking.services import access
from integrations.webhooks import services
from integrations.webhooks.models import WebhookAttempt, WebhookDelivery, WebhookEndpoint
from portal.views.organization import _organization_for, _slug_asked
from testbed.choices import Channel
from testbed.errors import NotFound, PermissionDenied, ServiceError
from testbed.security import mark_no_store

LOG_ROWS = 50
EVENT_LABELS = {
    "booking.confirmed": pgettext_lazy("webhook event", "예약 확정"),
    "booking.rejected": pgettext_lazy("webhook event", "예약 거절"),
    "booking.cancelled": pgettext_lazy("webhook event", "예약 취소"),
    "booking.moved": pgettext_lazy("webhook event", "예약 이동"),
    "booking.no_show": pgettext_lazy("webhook event", "노쇼 처리"),
    "booking.reclaimed": pgettext_lazy("webhook event", "유휴 회수"),
    "approval.requested": pgettext_lazy("webhook event", "승인 요청"),
    "quota.threshold": pgettext_lazy("webhook event", "쿼터 임계 도달"),
    "maintenance.scheduled": pgettext_lazy("webhook event", "점검 예정"),
}


class EndpointForm(forms.Form):
    url = forms.CharField(label=gettext_lazy("받을 주소 (https://)"), max_length=2000)
    description = forms.CharField(label=gettext_lazy("설명 (선택)"), max_length=200, required=False)
    event_types = forms.MultipleChoiceField(
        label=gettext_lazy("받을 이벤트"),
        choices=[(t, EVENT_LABELS[t]) for t in PUBLIC_EVENTS],
        widget=forms.CheckboxSelectMultiple,
        error_messages={"required": gettext_lazy("이벤트를 하나 이상 고르세요.")},
    )


class EventsForm(forms.Form):
    event_types = EndpointForm.base_fields["event_types"]
    is_active = forms.BooleanField(label=gettext_lazy("켜기"), required=False)


def _organization(request, *, write: bool = False) -> Organization:
    slug = _slug_asked(request)
    if not slug:
        org = _organization_for(request)
        if org is None:
            raise Http404(_("어느 기관인지 org로 알려 주세요."))
        slug = org.slug
    try:
        return access.access_organization_webhooks(actor=request.user, slug=slug, write=write)
    except NotFound:
        raise Http404(_("그런 기관이 없습니다.")) from None


def _endpoint(request, endpoint_id: int, *, write: bool = False) -> WebhookEndpoint:
    try:
        return services.access_webhook_endpoint(
            actor=request.user, endpoint_id=endpoint_id, write=write
        )
    except NotFound:
        raise Http404(_("그런 웹훅 엔드포인트가 없습니다.")) from None


def _list_url(org: Organization) -> str:
    return f"{reverse('portal:organization-webhooks')}?{urlencode({'org': org.slug})}"


def _detail_url(endpoint: WebhookEndpoint) -> str:
    return reverse("portal:organization-webhook", args=[endpoint.pk])


def _can_write(request, org: Organization) -> bool:
    try:
        access.access_organization_webhooks(actor=request.user, slug=org.slug, write=True)
    except PermissionDenied:
        return False
    return True


ONCE_SESSION_KEY = "portal_webhook_shown_once"


def _keep_secret_for_display(request, endpoint: WebhookEndpoint, secret: str):
    """Remember the secret for the next GET of the endpoint's page, then redirect there."""
    request.session[ONCE_SESSION_KEY] = {"endpoint": endpoint.pk, "secret": secret}
    return redirect(_detail_url(endpoint))


def _take_secret(request, endpoint: WebhookEndpoint) -> str | None:
    """The secret kept for this endpoint, removed from the session (shown once)."""
    kept = request.session.get(ONCE_SESSION_KEY)
    if not kept or kept.get("endpoint") != endpoint.pk:
        return None
    del request.session[ONCE_SESSION_KEY]
    return kept.get("secret")


def _secret_page(request, endpoint: WebhookEndpoint, secret: str):
    response = render(
        request,
        "portal/webhooks/secret.html",
        {"endpoint": endpoint, "org": endpoint.organization, "secret": secret},
    )
    return mark_no_store(response)


@login_required
@require_http_methods(["GET", "POST"])
def endpoint_list(request):
    """GET: the organisation's endpoints and the form to add one. POST: add one."""
    try:
        org = _organization(request, write=request.method == "POST")
    except PermissionDenied as error:
        return HttpResponseForbidden(error.message)
    form = EndpointForm(request.POST or None)
    status = 200
    if request.method == "POST":
        if form.is_valid():
            try:
                endpoint, secret = services.webhook_endpoint_create(
                    actor=request.user,
                    organization=org,
                    url=form.cleaned_data["url"],
                    event_types=form.cleaned_data["event_types"],
                    description=form.cleaned_data["description"],
                    channel=Channel.WEB,
                )
            except ServiceError as error:
                form.add_error(error.field if error.field in form.fields else None, error.message)
            else:
                return _keep_secret_for_display(request, endpoint, secret)
        status = 400
    endpoints = list(
        WebhookEndpoint.objects.filter(organization=org).order_by("-created_at", "-pk")
    )
    return render(
        request,
        "portal/webhooks/list.html",
        {
            "org": org,
            "endpoints": endpoints,
            "form": form,
            "can_write": _can_write(request, org),
            "labels": EVENT_LABELS,
        },
        status=status,
    )


@login_required
@require_GET
def endpoint_detail(request, endpoint_id: int):
    try:
        endpoint = _endpoint(request, endpoint_id)
    except PermissionDenied as error:
        return HttpResponseForbidden(error.message)
    secret = _take_secret(request, endpoint)
    if secret is not None:
        return _secret_page(request, endpoint, secret)
    rows = (
        WebhookDelivery.objects.filter(endpoint=endpoint)
        .prefetch_related(
            Prefetch("attempt_log", queryset=WebhookAttempt.objects.order_by("number"))
        )
        .order_by("-created_at", "-pk")[:LOG_ROWS]
    )
    deliveries = list(rows)
    for delivery in deliveries:  # the attempts are prefetched: no query per row
        attempts = list(delivery.attempt_log.all())
        delivery.last_attempt = attempts[-1] if attempts else None  # type: ignore[attr-defined]
    form = EventsForm(
        initial={"event_types": endpoint.event_types, "is_active": endpoint.is_active}
    )
    return render(
        request,
        "portal/webhooks/detail.html",
        {
            "endpoint": endpoint,
            "org": endpoint.organization,
            "deliveries": deliveries,
            "form": form,
            "can_write": _can_write(request, endpoint.organization),
            "labels": EVENT_LABELS,
        },
    )


def _write(view):
    """A POST on one endpoint by someone who may change it (403 page otherwise)."""

    @login_required
    @require_POST
    def wrapped(request, endpoint_id: int, **kwargs):
        try:
            endpoint = _endpoint(request, endpoint_id, write=True)
        except PermissionDenied as error:
            return HttpResponseForbidden(error.message)
        return view(request, endpoint, **kwargs)

    wrapped.__name__ = view.__name__
    wrapped.__doc__ = view.__doc__
    return wrapped


@_write
def endpoint_update(request, endpoint: WebhookEndpoint):
    form = EventsForm(request.POST)
    if not form.is_valid():
        problems = [str(e) for e in form.errors.get("event_types", [])] or [_("입력을 확인하세요.")]
        messages.error(request, " ".join(problems))
        return redirect(_detail_url(endpoint))
    try:
        services.webhook_endpoint_update(
            actor=request.user,
            endpoint=endpoint,
            channel=Channel.WEB,
            event_types=form.cleaned_data["event_types"],
            is_active=form.cleaned_data["is_active"],
        )
    except ServiceError as error:
        messages.error(request, error.message)
    else:
        messages.success(request, _("웹훅 설정을 저장했습니다."))
    return redirect(_detail_url(endpoint))


@_write
def endpoint_rotate(request, endpoint: WebhookEndpoint):
    keep = request.POST.get("keep_previous", "1") != "0"
    endpoint, secret = services.webhook_endpoint_rotate_secret(
        actor=request.user, endpoint=endpoint, keep_previous=keep, channel=Channel.WEB
    )
    return _keep_secret_for_display(request, endpoint, secret)


@_write
def endpoint_test(request, endpoint: WebhookEndpoint):
    services.webhook_endpoint_test(actor=request.user, endpoint=endpoint, channel=Channel.WEB)
    messages.success(
        request, _("테스트 이벤트를 보냈습니다. 잠시 뒤 아래 전송 기록에서 결과를 보세요.")
    )
    return redirect(_detail_url(endpoint))


@_write
def endpoint_delete(request, endpoint: WebhookEndpoint):
    org = endpoint.organization
    services.webhook_endpoint_delete(actor=request.user, endpoint=endpoint, channel=Channel.WEB)
    messages.success(request, _("웹훅 엔드포인트를 삭제했습니다."))
    return redirect(_list_url(org))


@_write
def delivery_redeliver(request, endpoint: WebhookEndpoint, delivery_id: int):
    delivery = WebhookDelivery.objects.filter(pk=delivery_id, endpoint=endpoint).first()
    if delivery is None:
        raise Http404(_("그런 전송 기록이 없습니다."))
    try:
        services.webhook_delivery_redeliver(
            actor=request.user, endpoint=endpoint, delivery=delivery, channel=Channel.WEB
        )
    except ServiceError as error:
        messages.error(request, error.message)
    else:
        messages.success(request, _("다시 보냈습니다."))
    return redirect(_detail_url(endpoint))
