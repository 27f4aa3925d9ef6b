"""Query filters of the bookings list; moments are bounded like every datetime the API accepts."""

import django_filters
from django.db.models import Q
from rest_framework.exceptions import ValidationError

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
        method="filter_start",
        help_text="Bookings ending after this moment (ISO 8601 with an offset).",
    )
    end = django_filters.CharFilter(
        method="filter_end",
        help_text="Bookings starting before this moment (ISO 8601 with an offset).",
    )

    class Meta:
        model = Booking
        fields = ["status", "resource", "organization", "start", "end"]

    def filter_resource(self, qs, name, value):
        return qs.filter(Q(equipment_type__code=value) | Q(pool__code=value))

    def _moment(self, name, value):
        try:
            return AwareDateTimeField().run_validation(value)
        except ValidationError as exc:
            raise ValidationError({name: exc.detail}) from None

    def filter_start(self, qs, name, value):
        return qs.filter(end__gt=self._moment(name, value))

    def filter_end(self, qs, name, value):
        return qs.filter(start__lt=self._moment(name, value))


def check_organization_filter(request) -> None:
    """`?organization=` naming an organisation the caller cannot see is refused (404), never
    silently answered with nothing."""
    from booking.services.access import access_organization

    slug = request.query_params.get("organization")
    if slug:
        access_organization(actor=request.user, slug=slug)
