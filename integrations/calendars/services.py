"""Calendar feeds: make, regenerate and delete a feed; find the feed a secret address names.

Rights follow booking/services/access.py exactly, at creation and again on every fetch:
- a personal feed lists the bookings the owner made in organisations they still belong to
  (operators: all their own bookings);
- an organisation feed: anyone who may see the organisation's bookings
  (`check_can_see_booking`: its members and managers, and operators);
- a resource feed (every booking of one equipment type or pool, all organisations): operators.
Feeds belong to people: an API key never makes one (its service account is nobody's calendar),
and a deactivated owner, a lost membership or lost operator rights make the address answer 404.

The token is `tbc_<prefix>_<secret>` with `secrets.token_urlsafe(32)` as the secret. Only the
prefix (to find the row) and a SHA-256 of the whole token are stored: the address is shown once,
and a lost or leaked one is regenerated, which revokes the old address at once.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets

from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from booking.services.access import (
    access_organization,
    api_key_of,
    is_operator,
    role_in,
    visible_organization_ids,
)
from booking.services.resources import resource_for_code
from equipment.models import EquipmentType
from integrations.calendars.choices import FeedLanguage, FeedScope
from integrations.calendars.models import CalendarFeed
from testbed.audit import audit_record
from testbed.errors import Conflict, NotFound, PermissionDenied, ServiceError

TOKEN_MARK = "tbc"  # noqa: S105 (the tokens' visible mark, not a secret)
# Writing `last_used_at` at most this often: calendar services poll, and the owner only needs to
# know roughly when the address was last fetched.
LAST_USED_RESOLUTION = dt.timedelta(minutes=10)


def _hash(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


def _new_token() -> tuple[str, str]:
    """(prefix, whole token). The prefix is 10 hex digits: unique by a constraint, and random."""
    prefix = secrets.token_hex(5)
    return prefix, f"{TOKEN_MARK}_{prefix}_{secrets.token_urlsafe(32)}"


def feed_path(raw_token: str) -> str:
    """The path of a feed's address (the caller makes it absolute)."""
    return f"/calendar/{raw_token}.ics"


def _check_person(actor) -> None:
    if api_key_of(actor) is not None:
        raise PermissionDenied(
            "Calendar feeds belong to people: sign in as yourself to make or change one."
        )
    if not (actor and actor.is_authenticated and actor.is_active):
        raise PermissionDenied("Sign in to manage calendar feeds.")


def check_language(language: str) -> str:
    if language not in FeedLanguage.values:
        raise ServiceError(
            f"Language must be one of {', '.join(FeedLanguage.values)} (got {language!r}).",
            field="language",
        )
    return language


def _target(
    *, actor, scope: str, organization: str | None, resource: str | None
) -> dict[str, object]:
    """The feed's target fields, once the actor's right to follow it is checked."""
    if scope == FeedScope.USER:
        if organization or resource:
            raise ServiceError(
                "A personal feed lists your own bookings: leave `organization` and `resource` out.",
                field="organization" if organization else "resource",
            )
        return {}
    if scope == FeedScope.ORGANIZATION:
        if resource:
            raise ServiceError(
                "An organisation feed names the organisation only: leave `resource` out.",
                field="resource",
            )
        if not organization:
            raise ServiceError(
                "Name the organisation (its slug) whose bookings the feed lists.",
                field="organization",
            )
        # Members see their organisation's bookings (check_can_see_booking): they may follow them.
        return {"organization": access_organization(actor=actor, slug=organization)}
    if scope == FeedScope.RESOURCE:
        if organization:
            raise ServiceError(
                "A resource feed lists every organisation's bookings of one resource: leave "
                "`organization` out.",
                field="organization",
            )
        if not is_operator(actor):
            raise PermissionDenied(
                "Only facility operators follow every booking of a resource: ask for a personal "
                "or organisation feed instead.",
                field="scope",
            )
        if not resource:
            raise ServiceError(
                "Name the equipment type or pool (its code) whose bookings the feed lists.",
                field="resource",
            )
        found = resource_for_code(resource)
        if isinstance(found, EquipmentType):
            return {"equipment_type": found}
        return {"pool": found}
    raise ServiceError(
        f"Scope must be one of {', '.join(FeedScope.values)} (got {scope!r}).", field="scope"
    )


def calendar_feed_create(
    *,
    actor,
    scope: str,
    organization: str | None = None,
    resource: str | None = None,
    language: str = FeedLanguage.KO,
    channel: str,
) -> tuple[CalendarFeed, str]:
    """A new feed and its secret token (shown once). One feed per person and target: a second
    is refused (409); regenerate the first to get a new address."""
    _check_person(actor)
    check_language(language)
    target = _target(actor=actor, scope=scope, organization=organization, resource=resource)
    prefix, raw = _new_token()
    try:
        with transaction.atomic():
            feed = CalendarFeed.objects.create(
                owner=actor,
                scope=scope,
                language=language,
                token_prefix=prefix,
                token_hash=_hash(raw),
                **target,
            )
            audit_record(
                actor=actor,
                channel=channel,
                action="calendar_feed.create",
                obj=feed,
                data={"scope": scope, "target": feed.target_code, "prefix": prefix},
            )
    except IntegrityError:
        raise Conflict(
            "You already have a calendar feed of this: regenerate it to get a new address "
            "(the old one stops working).",
            field="scope",
        ) from None
    return feed, raw


def access_calendar_feed(*, actor, feed_id: int) -> CalendarFeed:
    """One of the actor's own feeds. Anyone else's, an operator's included, does not exist here:
    operators revoke others' feeds in the admin."""
    _check_person(actor)
    feed = (
        CalendarFeed.objects.select_related("organization", "equipment_type", "pool")
        .filter(pk=feed_id, owner_id=actor.pk)
        .first()
    )
    if feed is None:
        raise NotFound("You have no calendar feed with this id.")
    return feed


def calendar_feed_regenerate(
    *, actor, feed: CalendarFeed, channel: str
) -> tuple[CalendarFeed, str]:
    """A new secret for the feed: the old address answers 404 from this commit on."""
    prefix, raw = _new_token()
    old_prefix = feed.token_prefix
    with transaction.atomic():
        feed.token_prefix = prefix
        feed.token_hash = _hash(raw)
        feed.token_created_at = timezone.now()
        feed.last_used_at = None
        feed.save(update_fields=["token_prefix", "token_hash", "token_created_at", "last_used_at"])
        audit_record(
            actor=actor,
            channel=channel,
            action="calendar_feed.regenerate",
            obj=feed,
            data={"old_prefix": old_prefix, "prefix": prefix},
        )
    return feed, raw


def calendar_feed_update(*, actor, feed: CalendarFeed, language: str, channel: str) -> CalendarFeed:
    """Change the default language of the feed's titles (the address stays)."""
    check_language(language)
    if feed.language != language:
        with transaction.atomic():
            previous = feed.language
            feed.language = language
            feed.save(update_fields=["language"])
            audit_record(
                actor=actor,
                channel=channel,
                action="calendar_feed.update",
                obj=feed,
                from_state=previous,
                to_state=language,
            )
    return feed


def calendar_feed_delete(*, actor, feed: CalendarFeed, channel: str) -> None:
    with transaction.atomic():
        audit_record(
            actor=actor,
            channel=channel,
            action="calendar_feed.delete",
            obj=feed,
            data={"scope": feed.scope, "target": feed.target_code, "prefix": feed.token_prefix},
        )
        feed.delete()


# --- the public address ---------------------------------------------------------------------------


def _split(raw_token: str) -> str | None:
    parts = raw_token.split("_", 2)
    if len(parts) != 3 or parts[0] != TOKEN_MARK or not parts[1] or not parts[2]:
        return None
    return parts[1]


def owner_may_follow(feed: CalendarFeed) -> bool:
    """Whether the feed's owner still has the rights its scope needs (one query at most)."""
    owner = feed.owner
    if not owner.is_active or api_key_of(owner) is not None:
        return False
    if feed.scope == FeedScope.USER:
        return True  # the booking query keeps only organisations the owner still belongs to
    if feed.scope == FeedScope.RESOURCE:
        return is_operator(owner)
    organization = feed.organization
    return organization is not None and (
        is_operator(owner) or role_in(owner, organization) is not None
    )


def feed_is_live(feed: CalendarFeed, *, visible) -> bool:
    """owner_may_follow without a query per feed, for listing one person's feeds: `visible` is
    `visible_organization_ids(owner)` evaluated once (None for operators)."""
    owner = feed.owner
    if not owner.is_active:
        return False
    if feed.scope == FeedScope.USER:
        return True
    if feed.scope == FeedScope.RESOURCE:
        return is_operator(owner)
    return visible is None or feed.organization_id in visible


def owner_visible_organizations(owner) -> list[int] | None:
    """The organisations whose bookings the owner sees (None: all), as a list."""
    visible = visible_organization_ids(owner)
    if visible is None:
        return None
    return [row["organization_id"] if isinstance(row, dict) else row for row in visible]


def calendar_feed_for_token(raw_token: str) -> CalendarFeed | None:
    """The feed a secret address names, if the token is right and its owner may still follow it;
    None otherwise (the caller answers 404 whatever the reason: nothing about the feed leaks)."""
    prefix = _split(raw_token)
    if prefix is None:
        return None
    feed = (
        CalendarFeed.objects.select_related(
            "owner", "organization", "equipment_type__center", "pool__center"
        )
        .filter(token_prefix=prefix)
        .first()
    )
    if feed is None or not secrets.compare_digest(feed.token_hash, _hash(raw_token)):
        return None
    if not owner_may_follow(feed):
        return None
    return feed


def calendar_feed_touch(feed: CalendarFeed) -> None:
    """Record that the address was fetched (one UPDATE, skipped within LAST_USED_RESOLUTION)."""
    now = timezone.now()
    CalendarFeed.objects.filter(pk=feed.pk).filter(
        Q(last_used_at__isnull=True) | Q(last_used_at__lt=now - LAST_USED_RESOLUTION)
    ).update(last_used_at=now)
