import django_filters
from django.db.models import Q

from equipment.choices import AcceleratorKind, Field, Phase
from equipment.models import AcceleratorPool, EquipmentType


def _search(queryset, name, value):
    value = value.strip()
    if not value:
        return queryset
    return queryset.filter(
        Q(code__icontains=value)
        | Q(name__icontains=value)
        | Q(name_en__icontains=value)
        | Q(category__icontains=value)
        if queryset.model is EquipmentType
        else Q(code__icontains=value)
        | Q(name__icontains=value)
        | Q(name_en__icontains=value)
        | Q(accelerator__icontains=value)
        | Q(vendor__icontains=value)
    )


class EquipmentTypeFilter(django_filters.FilterSet):
    center = django_filters.CharFilter(field_name="center__code", help_text="Centre code.")
    field = django_filters.ChoiceFilter(choices=Field.choices)
    phase = django_filters.TypedChoiceFilter(choices=Phase.choices, coerce=int)
    search = django_filters.CharFilter(
        method=_search, help_text="Code, Korean or English name, category."
    )
    requires_approval = django_filters.BooleanFilter()

    class Meta:
        model = EquipmentType
        fields = ["center", "field", "phase", "search", "requires_approval"]


class PoolFilter(django_filters.FilterSet):
    center = django_filters.CharFilter(field_name="center__code", help_text="Centre code.")
    kind = django_filters.ChoiceFilter(choices=AcceleratorKind.choices)
    vendor = django_filters.CharFilter(lookup_expr="iexact")
    search = django_filters.CharFilter(
        method=_search, help_text="Code, name, accelerator or vendor."
    )

    class Meta:
        model = AcceleratorPool
        fields = ["center", "kind", "vendor", "search"]
