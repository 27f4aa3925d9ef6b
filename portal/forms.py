"""Forms of the booking pages: they parse and bound what a person types; the services decide."""

from __future__ import annotations

import datetime as dt

from django import forms
from django.utils import timezone
from django.utils.functional import Promise
from django.utils.translation import gettext_lazy as _

from booking.choices import BookingStatus

StrOrPromise = str | Promise
LOCAL_INPUT = "%Y-%m-%dT%H:%M"  # what <input type=datetime-local> sends and shows
MAX_QUANTITY = 100_000  # as the API bounds it

# Korean first: the statuses as the portal names them (the model's labels are bilingual).
STATUS_LABELS: dict[str, StrOrPromise] = {
    BookingStatus.PENDING: _("배정 중"),
    BookingStatus.AWAITING_APPROVAL: _("승인 대기"),
    BookingStatus.CONFIRMED: _("확정"),
    BookingStatus.REJECTED: _("거절"),
    BookingStatus.ACTIVE: _("사용 중"),
    BookingStatus.COMPLETED: _("완료"),
    BookingStatus.CANCELLED: _("취소"),
    BookingStatus.NO_SHOW: _("미사용(노쇼)"),
}


def local_input(value: dt.datetime | None) -> str:
    """An aware moment as a datetime-local value in the facility's zone (Asia/Seoul)."""
    if value is None:
        return ""
    return timezone.localtime(value).strftime(LOCAL_INPUT)


class LocalDateTimeField(forms.DateTimeField):
    """A datetime-local value (facility time, made aware in Asia/Seoul) or an ISO 8601 moment
    with an offset, as booking addresses carry (`start=2026-12-08T10:00:00+09:00`)."""

    def prepare_value(self, value):
        if isinstance(value, dt.datetime):
            return local_input(value if timezone.is_aware(value) else timezone.make_aware(value))
        return value


class BookingForm(forms.Form):
    """`/book/`: resource, start, end, quantity, purpose, and the organisation when the person
    belongs to several (one organisation is implied)."""

    organization = forms.ChoiceField(label=_("기관"), required=False)
    resource = forms.CharField(label=_("장비 또는 풀 코드"), max_length=64)
    start = LocalDateTimeField(label=_("시작"))
    end = LocalDateTimeField(label=_("종료"))
    quantity = forms.IntegerField(label=_("수량"), min_value=1, max_value=MAX_QUANTITY, initial=1)
    purpose = forms.CharField(label=_("사용 목적"), max_length=500, required=False)

    def __init__(self, *args, organizations=(), **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.organizations = list(organizations)
        organization = self.fields["organization"]
        assert isinstance(organization, forms.ChoiceField)
        organization.choices = [("", "—")] + [(org.slug, org.name) for org in self.organizations]

    @property
    def chooses_organization(self) -> bool:
        """Several organisations: the person picks one (a select); one: it is implied."""
        return len(self.organizations) > 1

    def clean_resource(self) -> str:
        return self.cleaned_data["resource"].strip()


class CancelForm(forms.Form):
    reason = forms.CharField(label=_("취소 사유"), max_length=500)


class BookingFilterForm(forms.Form):
    """`/bookings/` filters; every one optional, a bad value is named and ignored."""

    scope = forms.ChoiceField(
        label=_("범위"),
        required=False,
        choices=[("mine", _("내 예약")), ("organization", _("우리 기관 전체"))],
    )
    status = forms.ChoiceField(
        label=_("상태"), required=False, choices=[("", _("전체")), *STATUS_LABELS.items()]
    )
    resource = forms.CharField(label=_("장비 또는 풀 코드"), required=False, max_length=64)
    date_from = forms.DateField(label=_("시작일"), required=False)
    date_to = forms.DateField(label=_("종료일"), required=False)

    def clean(self):
        data = super().clean()
        start, end = data.get("date_from"), data.get("date_to")
        if start and end and end < start:
            self.add_error("date_to", _("종료일은 시작일과 같거나 그 뒤여야 합니다."))
        return data
