"""The public feed address: `GET /calendar/tbc_<prefix>_<secret>.ics` answers text/calendar.

No sign-in: the secret in the path is the credential, as calendar services (Google, Outlook,
Apple) cannot sign in. A wrong, regenerated or deleted token, and a feed whose owner has lost the
rights it needs, all answer the same 404: the address reveals nothing. `?lang=en` or `?lang=ko`
chooses the titles' language (else the feed's own). The answer carries an ETag from its bytes,
so a client that sends If-None-Match gets 304 when nothing changed.
"""

from __future__ import annotations

import hashlib
from urllib.parse import urlsplit

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from django.views.decorators.http import require_safe

from integrations.calendars.choices import FeedLanguage
from integrations.calendars.ical import render_feed
from integrations.calendars.selectors import feed_bookings
from integrations.calendars.services import calendar_feed_for_token, calendar_feed_touch

CONTENT_TYPE = "text/calendar; charset=utf-8"
# Short and private: a shared cache must never keep a personal feed; a client may reuse it briefly.
CACHE_CONTROL = "private, max-age=300"
NOT_FOUND = (
    "No calendar feed at this address. It may have been regenerated or deleted: copy the new "
    "address from the calendar subscriptions page (/calendars/).\n"
    "이 주소의 캘린더 피드가 없습니다. 주소가 새로 발급되었거나 삭제되었을 수 있습니다. "
    "캘린더 구독 페이지(/calendars/)에서 새 주소를 복사하세요.\n"
)


def public_base_url(request: HttpRequest) -> str:
    """The portal's address: PUBLIC_URL when set, else the scheme and host this request used."""
    configured = getattr(settings, "TESTBED_PUBLIC_URL", "")
    if configured:
        return configured.rstrip("/")
    return request.build_absolute_uri("/").rstrip("/")


def _text(status: int, message: str) -> HttpResponse:
    response = HttpResponse(message, status=status, content_type="text/plain; charset=utf-8")
    response["Cache-Control"] = "no-store"
    return response


def _etag_matches(request: HttpRequest, etag: str) -> bool:
    sent = request.headers.get("If-None-Match", "")
    candidates = {tag.strip().removeprefix("W/") for tag in sent.split(",")}
    return etag in candidates or "*" in candidates


@require_safe
def calendar_feed(request: HttpRequest, token: str) -> HttpResponse:
    feed = calendar_feed_for_token(token)
    if feed is None:
        return _text(404, NOT_FOUND)
    language = request.GET.get("lang") or feed.language
    if language not in FeedLanguage.values:
        return _text(400, "lang must be ko or en (e.g. ?lang=en). lang은 ko 또는 en입니다.\n")
    base_url = public_base_url(request)
    host = urlsplit(base_url).hostname or "testbed"
    body = render_feed(
        feed,
        feed_bookings(feed, now=timezone.now()),
        language=language,
        base_url=base_url,
        host=host,
    )
    calendar_feed_touch(feed)
    etag = f'"{hashlib.sha256(body).hexdigest()[:32]}"'
    if _etag_matches(request, etag):
        response = HttpResponse(status=304)
    else:
        response = HttpResponse(body, content_type=CONTENT_TYPE)
        response["Content-Disposition"] = 'inline; filename="testbed.ics"'
    response["ETag"] = etag
    response["Cache-Control"] = CACHE_CONTROL
    response["X-Robots-Tag"] = "noindex, nofollow"
    response["Referrer-Policy"] = "no-referrer"
    return response
