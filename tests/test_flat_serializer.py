"""FlatSerializer (testbed/api/serializers.py): fields built once per class behave as DRF's own."""

from __future__ import annotations

import threading

import pytest
from django.core.exceptions import ImproperlyConfigured
from rest_framework import serializers

import booking.api.views  # noqa: F401 - registers its FlatSerializers
import testbed.api.token  # noqa: F401
from booking.api.serializers import BookingCreateSerializer
from testbed.api.serializers import FlatSerializer


def _subclasses(cls: type) -> list[type]:
    found = []
    for sub in cls.__subclasses__():
        found += [sub, *_subclasses(sub)]
    return found


@pytest.mark.parametrize("cls", _subclasses(FlatSerializer), ids=lambda c: c.__name__)
def test_its_fields_are_the_ones_drf_would_build(cls):
    flat = cls()
    drf = serializers.Serializer.get_fields(cls())
    assert list(flat.fields) == list(drf)
    for name, field in flat.fields.items():
        assert repr(field) == repr(drf[name])
        assert field.parent is flat and field.field_name == name


def test_each_instance_binds_its_own_fields():
    first, second = BookingCreateSerializer(), BookingCreateSerializer()
    assert first.fields["start"] is not second.fields["start"]
    assert first.fields["start"].parent is first
    assert second.fields["start"].parent is second


def test_instances_validate_independently_across_threads():
    good = {
        "resource": "PSG",
        "start": "2030-01-02T09:00:00+09:00",
        "end": "2030-01-02T10:00:00+09:00",
    }
    bad = {"resource": "x" * 41, "start": "tomorrow", "quantity": 0}
    failures: list[str] = []

    def check(n: int) -> None:
        for i in range(200):
            if (i + n) % 2:
                s = BookingCreateSerializer(data=good)
                if not s.is_valid() or s.validated_data["quantity"] != 1:
                    failures.append(f"good refused: {s.errors}")
            else:
                s = BookingCreateSerializer(data=bad)
                if s.is_valid() or set(s.errors) != {"resource", "start", "end", "quantity"}:
                    failures.append(f"bad answered {s.errors}")

    threads = [threading.Thread(target=check, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert failures == []


def test_a_nested_serializer_is_refused():
    class Window(serializers.Serializer):
        start = serializers.CharField()

    class Nested(FlatSerializer):
        windows = Window(many=True)

    with pytest.raises(ImproperlyConfigured, match="windows"):
        _ = Nested().fields
