"""testbed.api.renderers.JSONRenderer writes the bytes DRF's JSONRenderer writes (a float may be
spelled otherwise, 0.00001 for 1e-05: the same number)."""

from __future__ import annotations

import datetime as dt
import json
import uuid
import zoneinfo
from decimal import Decimal

from django.utils.translation import gettext_lazy
from hypothesis import given, settings
from hypothesis import strategies as st
from rest_framework import renderers
from rest_framework.utils.serializer_helpers import ReturnDict, ReturnList

from testbed.api.renderers import JSONRenderer

SEOUL = zoneinfo.ZoneInfo("Asia/Seoul")


def both(data, media_type=None, context=None):
    ours = JSONRenderer().render(data, media_type, context)
    drf = renderers.JSONRenderer().render(data, media_type, context)
    return ours, drf


def test_what_the_api_sends_is_written_as_drf_writes_it():
    data = ReturnDict(
        {
            "id": 7,
            "start": dt.datetime(2030, 4, 1, 13, 0, tzinfo=SEOUL),
            "utc": dt.datetime(2030, 4, 1, 4, 0, 0, 123456, tzinfo=dt.UTC),
            "naive": dt.datetime(2030, 4, 1, 4, 0),
            "day": dt.date(2030, 4, 1),
            "at": dt.time(9, 30),
            "took": dt.timedelta(minutes=90),
            "price": Decimal("12500.50"),
            "uuid": uuid.UUID("12345678-1234-5678-1234-567812345678"),
            "label": gettext_lazy("confirmed"),
            "name": '광주 AI 실증센터 \u2028 line \u2029 para "quoted" \\ / \t',
            "list": ReturnList([1, 2.5, True, None, {"nested": ["가", "b"]}], serializer=None),
            "tuple": (1, 2),
            "set_free": frozenset() and None,
            3: "an int key",
            "big": 2**70,
        },
        serializer=None,
    )
    ours, drf = both(data)
    assert ours == drf


def test_an_indent_asked_for_is_honoured():
    ours, drf = both({"a": [1, {"b": "c"}]}, "application/json; indent=4")
    assert ours == drf
    assert b"\n    " in ours


def test_nothing_is_an_empty_body():
    assert both(None) == (b"", b"")


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text()
    | st.datetimes(timezones=st.just(SEOUL) | st.just(dt.UTC) | st.none()),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(), children, max_size=5)
    ),
    max_leaves=30,
)


@settings(max_examples=300, deadline=None)
@given(json_values)
def test_any_json_value_is_written_alike(value):
    ours, drf = both(value)
    if value is not None:  # None is an empty body (above)
        assert json.loads(ours) == json.loads(drf)
    if not _has_float(value):
        assert ours == drf


def _has_float(value) -> bool:
    if isinstance(value, float):
        return True
    if isinstance(value, dict):
        return any(_has_float(v) for v in value.values())
    return isinstance(value, list) and any(_has_float(v) for v in value)
