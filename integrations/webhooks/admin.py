"""Admin for operators: every organisation's webhook endpoints (failing ones first) and their log.

Read-only: endpoints are the organisations' own (their managers change them), and the secret
is never shown. Operators see who fails since when and what the receiver answered.
"""

from __future__ import annotations

from django.contrib import admin
from django.db.models import F
from django.utils.translation import gettext_lazy as _

from integrations.webhooks.models import WebhookAttempt, WebhookDelivery, WebhookEndpoint
from testbed.admin import ReadOnlyAdminMixin, ReadOnlyInline


class FailingFilter(admin.SimpleListFilter):
    title = _("실패 여부")
    parameter_name = "failing"

    def lookups(self, request, model_admin):
        return [("yes", _("실패 중이거나 실패로 꺼짐")), ("no", _("정상"))]

    def queryset(self, request, queryset):
        failing = queryset.filter(failing_since__isnull=False) | queryset.filter(
            disabled_reason="failing"
        )
        if self.value() == "yes":
            return failing
        if self.value() == "no":
            return queryset.exclude(pk__in=failing.values("pk"))
        return queryset


@admin.register(WebhookEndpoint)
class WebhookEndpointAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = [
        "url",
        "organization",
        "is_active",
        "disabled_reason",
        "failing_since",
        "last_success_at",
        "created_at",
    ]
    list_filter = [FailingFilter, "is_active", "disabled_reason"]
    search_fields = ["url", "organization__name", "organization__slug", "description"]
    list_select_related = ["organization"]
    fields = [
        "organization",
        "url",
        "description",
        "event_types",
        "is_active",
        "disabled_reason",
        "disabled_at",
        "failing_since",
        "last_success_at",
        "created_by",
        "created_at",
        "updated_at",
    ]  # never the secret

    def get_ordering(self, request):
        return [F("failing_since").asc(nulls_last=True), "-created_at"]


class WebhookAttemptInline(ReadOnlyInline):
    model = WebhookAttempt
    fields = ["number", "at", "duration_ms", "response_status", "error", "response_body"]
    show_change_link = False


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = [
        "event_type",
        "endpoint",
        "status",
        "attempts",
        "last_error",
        "next_attempt_at",
        "created_at",
    ]
    list_filter = ["status", "event_type"]
    search_fields = ["event_id", "endpoint__url", "endpoint__organization__slug"]
    list_select_related = ["endpoint", "endpoint__organization"]
    date_hierarchy = "created_at"
    inlines = [WebhookAttemptInline]
