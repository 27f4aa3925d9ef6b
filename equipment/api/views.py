"""Catalogue API: centres, equipment types and pools (operators write, everyone signed in reads)."""

from __future__ import annotations

from collections import Counter

from django.db import transaction
from django.db.models import ProtectedError, RestrictedError
from django.utils import translation
from rest_framework import viewsets
from rest_framework.permissions import IsAuthenticated

from equipment.api.filters import EquipmentTypeFilter, PoolFilter
from equipment.api.serializers import CenterSerializer, EquipmentTypeSerializer, PoolSerializer
from equipment.models import Center
from equipment.selectors import equipment_type_list, pool_list
from testbed.api.permissions import IsOperatorOrReadOnly, KeyScopes
from testbed.choices import KeyScope
from testbed.errors import Conflict

# Keys read the catalogue with `catalog:read`; writing it is for operators signed in as people.
CATALOG_SCOPES = {"GET": KeyScope.CATALOG_READ, "HEAD": KeyScope.CATALOG_READ}


class ProtectedDeleteMixin:
    """DELETE of a row other rows still refer to (units, bookings, nodes, ...) answers 409
    naming them, instead of the database's refusal surfacing as a 500."""

    def perform_destroy(self, instance) -> None:
        try:
            with transaction.atomic():
                instance.delete()
        except (ProtectedError, RestrictedError) as exc:
            referring = (
                exc.protected_objects if isinstance(exc, ProtectedError) else exc.restricted_objects
            )
            with translation.override("en"):  # API messages are English, like the rest
                counts = Counter(str(obj._meta.verbose_name_plural) for obj in referring)
                kind = str(instance._meta.verbose_name)
            held = ", ".join(f"{n} {name}" for name, n in sorted(counts.items()))
            raise Conflict(
                f"This {kind} cannot be deleted while {held} refer to it: "
                "delete or move them first (or retire it instead).",
                code="protected",
            ) from None


class CenterViewSet(ProtectedDeleteMixin, viewsets.ModelViewSet):
    """Centres (read: anyone signed in; write: operators)."""

    queryset = Center.objects.all()
    serializer_class = CenterSerializer
    permission_classes = [IsAuthenticated, KeyScopes, IsOperatorOrReadOnly]
    required_scopes = CATALOG_SCOPES
    lookup_field = "code"
    lookup_value_regex = "[^/]+"  # codes may contain dots (e.g. HC-MRI-3.0T)
    filterset_fields = ["field"]


class EquipmentTypeViewSet(ProtectedDeleteMixin, viewsets.ModelViewSet):
    """The demonstration equipment types (read: anyone signed in; write: operators)."""

    serializer_class = EquipmentTypeSerializer
    permission_classes = [IsAuthenticated, KeyScopes, IsOperatorOrReadOnly]
    required_scopes = CATALOG_SCOPES
    lookup_field = "code"
    lookup_value_regex = "[^/]+"  # codes may contain dots (e.g. HC-MRI-3.0T)
    filterset_class = EquipmentTypeFilter

    def get_queryset(self):
        return equipment_type_list().order_by("code")


class PoolViewSet(ProtectedDeleteMixin, viewsets.ModelViewSet):
    """Accelerator pools (read: anyone signed in; write: operators)."""

    serializer_class = PoolSerializer
    permission_classes = [IsAuthenticated, KeyScopes, IsOperatorOrReadOnly]
    required_scopes = CATALOG_SCOPES
    lookup_field = "code"
    lookup_value_regex = "[^/]+"  # codes may contain dots (e.g. HC-MRI-3.0T)
    filterset_class = PoolFilter

    def get_queryset(self):
        return pool_list().order_by("code")
