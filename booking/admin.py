from __future__ import annotations

from django.contrib import admin, messages
from django.db.models import Count, DecimalField, F, Sum, Value
from django.db.models.functions import Coalesce
from django.utils.translation import gettext_lazy as _

from booking.models import (
    Allocation,
    ApiKey,
    Booking,
    BookingUsage,
    ContestedRound,
    DailyUsage,
    DiscountRule,
    IdempotencyRecord,
    Invitation,
    Membership,
    Occupancy,
    Organization,
    Qualification,
    QuotaGrant,
    QuotaLedgerEntry,
    TelemetrySample,
)
from booking.models.occupancy import CELL_MINUTES
from equipment.models import AcceleratorPool, EquipmentType
from testbed.admin import ReadOnlyAdminMixin, ReadOnlyInline
from testbed.choices import Channel

# --- Organisations and people -----------------------------------------------------------------


class MembershipInline(admin.TabularInline):
    model = Membership
    fields = ["user", "role", "created_at"]
    readonly_fields = ["created_at"]
    autocomplete_fields = ["user"]
    extra = 0


@admin.register(Organization)
class OrganizationAdmin(admin.ModelAdmin):
    list_display = [
        "name",
        "slug",
        "business_number",
        "category",
        "region",
        "youth_startup",
        "is_active",
        "members_count",
    ]
    list_filter = ["category", "region", "youth_startup", "is_active"]
    search_fields = ["name", "slug", "business_number"]
    fields = [
        "name",
        "slug",
        "business_number",
        ("category", "region"),
        ("youth_startup", "is_active"),
        "created_at",
    ]
    readonly_fields = ["created_at"]
    inlines = [MembershipInline]

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(members_count=Count("memberships"))

    @admin.display(description=_("members"), ordering="members_count")
    def members_count(self, obj):
        return obj.members_count


@admin.register(DiscountRule)
class DiscountRuleAdmin(admin.ModelAdmin):
    list_display = ["name", "percent", "category", "region", "youth_startup", "active"]
    list_filter = ["active", "category", "region", "youth_startup"]
    search_fields = ["name"]


@admin.register(Membership)
class MembershipAdmin(admin.ModelAdmin):
    list_display = ["user", "organization", "role", "created_at"]
    list_filter = ["role"]
    search_fields = ["user__username", "user__email", "organization__name", "organization__slug"]
    list_select_related = ["user", "organization"]
    autocomplete_fields = ["organization", "user"]


@admin.register(Qualification)
class QualificationAdmin(admin.ModelAdmin):
    list_display = ["user", "equipment_type", "valid_until", "granted_by", "created_at"]
    list_filter = ["equipment_type__center", "equipment_type"]
    search_fields = [
        "user__username",
        "user__email",
        "equipment_type__code",
        "equipment_type__name",
    ]
    date_hierarchy = "valid_until"
    list_select_related = ["user", "equipment_type", "granted_by"]
    autocomplete_fields = ["user", "equipment_type", "granted_by"]

    def get_queryset(self, request):
        # The label ("user · CODE until date") reads the type, autocomplete included.
        return super().get_queryset(request).select_related("user", "equipment_type")


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    # key_hash is deliberately in no list here: it is never shown, searched or edited.
    # Keys are made by the issuing service, which shows the secret once; the admin can rename
    # or revoke.
    list_display = [
        "name",
        "prefix",
        "organization",
        "scopes",
        "created_by",
        "created_at",
        "last_used_at",
        "revoked_at",
    ]
    list_filter = ["organization"]
    search_fields = ["name", "prefix", "organization__name"]
    list_select_related = ["organization", "created_by"]
    fields = [
        "organization",
        "name",
        "prefix",
        "scopes",
        "user",
        "created_by",
        "created_at",
        "last_used_at",
        "revoked_at",
    ]
    readonly_fields = [
        "organization",
        "prefix",
        "scopes",
        "user",
        "created_by",
        "created_at",
        "last_used_at",
    ]

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(Invitation)
class InvitationAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """Invitations are answered by the invited person only (API or portal); operators read them."""

    list_display = ["user", "organization", "role", "invited_by", "created_at", "accepted"]
    list_filter = ["accepted", "role"]
    search_fields = ["user__username", "organization__name", "organization__slug"]
    list_select_related = ["user", "organization", "invited_by"]


# --- Bookings (read-only: state changes go through the booking services) ----------------------


class ResourceFilter(admin.SimpleListFilter):
    title = _("resource")
    parameter_name = "resource"

    def lookups(self, request, model_admin):
        codes = [
            *EquipmentType.objects.values_list("code", flat=True),
            *AcceleratorPool.objects.values_list("code", flat=True),
        ]
        return [(code, code) for code in sorted(codes)]

    def queryset(self, request, queryset):
        code = self.value()
        if not code:
            return queryset
        return queryset.filter(equipment_type__code=code) | queryset.filter(pool__code=code)


class AllocationInline(ReadOnlyInline):
    model = Allocation
    fields = ["unit", "device", "node", "start", "end", "active", "created_at"]

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("unit", "device__node", "node")


@admin.register(Booking)
class BookingAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = [
        "id",
        "resource",
        "quantity",
        "start",
        "end",
        "status",
        "organization",
        "user",
        "channel",
        "over_quota",
    ]
    list_filter = ["status", ResourceFilter, "organization", "channel", "over_quota"]
    search_fields = [
        "id__exact",
        "organization__name",
        "user__username",
        "equipment_type__code",
        "pool__code",
        "purpose",
    ]
    date_hierarchy = "start"
    list_select_related = ["organization", "user", "equipment_type", "pool"]
    inlines = [AllocationInline]
    actions = ["approve_selected", "reject_selected", "cancel_selected"]

    @admin.display(description=_("resource"))
    def resource(self, obj):
        return obj.resource_code

    def _apply(self, request, queryset, done_message: str, change) -> None:
        """Each booking goes through its service (channel admin, audited); refusals are reported."""
        from testbed.errors import ServiceError

        done, refused = 0, []
        for booking in queryset.select_related("organization", "equipment_type", "pool"):
            try:
                change(booking)
                done += 1
            except ServiceError as exc:
                refused.append(f"#{booking.pk}: {exc.message}")
        if done:
            self.message_user(request, done_message % {"n": done}, messages.SUCCESS)
        for line in refused:
            self.message_user(request, line, messages.WARNING)

    @admin.action(description=_("Approve selected bookings (승인)"))
    def approve_selected(self, request, queryset):
        from booking.services.bookings import booking_approve

        self._apply(
            request,
            queryset,
            _("Approved %(n)d booking(s)."),
            lambda b: booking_approve(actor=request.user, booking=b, channel=Channel.ADMIN),
        )

    @admin.action(description=_("Reject selected bookings (거절)"))
    def reject_selected(self, request, queryset):
        from booking.services.bookings import booking_reject

        self._apply(
            request,
            queryset,
            _("Rejected %(n)d booking(s)."),
            lambda b: booking_reject(
                actor=request.user,
                booking=b,
                reason="Rejected by a facility operator in the admin.",
                channel=Channel.ADMIN,
            ),
        )

    @admin.action(description=_("Cancel selected bookings (취소)"))
    def cancel_selected(self, request, queryset):
        from booking.services.bookings import booking_cancel

        self._apply(
            request,
            queryset,
            _("Cancelled %(n)d booking(s)."),
            lambda b: booking_cancel(
                actor=request.user,
                booking=b,
                reason="Cancelled by a facility operator in the admin.",
                channel=Channel.ADMIN,
            ),
        )


@admin.register(Allocation)
class AllocationAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ["id", "booking", "unit", "device", "start", "end", "active"]
    list_filter = ["active"]
    search_fields = ["booking__id__exact", "unit__code", "device__node__hostname"]
    date_hierarchy = "start"
    list_select_related = ["booking__equipment_type", "booking__pool", "unit", "device__node"]


# --- Quotas ----------------------------------------------------------------------------------


@admin.register(QuotaGrant)
class QuotaGrantAdmin(admin.ModelAdmin):
    list_display = [
        "organization",
        "scope",
        "period_start",
        "period_end",
        "limit_hours",
        "used_hours",
        "enforcement",
    ]
    list_filter = ["enforcement", "organization"]
    search_fields = ["organization__name", "organization__slug", "scope"]
    date_hierarchy = "period_start"
    list_select_related = ["organization"]
    autocomplete_fields = ["organization"]
    fields = [
        "organization",
        "scope",
        ("period_start", "period_end"),
        ("limit_hours", "enforcement"),
        "notes",
        ("reminded_80", "reminded_100"),
        "created_at",
    ]
    readonly_fields = ["reminded_80", "reminded_100", "created_at"]

    def get_queryset(self, request):
        zero = Value(0, output_field=DecimalField(max_digits=14, decimal_places=4))
        return super().get_queryset(request).annotate(used=Coalesce(Sum(F("ledger__hours")), zero))

    @admin.display(description=_("used (unit-hours)"), ordering="used")
    def used_hours(self, obj):
        return obj.used


@admin.register(QuotaLedgerEntry)
class QuotaLedgerEntryAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ["at", "grant", "kind", "hours", "booking", "actor", "reason"]
    list_filter = ["kind", "grant__organization"]
    search_fields = ["booking__id__exact", "grant__organization__name", "grant__scope", "reason"]
    date_hierarchy = "at"
    list_select_related = [
        "grant__organization",
        "booking__equipment_type",
        "booking__pool",
        "actor",
    ]


@admin.register(IdempotencyRecord)
class IdempotencyRecordAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ["created_at", "user", "endpoint", "key", "object_id"]
    list_filter = ["endpoint"]
    search_fields = ["key", "user__username"]
    date_hierarchy = "created_at"
    list_select_related = ["user"]


# --- Contested rounds --------------------------------------------------------------------------


@admin.register(ContestedRound)
class ContestedRoundAdmin(admin.ModelAdmin):
    list_display = [
        "pool",
        "window_start",
        "window_end",
        "cutoff_at",
        "allocated_at",
        "bookings_count",
    ]
    list_filter = ["pool"]
    search_fields = ["pool__code", "pool__name"]
    date_hierarchy = "cutoff_at"
    list_select_related = ["pool"]
    autocomplete_fields = ["pool"]
    fields = ["pool", ("window_start", "window_end"), "cutoff_at", "allocated_at", "created_at"]
    readonly_fields = ["allocated_at", "created_at"]

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(bookings_count=Count("bookings"))

    @admin.display(description=_("bookings"), ordering="bookings_count")
    def bookings_count(self, obj):
        return obj.bookings_count


# --- Usage (read-only: written by node agents and the rollup tasks) ---------------------------


@admin.register(TelemetrySample)
class TelemetrySampleAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ["at", "device", "booking", "utilization_pct", "memory_used_mb", "power_w"]
    list_filter = ["node__pool"]
    search_fields = ["node__hostname", "booking__id__exact"]
    date_hierarchy = "at"
    list_select_related = ["device__node", "booking__equipment_type", "booking__pool"]
    # The table grows by a row per device per sample: skip the unfiltered COUNT(*).
    show_full_result_count = False


@admin.register(BookingUsage)
class BookingUsageAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = [
        "booking",
        "booked_unit_hours",
        "used_unit_hours",
        "mean_utilization_pct",
        "energy_kwh",
        "charge_krw",
        "samples",
        "computed_at",
    ]
    search_fields = ["booking__id__exact", "booking__organization__name"]
    list_select_related = ["booking__equipment_type", "booking__pool"]


@admin.register(DailyUsage)
class DailyUsageAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = [
        "day",
        "organization",
        "resource_code",
        "center_code",
        "bookings",
        "booked_hours",
        "used_hours",
        "unit_hours",
        "cancelled",
        "no_shows",
        "charge_krw",
    ]
    list_filter = ["resource_kind", "center_code"]
    search_fields = ["organization__name", "resource_code"]
    date_hierarchy = "day"
    list_select_related = ["organization"]


@admin.register(Occupancy)
class OccupancyAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """Derived from the allocations by triggers (repair: `manage.py rebuild_occupancy`)."""

    list_display = ["day", "kind", "target", "busy_minutes", "odd"]
    list_filter = ["kind"]
    date_hierarchy = "day"

    @admin.display(description=_("점유 시간 (분)"))
    def busy_minutes(self, obj: Occupancy) -> int:
        return obj.busy_cells * CELL_MINUTES
