from __future__ import annotations

from rest_framework import viewsets

from equipment.api.filters import EquipmentTypeFilter, PoolFilter
from equipment.api.serializers import CenterSerializer, EquipmentTypeSerializer, PoolSerializer
from equipment.models import Center
from equipment.selectors import equipment_type_list, pool_list
from testbed.api.permissions import IsOperatorOrReadOnly


class CenterViewSet(viewsets.ModelViewSet):
    """Centres (read: anyone signed in; write: operators)."""

    queryset = Center.objects.all()
    serializer_class = CenterSerializer
    permission_classes = [IsOperatorOrReadOnly]
    lookup_field = "code"
    lookup_value_regex = "[^/]+"  # codes may contain dots (e.g. HC-MRI-3.0T)
    filterset_fields = ["field"]


class EquipmentTypeViewSet(viewsets.ModelViewSet):
    """The demonstration equipment types (read: anyone signed in; write: operators)."""

    serializer_class = EquipmentTypeSerializer
    permission_classes = [IsOperatorOrReadOnly]
    lookup_field = "code"
    lookup_value_regex = "[^/]+"  # codes may contain dots (e.g. HC-MRI-3.0T)
    filterset_class = EquipmentTypeFilter

    def get_queryset(self):
        return equipment_type_list().order_by("code")


class PoolViewSet(viewsets.ModelViewSet):
    """Accelerator pools (read: anyone signed in; write: operators)."""

    serializer_class = PoolSerializer
    permission_classes = [IsOperatorOrReadOnly]
    lookup_field = "code"
    lookup_value_regex = "[^/]+"  # codes may contain dots (e.g. HC-MRI-3.0T)
    filterset_class = PoolFilter

    def get_queryset(self):
        return pool_list().order_by("code")
