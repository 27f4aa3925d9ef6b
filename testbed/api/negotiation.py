"""Content negotiation for every API view: an unknown `?format=` is a 400 naming `format` (not
DRF's bare 404), and an error is JSON problem details even when HTML was asked for."""

from __future__ import annotations

from django.http import Http404
from rest_framework import renderers
from rest_framework.negotiation import DefaultContentNegotiation

from testbed.api.renderers import JSONRenderer


class FormatNegotiation(DefaultContentNegotiation):
    """DRF answers an unknown `?format=` with 404 (as if the object did not exist): say what is
    wrong instead."""

    def select_renderer(self, request, renderers, format_suffix=None):
        try:
            return super().select_renderer(request, renderers, format_suffix)
        except Http404:
            from testbed.api.errors import ProblemError  # errors imports DRF, which imports us

            known = ", ".join(r.format for r in renderers if r.format != "api")
            raise ProblemError(
                f"Unknown format: use one of {known}.", field="format", code="invalid"
            ) from None


class BrowsableAPIRenderer(renderers.BrowsableAPIRenderer):
    """The browsable API for people, but an error stays the problem+json body its header says."""

    def render(self, data, accepted_media_type=None, renderer_context=None):
        response = (renderer_context or {}).get("response")
        if response is not None and response.status_code >= 400:
            return JSONRenderer().render(data)
        return super().render(data, accepted_media_type, renderer_context)
