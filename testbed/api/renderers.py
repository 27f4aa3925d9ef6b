"""The API's JSON renderer: DRF's JSONRenderer's text, written by orjson.

DRF renders JSON with the standard library's encoder in Python; orjson does it in native code,
several times faster, which matters for big answers (a month of availability is ~300 kB). The
text is the same as DRF's (compact, UTF-8 unescaped, datetimes as DRF writes them, ending in Z
for UTC): everything orjson does not write exactly as DRF would goes through DRF's own encoder
(`default`), and anything orjson refuses (integers over 64 bits, …) or an `indent` asked for in
the Accept header is rendered by DRF itself. tests/test_renderers.py compares the two.
"""

from __future__ import annotations

import orjson
from rest_framework import renderers
from rest_framework.settings import api_settings
from rest_framework.utils.encoders import JSONEncoder

_ENCODER = JSONEncoder()
# Datetimes go to DRF's encoder (it writes UTC as Z); dict keys that are not strings are written
# as str(key), as the standard library does. One difference is left: a NaN or infinite float is
# written null, where DRF's strict encoder would fail the response (the API has no float that
# can be either: amounts are whole won, quantities integers).
_OPTIONS = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_NON_STR_KEYS
# DRF escapes these two line terminators so that its JSON is also valid JavaScript.
_SEPARATORS = (("\u2028".encode(), b"\\u2028"), ("\u2029".encode(), b"\\u2029"))


class JSONRenderer(renderers.JSONRenderer):
    """rest_framework.renderers.JSONRenderer, faster (see the module's docstring)."""

    def render(self, data, accepted_media_type=None, renderer_context=None):
        if data is None:
            return b""
        context = renderer_context or {}
        plain = (
            self.get_indent(accepted_media_type or "", context) is None
            and self.ensure_ascii is False
            and api_settings.COMPACT_JSON
            and self.encoder_class is JSONEncoder
        )
        if plain:
            try:
                text = orjson.dumps(data, default=_ENCODER.default, option=_OPTIONS)
            except (orjson.JSONEncodeError, TypeError):
                pass  # DRF says what is wrong, in its words
            else:
                for raw, escaped in _SEPARATORS:
                    if raw in text:
                        text = text.replace(raw, escaped)
                return text
        return super().render(data, accepted_media_type, renderer_context)
