from __future__ import annotations

from django.contrib import admin
from django.db.models import Count
from django.utils.translation import gettext_lazy as _
from import_export import fields, resources
from import_export.admin import ImportExportModelAdmin
from import_export.widgets import ForeignKeyWidget

from equipment.models import (
    AcceleratorPool,
    Center,
    Device,
    EquipmentType,
    EquipmentUnit,
    MaintenanceWindow,
    Node,
)

POLICY_FIELDSETS = [
    (
        _("Booking rules"),
        {
            "fields": [
                ("slot_minutes", "min_minutes", "max_minutes"),
                ("min_lead_minutes", "max_lead_days", "buffer_minutes"),
                ("opens_at", "closes_at", "open_weekdays"),
                ("requires_approval", "requires_qualification"),
                ("no_show_grace_minutes", "cancel_free_minutes"),
            ]
        },
    ),
    (_("Price"), {"fields": ["hourly_rate"]}),
]
POLICY_COLUMNS = [
    "slot_minutes",
    "min_minutes",
    "max_minutes",
    "min_lead_minutes",
    "max_lead_days",
    "buffer_minutes",
    "opens_at",
    "closes_at",
    "open_weekdays",
    "requires_approval",
    "requires_qualification",
    "hourly_rate",
    "no_show_grace_minutes",
    "cancel_free_minutes",
]


# --- CSV import and export (rows keyed on `code`, foreign keys written as codes) -------------


class EquipmentTypeResource(resources.ModelResource):
    center = fields.Field(
        attribute="center", column_name="center", widget=ForeignKeyWidget(Center, field="code")
    )

    class Meta:
        model = EquipmentType
        import_id_fields = ["code"]
        fields = [
            "code",
            "name",
            "name_en",
            "center",
            "field",
            "phase",
            "category",
            "operating_mode",
            "placeholder",
            "description",
            "specs",
            *POLICY_COLUMNS,
        ]
        export_order = fields
        skip_unchanged = True
        report_skipped = True
        # full_clean() per row: code syntax, the code namespace shared with pools, policy rules.
        clean_model_instances = True


class EquipmentUnitResource(resources.ModelResource):
    equipment_type = fields.Field(
        attribute="equipment_type",
        column_name="equipment_type",
        widget=ForeignKeyWidget(EquipmentType, field="code"),
    )

    class Meta:
        model = EquipmentUnit
        import_id_fields = ["code"]
        fields = ["code", "equipment_type", "serial", "status", "location", "notes"]
        export_order = fields
        skip_unchanged = True
        report_skipped = True
        clean_model_instances = True


# --- Equipment --------------------------------------------------------------------------------


@admin.register(Center)
class CenterAdmin(admin.ModelAdmin):
    list_display = ["code", "name", "name_en", "field", "operator", "types_count", "pools_count"]
    list_filter = ["field"]
    search_fields = ["code", "name", "name_en", "operator"]

    def get_queryset(self, request):
        return (
            super()
            .get_queryset(request)
            .annotate(
                types_count=Count("equipment_types", distinct=True),
                pools_count=Count("pools", distinct=True),
            )
        )

    @admin.display(description=_("equipment types"), ordering="types_count")
    def types_count(self, obj):
        return obj.types_count

    @admin.display(description=_("pools"), ordering="pools_count")
    def pools_count(self, obj):
        return obj.pools_count


class EquipmentUnitInline(admin.TabularInline):
    model = EquipmentUnit
    fields = ["code", "serial", "status", "location"]
    extra = 0
    show_change_link = True


@admin.register(EquipmentType)
class EquipmentTypeAdmin(ImportExportModelAdmin):
    resource_classes = [EquipmentTypeResource]
    list_display = ["code", "name", "name_en", "center", "field", "phase", "units_count"]
    list_filter = ["center", "field", "phase", "placeholder", "requires_approval"]
    search_fields = ["code", "name", "name_en"]
    list_select_related = ["center"]
    autocomplete_fields = ["center"]
    inlines = [EquipmentUnitInline]
    fieldsets = [
        (
            None,
            {
                "fields": [
                    ("code", "center"),
                    ("name", "name_en"),
                    ("field", "phase", "category"),
                    ("operating_mode", "placeholder"),
                    "description",
                    "specs",
                ]
            },
        ),
        *POLICY_FIELDSETS,  # type: ignore[list-item]
    ]

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(units_count=Count("units", distinct=True))

    @admin.display(description=_("units"), ordering="units_count")
    def units_count(self, obj):
        return obj.units_count


@admin.register(EquipmentUnit)
class EquipmentUnitAdmin(ImportExportModelAdmin):
    resource_classes = [EquipmentUnitResource]
    list_display = ["code", "equipment_type", "center", "status", "serial", "location"]
    list_filter = ["equipment_type__center", "equipment_type__field", "status"]
    search_fields = [
        "code",
        "serial",
        "location",
        "equipment_type__code",
        "equipment_type__name",
        "equipment_type__name_en",
    ]
    list_select_related = ["equipment_type__center"]
    autocomplete_fields = ["equipment_type"]

    @admin.display(description=_("centre"), ordering="equipment_type__center__code")
    def center(self, obj):
        return obj.equipment_type.center


# --- Accelerators -----------------------------------------------------------------------------


class NodeInline(admin.TabularInline):
    model = Node
    fields = ["hostname", "status"]
    extra = 0
    show_change_link = True


@admin.register(AcceleratorPool)
class AcceleratorPoolAdmin(admin.ModelAdmin):
    list_display = [
        "code",
        "name",
        "center",
        "accelerator",
        "kind",
        "partition_kind",
        "nodes_count",
        "devices_count",
    ]
    list_filter = [
        "center",
        "kind",
        "partition_kind",
        "domestic",
        "placeholder",
        "requires_approval",
    ]
    search_fields = ["code", "name", "name_en", "vendor", "accelerator"]
    list_select_related = ["center"]
    autocomplete_fields = ["center"]
    inlines = [NodeInline]
    fieldsets = [
        (
            None,
            {
                "fields": [
                    ("code", "center"),
                    ("name", "name_en"),
                    ("vendor", "accelerator", "memory_gb"),
                    ("kind", "partition_kind", "domestic", "placeholder"),
                    "description",
                ]
            },
        ),
        (
            _("Idle reclaim"),
            {"fields": [("idle_threshold_pct", "idle_minutes", "idle_grace_minutes")]},
        ),
        (_("Contested windows"), {"fields": ["contested_lead_days"]}),
        *POLICY_FIELDSETS,  # type: ignore[list-item]
    ]

    def get_queryset(self, request):
        return (
            super()
            .get_queryset(request)
            .annotate(
                nodes_count=Count("nodes", distinct=True),
                devices_count=Count("nodes__devices", distinct=True),
            )
        )

    @admin.display(description=_("nodes"), ordering="nodes_count")
    def nodes_count(self, obj):
        return obj.nodes_count

    @admin.display(description=_("devices"), ordering="devices_count")
    def devices_count(self, obj):
        return obj.devices_count


class DeviceInline(admin.TabularInline):
    model = Device
    fields = ["index", "uuid", "parent", "profile", "status"]
    # A select of every device (each label joining its node) would be one query per option.
    raw_id_fields = ["parent"]
    extra = 0
    show_change_link = True


@admin.register(Node)
class NodeAdmin(admin.ModelAdmin):
    list_display = ["hostname", "pool", "status", "devices_count"]
    list_filter = ["pool__center", "pool", "status"]
    search_fields = ["hostname", "pool__code"]
    list_select_related = ["pool"]
    autocomplete_fields = ["pool"]
    inlines = [DeviceInline]

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(devices_count=Count("devices"))

    @admin.display(description=_("devices"), ordering="devices_count")
    def devices_count(self, obj):
        return obj.devices_count


@admin.register(Device)
class DeviceAdmin(admin.ModelAdmin):
    list_display = ["__str__", "pool", "index", "profile", "status", "uuid"]
    list_filter = ["node__pool__center", "node__pool", "status"]
    search_fields = ["node__hostname", "node__pool__code", "profile", "uuid__exact"]
    list_select_related = ["node__pool"]
    autocomplete_fields = ["node", "parent"]

    def get_queryset(self, request):
        # Every label ("host/index") reads the node, autocomplete answers included.
        return super().get_queryset(request).select_related("node__pool")

    @admin.display(description=_("pool"), ordering="node__pool__code")
    def pool(self, obj):
        return obj.node.pool


@admin.register(MaintenanceWindow)
class MaintenanceWindowAdmin(admin.ModelAdmin):
    list_display = ["start", "end", "target", "reason", "created_by"]
    list_filter = ["equipment_type__center", "pool"]
    search_fields = ["reason", "equipment_type__code", "unit__code", "pool__code", "node__hostname"]
    date_hierarchy = "start"
    list_select_related = ["equipment_type", "unit", "pool", "node", "created_by"]
    autocomplete_fields = ["equipment_type", "unit", "pool", "node"]
    fields = [
        ("start", "end"),
        "reason",
        "equipment_type",
        "unit",
        "pool",
        "node",
        "created_by",
        "created_at",
    ]
    readonly_fields = ["created_by", "created_at"]

    @admin.display(description=_("target"))
    def target(self, obj):
        return obj.target

    def save_model(self, request, obj, form, change):
        if obj.created_by_id is None:
            obj.created_by = request.user
        super().save_model(request, obj, form, change)
