"""Input of the operators' console: parse and bound it; the services decide the rest."""

from __future__ import annotations

import datetime as dt

from django import forms
from django.utils.translation import pgettext_lazy

from booking.services.maintenance import maintenance_target_for
from testbed.api.fields import MAX_MAINTENANCE
from testbed.errors import ServiceError

_C = "operations"


class RejectForm(forms.Form):
    """Why a request is refused. Blank is passed on: the service refuses it naming `reason`."""

    reason = forms.CharField(
        label=pgettext_lazy(_C, "거절 사유"), max_length=500, required=False, strip=True
    )


class MaintenanceForm(forms.Form):
    """A maintenance window: the resource by code (type, pool, unit or node host name), start, end
    (facility time, Asia/Seoul) and reason. `action` is `preview` (read only) or `save`."""

    resource = forms.CharField(
        label=pgettext_lazy(_C, "대상 (장비 유형·풀·장비·노드 코드)"), max_length=120
    )
    start = forms.DateTimeField(label=pgettext_lazy(_C, "시작"))
    end = forms.DateTimeField(label=pgettext_lazy(_C, "종료"))
    reason = forms.CharField(
        label=pgettext_lazy(_C, "사유 (예약자에게 보임)"), max_length=300, required=False
    )
    action = forms.ChoiceField(
        choices=[("preview", "preview"), ("save", "save")], required=False, initial="preview"
    )

    def clean_resource(self):
        code = self.cleaned_data["resource"].strip()
        try:
            self.target = maintenance_target_for(code)
        except ServiceError as error:
            raise forms.ValidationError(error.message, code=error.code) from error
        return code

    def clean(self):
        data = super().clean()
        start, end = data.get("start"), data.get("end")
        if start and end:
            if end <= start:
                self.add_error("end", pgettext_lazy(_C, "종료는 시작보다 뒤여야 합니다."))
            elif end - start > MAX_MAINTENANCE:
                self.add_error(
                    "end",
                    pgettext_lazy(
                        _C, "점검 한 건은 최대 366일입니다. 여러 건으로 나누어 만드세요."
                    ),
                )
        return data


class UtilisationForm(forms.Form):
    """The heatmap's period: the week (Monday to Sunday) of `week`, or the last 14 days."""

    week = forms.DateField(label=pgettext_lazy(_C, "주 선택"), required=False)

    def clean_week(self):
        day = self.cleaned_data.get("week")
        if day is None:
            return None
        if not (dt.date(2000, 1, 1) <= day <= dt.date(2100, 12, 31)):
            raise forms.ValidationError(
                pgettext_lazy(_C, "2000년부터 2100년 사이의 날을 고르세요.")
            )
        return day - dt.timedelta(days=day.weekday())
