"""Validation of Korean identifiers."""

from __future__ import annotations

import re

from django.core.exceptions import ValidationError
from django.utils.translation import gettext_lazy as _

_BRN_WEIGHTS = (1, 3, 7, 1, 3, 7, 1, 3, 5)


def business_number_normalise(value: str) -> str:
    return re.sub(r"[\s-]", "", value or "")


def business_number_is_valid(value: str) -> bool:
    """사업자등록번호 check digit: weights 1,3,7,1,3,7,1,3,5 plus ⌊9th×5/10⌋, modulo 10."""
    digits = business_number_normalise(value)
    if not re.fullmatch(r"\d{10}", digits):
        return False
    nums = [int(c) for c in digits]
    total = sum(n * w for n, w in zip(nums[:9], _BRN_WEIGHTS, strict=True))
    total += (nums[8] * 5) // 10
    return (10 - total % 10) % 10 == nums[9]


def validate_business_number(value: str) -> None:
    digits = business_number_normalise(value)
    if not re.fullmatch(r"\d{10}", digits):
        raise ValidationError(
            _("A business registration number has 10 digits, written 123-45-67890."), code="invalid"
        )
    if not business_number_is_valid(digits):
        raise ValidationError(
            _(
                "The check digit of this business registration number is wrong: copy it again from the certificate."
            ),
            code="invalid",
        )


def business_number_format(value: str) -> str:
    d = business_number_normalise(value)
    return f"{d[:3]}-{d[3:5]}-{d[5:]}" if len(d) == 10 else value
