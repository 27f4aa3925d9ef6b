"""What the API shows of a calendar feed (never its secret, except once in `url` when made)."""

from __future__ import annotations

from django.conf import settings
from rest_framework import serializers

from integrations.calendars.choices import FeedLanguage, FeedScope
from integrations.calendars.ical import calendar_name
from integrations.calendars.models import CalendarFeed
from integrations.calendars.services import TOKEN_MARK, feed_is_live
from testbed.errors import ServiceError


class CalendarFeedSerializer(serializers.ModelSerializer):
    organization = serializers.SerializerMethodField(
        help_text="The organisation's slug (organisation feeds), else null."
    )
    resource = serializers.SerializerMethodField(
        help_text="The equipment type's or pool's code (resource feeds), else null."
    )
    resource_kind = serializers.SerializerMethodField(help_text="equipment, pool or null.")
    name = serializers.SerializerMethodField(help_text="The calendar's name (X-WR-CALNAME).")
    prefix = serializers.CharField(source="token_prefix", read_only=True)
    address_hint = serializers.SerializerMethodField(
        help_text="The address with its secret left out, to tell feeds apart. The whole address "
        "is shown once (`url` in the answer to create and regenerate)."
    )
    live = serializers.SerializerMethodField(
        help_text="False when the owner no longer has the rights the feed needs (it answers 404)."
    )

    class Meta:
        model = CalendarFeed
        fields = [
            "id",
            "scope",
            "organization",
            "resource",
            "resource_kind",
            "language",
            "name",
            "prefix",
            "address_hint",
            "live",
            "created_at",
            "token_created_at",
            "last_used_at",
        ]
        read_only_fields = fields

    def get_organization(self, feed: CalendarFeed) -> str | None:
        return feed.organization.slug if feed.organization_id else None  # type: ignore[union-attr]

    def get_resource(self, feed: CalendarFeed) -> str | None:
        resource = feed.resource
        return resource.code if resource is not None else None

    def get_resource_kind(self, feed: CalendarFeed) -> str | None:
        if feed.equipment_type_id:
            return "equipment"
        return "pool" if feed.pool_id else None

    def get_name(self, feed: CalendarFeed) -> str:
        return calendar_name(feed, feed.language)

    def get_address_hint(self, feed: CalendarFeed) -> str:
        base = self.context.get("base_url", getattr(settings, "TESTBED_PUBLIC_URL", ""))
        return f"{base}/calendar/{TOKEN_MARK}_{feed.token_prefix}_….ics"

    def get_live(self, feed: CalendarFeed) -> bool:
        return feed_is_live(feed, visible=self.context.get("visible", ()))


class CalendarFeedCreatedSerializer(CalendarFeedSerializer):
    url = serializers.CharField(
        read_only=True,
        help_text="The feed's secret address, shown this once: subscribe to it in your calendar.",
    )
    webcal_url = serializers.CharField(
        read_only=True, help_text="The same address as webcal://, for one-click subscription."
    )

    class Meta(CalendarFeedSerializer.Meta):
        fields = [*CalendarFeedSerializer.Meta.fields, "url", "webcal_url"]
        read_only_fields = fields


class CalendarFeedCreateSerializer(serializers.Serializer):
    scope = serializers.ChoiceField(
        choices=FeedScope.choices,
        help_text="user: your bookings; organization: an organisation's (its members); "
        "resource: every booking of an equipment type or pool (operators).",
    )
    organization = serializers.CharField(
        required=False, allow_blank=True, max_length=60, help_text="Slug, for scope=organization."
    )
    resource = serializers.CharField(
        required=False, allow_blank=True, max_length=40, help_text="Code, for scope=resource."
    )
    language = serializers.ChoiceField(
        choices=FeedLanguage.choices,
        required=False,
        help_text="Titles' language; default: the request's language (Korean unless asked).",
    )


UNCHANGEABLE = {
    "scope": "A feed's scope cannot be changed: make a new feed (POST /api/v1/calendar-feeds) "
    "and delete this one.",
    "organization": "A feed's organisation cannot be changed: make a new feed for the other "
    "organisation and delete this one.",
    "resource": "A feed's resource cannot be changed: make a new feed for the other resource "
    "and delete this one.",
    "url": "A feed's address cannot be set: POST …/regenerate makes a new one (shown once).",
}


class CalendarFeedUpdateSerializer(serializers.Serializer):
    """Partial: only `language` changes; anything else sent is refused, naming the field."""

    language = serializers.ChoiceField(choices=FeedLanguage.choices, required=False)

    def validate(self, attrs):
        sent = self.initial_data if isinstance(self.initial_data, dict) else {}
        for name in sent:
            if name not in self.fields:
                raise ServiceError(
                    UNCHANGEABLE.get(
                        name, f"`{name}` cannot be changed: only `language` (ko or en) can."
                    ),
                    field=name,
                )
        return attrs
