"""Serializer base classes shared by every app's API: flat input serializers built once per class.

DRF builds a serializer's fields for every instance by deep-copying each declared field, which
re-runs the field's __init__ and copies its lazily translated messages and validators: for the
seven fields of `POST /api/v1/bookings` that was an eighth of the web process's CPU per booking.
`FlatSerializer` deep-copies them once per class and gives each instance shallow copies, which
it binds as usual. That is only sound for fields that keep no state of their own between
requests: plain fields, not nested serializers, and fields that do not depend on the request
(a serializer whose get_fields looks at its context must not use it); the class refuses nested
serializers when it first builds its fields.
"""

from __future__ import annotations

import copy

from django.core.exceptions import ImproperlyConfigured
from rest_framework import serializers


class FlatSerializer(serializers.Serializer):
    """A serializers.Serializer of plain fields whose declared fields are copied deeply once per
    class, not once per instance (see the module's docstring)."""

    def get_fields(self) -> dict[str, serializers.Field]:
        cls = type(self)
        prototypes = cls.__dict__.get("_prototype_fields")
        if prototypes is None:
            prototypes = super().get_fields()
            nested = [
                name for name, f in prototypes.items() if isinstance(f, serializers.BaseSerializer)
            ]
            if nested:
                raise ImproperlyConfigured(
                    f"{cls.__name__}: nested serializers ({', '.join(nested)}) keep state per "
                    "instance; derive it from serializers.Serializer, not FlatSerializer"
                )
            cls._prototype_fields = prototypes  # type: ignore[attr-defined]
        return {name: copy.copy(field) for name, field in prototypes.items()}
