"""Calendar feeds in the admin: operators see who follows what and revoke (delete) a feed; the
token's hash is never shown, and feeds are made only by their owners (portal or API)."""

from __future__ import annotations

from django.contrib import admin

from integrations.calendars.models import CalendarFeed
from integrations.calendars.services import calendar_feed_delete
from testbed.choices import Channel


@admin.register(CalendarFeed)
class CalendarFeedAdmin(admin.ModelAdmin):
    list_display = [
        "owner",
        "scope",
        "organization",
        "equipment_type",
        "pool",
        "language",
        "token_prefix",
        "token_created_at",
        "last_used_at",
    ]
    list_filter = ["scope", "language"]
    search_fields = ["owner__username", "token_prefix", "organization__slug"]
    list_select_related = ["owner", "organization", "equipment_type", "pool"]
    fields = [
        "owner",
        "scope",
        "organization",
        "equipment_type",
        "pool",
        "language",
        "token_prefix",
        "token_created_at",
        "created_at",
        "last_used_at",
    ]
    readonly_fields = [str(name) for name in fields]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def delete_model(self, request, obj):
        calendar_feed_delete(actor=request.user, feed=obj, channel=Channel.ADMIN)

    def delete_queryset(self, request, queryset):
        for feed in queryset.select_related("organization", "equipment_type", "pool"):
            calendar_feed_delete(actor=request.user, feed=feed, channel=Channel.ADMIN)
