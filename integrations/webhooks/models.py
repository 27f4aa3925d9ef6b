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
        Organization, on_delete=models.CASCADE, related_name="webhook_endpoints"
    )
    url = models.URLField(_("URL"), max_length=2000)
    description = models.CharField(_("설명"), max_length=200, blank=True)
    event_types = models.JSONField(_("이벤트"), default=list)
    # The signing secret (`whsec_` + base64): kept as is because every delivery is signed with
    # it (HMAC needs the key itself); never shown again after creation or rotation.
    secret = models.CharField(max_length=100)
    previous_secret = models.CharField(max_length=100, blank=True)
    previous_secret_expires_at = models.DateTimeField(null=True, blank=True)
    is_active = models.BooleanField(_("활성"), default=True)
    disabled_reason = models.CharField(
        _("꺼진 이유"), max_length=20, choices=DisabledReason.choices, blank=True
    )
    disabled_at = models.DateTimeField(null=True, blank=True)
    failing_since = models.DateTimeField(_("실패 시작"), null=True, blank=True)
    last_success_at = models.DateTimeField(null=True, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at", "-pk"]
        verbose_name = _("웹훅 엔드포인트")
        verbose_name_plural = _("웹훅 엔드포인트")
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
        WebhookEndpoint, on_delete=models.CASCADE, related_name="deliveries"
    )
    event_id = models.CharField(max_length=64)  # the `webhook-id` header, the same on every retry
    event_type = models.CharField(max_length=64)
    body = models.TextField()  # the exact JSON sent: {"type", "timestamp", "data"}
    status = models.CharField(
        max_length=16, choices=DeliveryStatus.choices, default=DeliveryStatus.PENDING
    )
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    # While `sending`: when the claim lapses (a worker that died mid-request), so a sweep retries.
    claimed_until = models.DateTimeField(null=True, blank=True)
    # Retries end `TESTBED_WEBHOOKS_RETRY_WINDOW_SECONDS` after the first attempt.
    first_attempt_at = models.DateTimeField(null=True, blank=True)
    last_attempt_at = models.DateTimeField(null=True, blank=True)
    last_error = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created_at", "-pk"]
        verbose_name = _("웹훅 전송")
        verbose_name_plural = _("웹훅 전송")
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
        WebhookDelivery, on_delete=models.CASCADE, related_name="attempt_log"
    )
    number = models.PositiveIntegerField()
    at = models.DateTimeField()
    duration_ms = models.PositiveIntegerField(default=0)
    response_status = models.PositiveIntegerField(null=True, blank=True)
    response_body = models.CharField(max_length=2048, blank=True)  # the first 2 KiB at most
    error = models.CharField(max_length=500, blank=True)
    succeeded = models.BooleanField(default=False)
    manual = models.BooleanField(default=False)  # a redelivery someone asked for

    class Meta:
        ordering = ["delivery", "number"]
        verbose_name = _("웹훅 전송 시도")
        verbose_name_plural = _("웹훅 전송 시도")
        constraints = [
            models.UniqueConstraint(
                fields=["delivery", "number"], name="webhooks_attempt_number_once"
            )
        ]

    def __str__(self) -> str:
        return f"{self.delivery_id} #{self.number}"
