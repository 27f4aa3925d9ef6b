"""Admin of the Slurm integration: clusters per pool with the sync's status, node and account names."""

from __future__ import annotations

from django.contrib import admin, messages
from django.utils.html import format_html_join
from django.utils.translation import ngettext, pgettext_lazy

from integrations.slurm.models import SlurmAccount, SlurmCluster, SlurmNode


@admin.register(SlurmCluster)
class SlurmClusterAdmin(admin.ModelAdmin):
    list_display = [
        "pool",
        "cluster_name",
        "enabled",
        "sync_state",
        "pending_changes",
        "last_success_at",
        "last_error_at",
        "conflict_count",
    ]
    list_filter = ["enabled"]
    list_select_related = ["pool"]
    search_fields = ["pool__code", "cluster_name"]
    autocomplete_fields = ["pool"]
    actions = ["sync_now"]
    readonly_fields = [
        "last_attempt_at",
        "last_success_at",
        "pending_changes",
        "last_error",
        "last_error_at",
        "conflict_list",
    ]
    fieldsets = [
        (None, {"fields": ["pool", "enabled", "cluster_name", "partition", "reservation_prefix"]}),
        (
            pgettext_lazy("slurm", "How to reach scontrol"),
            {"fields": ["scontrol_path", "slurm_conf", "timeout_seconds"]},
        ),
        (pgettext_lazy("slurm", "Maintenance reservations"), {"fields": ["maintenance_users"]}),
        (
            pgettext_lazy("slurm", "Sync status"),
            {
                "fields": [
                    "pending_changes",
                    "last_success_at",
                    "last_attempt_at",
                    "last_error",
                    "last_error_at",
                    "conflict_list",
                ]
            },
        ),
    ]

    @admin.display(description=pgettext_lazy("slurm", "state"))
    def sync_state(self, cluster: SlurmCluster) -> str:
        if not cluster.enabled:
            return str(pgettext_lazy("slurm", "off"))
        return (
            str(pgettext_lazy("slurm", "in step"))
            if cluster.in_step
            else str(pgettext_lazy("slurm", "pending"))
        )

    @admin.display(description=pgettext_lazy("slurm", "foreign reservations"))
    def conflict_count(self, cluster: SlurmCluster) -> int:
        return len(cluster.conflicts or [])

    @admin.display(description=pgettext_lazy("slurm", "foreign reservations over bookings"))
    def conflict_list(self, cluster: SlurmCluster):
        return (
            format_html_join(
                "\n",
                "<div>{} ({}, {} – {}) ↔ {}</div>",
                (
                    (c["reservation"], c["nodes"], c["start"], c["end"], ", ".join(c["overlaps"]))
                    for c in cluster.conflicts or []
                ),
            )
            or "—"
        )

    @admin.action(description=pgettext_lazy("slurm", "Sync with Slurm now"))
    def sync_now(self, request, queryset):
        from integrations.slurm.tasks import reconcile_cluster

        ids = list(queryset.values_list("pk", flat=True))
        for cluster_id in ids:
            reconcile_cluster.delay(cluster_id)
        self.message_user(
            request,
            ngettext("Sync queued for %(n)d cluster.", "Sync queued for %(n)d clusters.", len(ids))
            % {"n": len(ids)},
            messages.SUCCESS,
        )


@admin.register(SlurmNode)
class SlurmNodeAdmin(admin.ModelAdmin):
    list_display = ["node", "slurm_name"]
    list_select_related = ["node"]
    search_fields = ["node__hostname", "slurm_name"]
    autocomplete_fields = ["node"]


@admin.register(SlurmAccount)
class SlurmAccountAdmin(admin.ModelAdmin):
    list_display = ["organization", "account", "users"]
    list_select_related = ["organization"]
    search_fields = ["organization__slug", "organization__name", "account", "users"]
    autocomplete_fields = ["organization"]
