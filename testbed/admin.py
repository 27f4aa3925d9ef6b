"""Admin for the audit log, and the admin building blocks the apps share."""

from __future__ import annotations

from django.contrib import admin

from testbed.models import AuditEntry


class ReadOnlyAdminMixin:
    """View-only: rows written by services (ledgers, logs, bookings) are never edited by hand.

    Django renders the change page as a read-only view when change permission is withheld,
    and drops the bulk-delete action when delete permission is.
    """

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


class ReadOnlyInline(admin.TabularInline):
    extra = 0
    can_delete = False
    show_change_link = True

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(AuditEntry)
class AuditEntryAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = [
        "at",
        "actor",
        "channel",
        "action",
        "object_type",
        "object_id",
        "from_state",
        "to_state",
    ]
    list_filter = ["channel", "object_type", "action"]
    search_fields = ["object_id", "action", "object_type", "actor__username"]
    date_hierarchy = "at"
    list_select_related = ["actor"]
    show_full_result_count = False
