"""Korean-first formatting for the portal: won amounts, dates, times and names by language."""

from __future__ import annotations

import datetime as dt

from django import template
from django.utils import timezone, translation

register = template.Library()

_KO_WEEKDAYS = "월화수목금토일"


@register.filter
def won(amount) -> str:
    """12345 → "12,345원" (ko) or "₩12,345" (en); None → "—"."""
    if amount is None or amount == "":
        return "—"
    value = f"{int(round(float(amount))):,}"
    return f"₩{value}" if translation.get_language() == "en" else f"{value}원"


def _local(value):
    if isinstance(value, dt.datetime):
        return timezone.localtime(value) if timezone.is_aware(value) else value
    return value


@register.filter
def kdate(value) -> str:
    """A date as Koreans write it: 2026년 12월 8일 (화); in English: Tue 8 Dec 2026."""
    if value in (None, ""):
        return ""
    value = _local(value)
    day = value.date() if isinstance(value, dt.datetime) else value
    if translation.get_language() == "en":
        return day.strftime("%a %-d %b %Y")
    return f"{day.year}년 {day.month}월 {day.day}일 ({_KO_WEEKDAYS[day.weekday()]})"


@register.filter
def ktime(value) -> str:
    """Facility-local clock time, 24-hour: 14:30."""
    if value in (None, ""):
        return ""
    return _local(value).strftime("%H:%M")


@register.filter
def kdatetime(value) -> str:
    """2026년 12월 8일 (화) 14:30."""
    if value in (None, ""):
        return ""
    return f"{kdate(value)} {ktime(value)}"


@register.simple_tag(takes_context=True)
def name_of(context, obj) -> str:
    """The object's name in the page's language (`name` is Korean, `name_en` English)."""
    if context.get("LANGUAGE_CODE") == "en" and getattr(obj, "name_en", ""):
        return obj.name_en
    return obj.name
