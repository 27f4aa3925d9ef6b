"""Request bodies the API will read: JSON nested at most MAX_JSON_DEPTH deep, at most MAX_BODY_BYTES.

A body past either bound is refused before it is parsed into objects, as problem+json: 400
`parse_error` naming `body` for nesting or malformed JSON, 413 `too_large` for size (by the
middleware below, from Content-Length, before any view runs; the parser checks the bytes it
actually read too, for chunked bodies that send no length).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from rest_framework.exceptions import APIException, ParseError
from rest_framework.parsers import JSONParser

MAX_JSON_DEPTH = 32
# Strings (with escapes) are skipped whole, so brackets inside them do not count.
_TOKENS = re.compile(rb'"(?:[^"\\]|\\.)*"|[\[\]{}]', re.DOTALL)


def max_body_bytes() -> int:
    return int(settings.TESTBED_MAX_BODY_BYTES)


def json_depth(raw: bytes) -> int:
    """The deepest nesting of arrays and objects in a JSON text, counted without parsing it."""
    depth = deepest = 0
    for match in _TOKENS.finditer(raw):
        token = match.group()
        if token in (b"[", b"{"):
            depth += 1
            deepest = max(deepest, depth)
        elif token in (b"]", b"}"):
            depth -= 1
    return deepest


class BodyTooLarge(APIException):
    status_code = 413
    default_code = "too_large"
    default_detail = "The request body is too large: send a smaller one (split batches)."


class BoundedJSONParser(JSONParser):
    """DRF's JSON parser, refusing bodies nested deeper than MAX_JSON_DEPTH or over the size limit."""

    def parse(self, stream, media_type=None, parser_context=None):
        limit = max_body_bytes()
        raw = stream.read(limit + 1) if stream is not None else b""
        if len(raw) > limit:
            raise BodyTooLarge(
                f"The request body is over {limit:,} bytes: send a smaller one (split batches)."
            )
        if json_depth(raw) > MAX_JSON_DEPTH:
            raise ParseError(
                f"JSON nested deeper than {MAX_JSON_DEPTH} levels is not accepted: flatten the body."
            )
        encoding = (parser_context or {}).get("encoding", settings.DEFAULT_CHARSET)
        try:
            text = raw.decode(encoding)
            return json.loads(text, parse_constant=_refuse_constant)
        except (ValueError, RecursionError) as exc:
            raise ParseError(f"JSON parse error - {exc}") from None


def _refuse_constant(name: str):
    raise ValueError(f"{name} is not valid JSON: send a number or null")


class BodySizeLimitMiddleware:
    """413 problem+json for an API request whose Content-Length is over the limit, before any
    view or parser reads it (Django's own limit would answer an HTML 400 for form bodies)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.path.startswith("/api/"):
            try:
                length = int(request.META.get("CONTENT_LENGTH") or 0)
            except ValueError:
                length = 0
            limit = max_body_bytes()
            if length > limit:
                from testbed.api.errors import problem_json

                return problem_json(
                    status_code=413,
                    code="too_large",
                    detail=f"The request body is {length:,} bytes, over the {limit:,}-byte limit: "
                    "send a smaller one (split batches).",
                    field="body",
                )
        return self.get_response(request)
