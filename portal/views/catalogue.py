"""Home (search and catalogue) and a resource's page (specs, rules, price, week timeline).

Anyone may browse: the catalogue is public, like GET /api/v1/equipment-types and /pools.
Signed in, prices show the person's organisation discount.
"""

from __future__ import annotations

from typing import cast

from django import forms
from django.http import HttpResponseRedirect
from django.shortcuts import render
from django.utils import timezone
from django.utils.cache import patch_vary_headers
from django.utils.translation import get_language, pgettext_lazy
from django.utils.translation import gettext_lazy as _
from django.views.decorators.http import require_GET

from equipment.choices import Field, Phase
from equipment.selectors import resource_get
from portal.catalogue import (
    FIRST_WEEK,
    LAST_WEEK,
    booking_form_url,
    catalogue_choices,
    catalogue_search,
    resource_page,
)

MAX_QUANTITY = 100_000  # the API's bound on a booking's quantity


class DescribedErrorsForm(forms.Form):
    """Fields with errors point at their message (`<p id="<auto_id>-error" role="alert">`)."""

    def full_clean(self):
        super().full_clean()
        for name in self.errors:
            if name in self.fields:
                self.fields[name].widget.attrs["aria-describedby"] = f"{self[name].auto_id}-error"


class CatalogueFilterForm(DescribedErrorsForm):
    """The home page's filters (a GET form: a search is a shareable address)."""

    q = forms.CharField(
        label=pgettext_lazy("catalogue", "이름이나 코드로 검색"), max_length=100, required=False
    )
    center = forms.ChoiceField(label=_("센터"), required=False)
    field = forms.ChoiceField(label=pgettext_lazy("catalogue", "분야"), required=False)
    phase = forms.TypedChoiceField(label=_("단계"), required=False, coerce=int, empty_value=None)
    accelerator = forms.ChoiceField(
        label=pgettext_lazy("catalogue", "GPU/NPU 모델"), required=False
    )

    def __init__(self, data, *, choices: dict, language: str):
        super().__init__(data)
        every: list = [("", pgettext_lazy("catalogue", "전체"))]
        english = language == "en"
        centers = [
            (code, name_en if english and name_en else name)
            for code, name, name_en in choices["centers"]
        ]
        for name, options in (
            ("center", centers),
            ("field", list(Field.choices)),
            ("phase", list(Phase.choices)),
            ("accelerator", choices["accelerators"]),
        ):
            cast(forms.ChoiceField, self.fields[name]).choices = every + options

    def value(self, name: str):
        """The valid value of a filter, or its empty value when it was missing or wrong."""
        if name in self.errors:
            return None if name == "phase" else ""
        return self.cleaned_data.get(name)


@require_GET
def home(request):
    """`/`: search by name (Korean or English) or code, filter by centre, field, phase and
    accelerator model; cards say what is free tomorrow and the day after. An htmx request (the
    search as you type) gets only the results."""
    form = CatalogueFilterForm(
        request.GET, choices=catalogue_choices(), language=get_language() or "ko"
    )
    form.is_valid()
    result = catalogue_search(
        q=(form.value("q") or "").strip(),
        center=form.value("center") or "",
        field=form.value("field") or "",
        phase=form.value("phase"),
        accelerator=form.value("accelerator") or "",
    )
    context = {"form": form, "result": result, "count": len(result.types) + len(result.pools)}
    template = "portal/_catalogue_results.html" if request.htmx else "portal/home.html"
    response = render(request, template, context, status=400 if form.errors else 200)
    patch_vary_headers(response, ["HX-Request"])
    return response


class WeekForm(DescribedErrorsForm):
    week = forms.DateField(
        label=pgettext_lazy("catalogue", "주"), required=False, input_formats=["%Y-%m-%d"]
    )

    def clean_week(self):
        week = self.cleaned_data.get("week")
        if week is not None and not FIRST_WEEK <= week <= LAST_WEEK:
            raise forms.ValidationError(
                pgettext_lazy("catalogue", "2000년부터 2100년 사이의 날짜를 고르세요.")
            )
        return week


class SpanForm(DescribedErrorsForm):
    """A span chosen on the resource page, sent on to the booking form."""

    start = forms.DateTimeField(
        label=pgettext_lazy("catalogue", "시작"),
        input_formats=["%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M"],
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}, format="%Y-%m-%dT%H:%M"),
    )
    end = forms.DateTimeField(
        label=pgettext_lazy("catalogue", "끝"),
        input_formats=["%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M"],
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}, format="%Y-%m-%dT%H:%M"),
    )
    quantity = forms.IntegerField(
        label=pgettext_lazy("catalogue", "수량"), min_value=1, max_value=MAX_QUANTITY, initial=1
    )

    def clean(self):
        data = super().clean()
        start, end = data.get("start"), data.get("end")
        if start and end and end <= start:
            self.add_error("end", pgettext_lazy("catalogue", "끝은 시작보다 뒤여야 합니다."))
        return data


@require_GET
def resource(request, code: str):
    """`/resources/<code>/?week=YYYY-MM-DD`: specs, rules in words, the hourly price after the
    person's organisation discount, and the week (Monday to Sunday) as a timeline. With
    `start`, `end` and `quantity` (the span form) it sends the person on to the booking form."""
    found = resource_get(code)
    if found is None:
        return render(request, "portal/_catalogue_missing.html", {"code": code}, status=404)

    span = None
    if "start" in request.GET or "end" in request.GET:
        span = SpanForm(request.GET)
        if span.is_valid():
            return HttpResponseRedirect(
                booking_form_url(
                    resource=found,
                    start=span.cleaned_data["start"],
                    end=span.cleaned_data["end"],
                    quantity=span.cleaned_data["quantity"],
                )
            )
    week_form = WeekForm(request.GET)
    week = (week_form.cleaned_data.get("week") if week_form.is_valid() else None) or (
        timezone.localdate()
    )
    # An htmx request (previous or next week) redraws the timeline only.
    context = resource_page(
        resource=found, week=week, user=request.user, timeline_only=bool(request.htmx)
    )
    if span is None:
        first = context["first_bookable"]
        span = SpanForm(
            initial={"quantity": 1}
            if first is None
            else {
                "start": timezone.localtime(first.start),
                "end": timezone.localtime(first.end),
                "quantity": 1,
            }
        )
    context.update(week_form=week_form, span_form=span)
    bad = bool(week_form.errors) or (span.is_bound and bool(span.errors))
    template = "portal/_timeline.html" if request.htmx else "portal/resource.html"
    response = render(request, template, context, status=400 if bad else 200)
    patch_vary_headers(response, ["HX-Request"])
    return response


__all__ = ["home", "resource"]
