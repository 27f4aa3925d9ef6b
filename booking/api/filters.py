import django_filters
from django.db.models import Q

from booking.choices import BookingStatus
from booking.models import Booking
from testbed.api.fields import AwareDateTimeField


class BookingFilter(django_filters.FilterSet):
    status = django_filters.MultipleChoiceFilter(choices=BookingStatus.choices)
    resource = django_filters.CharFilter(
        method="filter_resource", help_text="Equipment type or pool code."
    )
    organization = django_filters.CharFilter(
        field_name="organization__slug", help_text="Organisation slug."
    )
    start = django_filters.CharFilter(
        method="filter_start", help_text="Bookings ending after this moment."
    )
    end = django_filters.CharFilter(
        method="filter_end", help_text="Bookings starting before this moment."
    )

    class Meta:
        model = Booking
        fields = ["status", "resource", "organization", "start", "end"]

    def filter_resource(self, qs, name, value):
        return qs.filter(Q(equipment_type__code=value) | Q(pool__code=value))

    def _moment(self, name, value):
        return AwareDateTimeField().run_validation(value)

    def filter_start(self, qs, name, value):
        try:
            return qs.filter(end__gt=self._moment(name, value))
        except Exception as exc:
            from rest_framework.exceptions import ValidationError

            raise ValidationError({"start": getattr(exc, "detail", [str(exc)])}) from None

    def filter_end(self, qs, name, value):
        try:
            return qs.filter(start__lt=self._moment(name, value))
        except Exception as exc:
            from rest_framework.exceptions import ValidationError

            raise ValidationError({"end": getattr(exc, "detail", [str(exc)])}) from None
