"""Webhook endpoints of organisations, the deliveries of events to them, and each attempt made.

An endpoint belongs to one organisation and only ever receives that organisation's events. A
delivery is one event for one endpoint (its body fixed at creation, so every retry sends the same
bytes under the same `webhook-id`); each HTTP request made for it is an attempt, kept for the
delivery log (bounded: `TESTBED_WEBHOOKS_LOG_DAYS`).
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils.translation import gettext_lazy as _
from django.utils.translation import pgettext_lazy

from booking.models import Organization


class DisabledReason(models.TextChoices):
    NONE = "", _("활성")
    FAILING = "failing", _("계속 실패하여 자동으로 꺼짐")
    MANAGER = "manager", _("관리자가 끔")


class DeliveryStatus(models.TextChoices):
    PENDING = "pending", _("대기")
    SENDING = "sending", _("보내는 중")
    SUCCEEDED = "succeeded", _("성공")
    FAILED = "failed", _("실패")


class WebhookEndpoint(models.Model):
    """Where an organisation wants to hear of its events, and which ones."""

    organization = models.ForeignKey(
        Organization,
        on_delete=models.CASCADE,
        related_name="webhook_endpoints",
        verbose_name=_("기관"),
    )
    url = models.URLField(_("받을 주소"), max_length=2000)
    description = models.CharField(_("설명"), max_length=200, blank=True)
    event_types = models.JSONField(_("이벤트"), default=list)
    # The signing secret (`whsec_` + base64): kept as is because every delivery is signed with
    # it (HMAC needs the key itself); never shown again after creation or rotation.
    secret = models.CharField(max_length=100)
    # Secrets rotated out less than 24 hours ago, newest first, each still signing alongside the
    # current one until its `until` (ISO time): [{"secret": "whsec_…", "until": "…"}], at most
    # services.MAX_PREVIOUS_SECRETS.
    previous_secrets = models.JSONField(default=list, blank=True)
    is_active = models.BooleanField(_("활성"), default=True)
    disabled_reason = models.CharField(
        _("꺼진 이유"), max_length=20, choices=DisabledReason.choices, blank=True
    )
    disabled_at = models.DateTimeField(_("꺼진 때"), null=True, blank=True)
    failing_since = models.DateTimeField(_("실패 시작"), null=True, blank=True)
    last_success_at = models.DateTimeField(_("마지막 성공"), null=True, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        verbose_name=_("만든 사람"),
    )
    created_at = models.DateTimeField(_("만든 때"), auto_now_add=True)
    updated_at = models.DateTimeField(_("바꾼 때"), auto_now=True)

    class Meta:
        ordering = ["-created_at", "-pk"]
        verbose_name = _("웹훅 엔드포인트")
        verbose_name_plural = pgettext_lazy("plural", "웹훅 엔드포인트")
        constraints = [
            # The same URL twice would receive every event twice.
            models.UniqueConstraint(
                fields=["organization", "url"], name="webhooks_endpoint_url_once_per_org"
            )
        ]
        indexes = [
            # The receiver's one read per event: an organisation's active endpoints.
            models.Index(
                fields=["organization"],
                condition=models.Q(is_active=True),
                name="webhooks_endpoint_active_org",
            ),
            models.Index(
                fields=["failing_since"],
                condition=models.Q(failing_since__isnull=False),
                name="webhooks_endpoint_failing",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.organization_id}: {self.url}"


class WebhookDelivery(models.Model):
    """One event for one endpoint: queued, retried with backoff, then succeeded or failed."""

    endpoint = models.ForeignKey(
        WebhookEndpoint,
        on_delete=models.CASCADE,
        related_name="deliveries",
        verbose_name=_("웹훅 엔드포인트"),
    )
    event_id = models.CharField(
        _("이벤트 ID"), max_length=64
    )  # the `webhook-id` header, the same on every retry
    event_type = models.CharField(_("이벤트 종류"), max_length=64)
    body = models.TextField(_("본문"))  # the exact JSON sent: {"type", "timestamp", "data"}
    status = models.CharField(
        _("상태"), max_length=16, choices=DeliveryStatus.choices, default=DeliveryStatus.PENDING
    )
    attempts = models.PositiveIntegerField(_("시도 횟수"), default=0)
    next_attempt_at = models.DateTimeField(_("다음 시도"), null=True, blank=True)
    # While `sending`: when the claim lapses (a worker that died mid-request), so a sweep retries.
    claimed_until = models.DateTimeField(_("보내기 점유 끝"), null=True, blank=True)
    # Retries end `TESTBED_WEBHOOKS_RETRY_WINDOW_SECONDS` after the first attempt.
    first_attempt_at = models.DateTimeField(_("첫 시도"), null=True, blank=True)
    last_attempt_at = models.DateTimeField(_("마지막 시도"), null=True, blank=True)
    last_error = models.CharField(_("마지막 오류"), max_length=500, blank=True)
    created_at = models.DateTimeField(_("만든 때"), auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created_at", "-pk"]
        verbose_name = _("웹훅 전송")
        verbose_name_plural = pgettext_lazy("plural", "웹훅 전송")
        constraints = [
            models.UniqueConstraint(
                fields=["endpoint", "event_id"], name="webhooks_delivery_once_per_endpoint"
            )
        ]
        indexes = [
            models.Index(
                fields=["next_attempt_at"],
                condition=models.Q(status__in=["pending", "sending"]),
                name="webhooks_delivery_due",
            ),
            models.Index(fields=["endpoint", "-created_at"], name="webhooks_delivery_log"),
        ]

    def __str__(self) -> str:
        return f"{self.event_type} {self.event_id} → {self.endpoint_id}"


class WebhookAttempt(models.Model):
    """One HTTP request of a delivery: what came back (bounded), how long it took, or the error."""

    delivery = models.ForeignKey(
        WebhookDelivery,
        on_delete=models.CASCADE,
        related_name="attempt_log",
        verbose_name=_("웹훅 전송"),
    )
    number = models.PositiveIntegerField(_("번호"))
    at = models.DateTimeField(_("시각"))
    duration_ms = models.PositiveIntegerField(_("걸린 시간 (ms)"), default=0)
    response_status = models.PositiveIntegerField(_("응답 상태"), null=True, blank=True)
    # The first 2 KiB at most.
    response_body = models.CharField(_("응답 본문"), max_length=2048, blank=True)
    error = models.CharField(_("오류"), max_length=500, blank=True)
    succeeded = models.BooleanField(_("성공"), default=False)
    manual = models.BooleanField(_("다시 보내기"), default=False)  # a redelivery someone asked for

    class Meta:
        ordering = ["delivery", "number"]
        verbose_name = _("웹훅 전송 시도")
        verbose_name_plural = pgettext_lazy("plural", "웹훅 전송 시도")
        constraints = [
            models.UniqueConstraint(
                fields=["delivery", "number"], name="webhooks_attempt_number_once"
            )
        ]

    def __str__(self) -> str:
        return f"{self.delivery_id} #{self.number}"
