"""Calendar feeds over the API: list yours, make one, regenerate its address, change its
language, delete it. People only: an API key is refused (feeds are a person's, and a key's
service account has no calendar), and nobody reaches another person's feeds here."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from integrations.calendars.api.serializers import (
    CalendarFeedCreatedSerializer,
    CalendarFeedCreateSerializer,
    CalendarFeedSerializer,
    CalendarFeedUpdateSerializer,
)
from integrations.calendars.choices import FeedLanguage
from integrations.calendars.models import CalendarFeed
from integrations.calendars.services import (
    access_calendar_feed,
    calendar_feed_create,
    calendar_feed_delete,
    calendar_feed_regenerate,
    calendar_feed_update,
    feed_path,
    owner_visible_organizations,
)
from integrations.calendars.views import public_base_url
from testbed.choices import Channel
from testbed.security import NoStoreMixin


def default_language(request) -> str:
    language = getattr(request, "LANGUAGE_CODE", "") or ""
    return language if language in FeedLanguage.values else FeedLanguage.KO


@extend_schema(tags=["calendar feeds"])
class CalendarFeedViewSet(
    NoStoreMixin,
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    viewsets.GenericViewSet,
):
    """Your calendar feeds (iCal subscription addresses). The secret address is in the answer
    to create and regenerate only; regenerate makes a new one and revokes the old at once."""

    serializer_class = CalendarFeedSerializer
    lookup_value_regex = r"\d+"
    # No `required_scopes`: closed to every API key (testbed.api.permissions.KeyScopes).
    key_refusal = "API keys cannot manage calendar feeds: a person makes their own, signed in."

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return CalendarFeed.objects.none()
        return (
            CalendarFeed.objects.filter(owner_id=self.request.user.pk)
            .select_related("owner", "organization", "equipment_type", "pool")
            .order_by("pk")
        )

    def get_serializer_context(self):
        context = super().get_serializer_context()
        if getattr(self, "swagger_fake_view", False):
            return context
        context["base_url"] = public_base_url(self.request)
        context["visible"] = owner_visible_organizations(self.request.user)
        return context

    def get_object(self):
        return access_calendar_feed(actor=self.request.user, feed_id=int(self.kwargs["pk"]))

    def _created(self, feed: CalendarFeed, raw: str, *, status_code: int) -> Response:
        data = dict(self.get_serializer(feed).data)
        url = public_base_url(self.request) + feed_path(raw)
        data["url"] = url
        data["webcal_url"] = "webcal://" + url.split("://", 1)[-1]
        return Response(data, status=status_code)

    @extend_schema(
        request=CalendarFeedCreateSerializer, responses={201: CalendarFeedCreatedSerializer}
    )
    def create(self, request):
        body = CalendarFeedCreateSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        data = body.validated_data
        feed, raw = calendar_feed_create(
            actor=request.user,
            scope=data["scope"],
            organization=data.get("organization") or None,
            resource=data.get("resource") or None,
            language=data.get("language") or default_language(request),
            channel=Channel.API,
        )
        return self._created(feed, raw, status_code=status.HTTP_201_CREATED)

    @extend_schema(request=CalendarFeedUpdateSerializer, responses=CalendarFeedSerializer)
    def partial_update(self, request, pk=None):
        feed = self.get_object()
        body = CalendarFeedUpdateSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        if "language" in body.validated_data:
            feed = calendar_feed_update(
                actor=request.user,
                feed=feed,
                language=body.validated_data["language"],
                channel=Channel.API,
            )
        return Response(self.get_serializer(feed).data)

    @extend_schema(responses={204: None})
    def destroy(self, request, pk=None):
        calendar_feed_delete(actor=request.user, feed=self.get_object(), channel=Channel.API)
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(request=None, responses=CalendarFeedCreatedSerializer)
    @action(detail=True, methods=["post"])
    def regenerate(self, request, pk=None):
        feed, raw = calendar_feed_regenerate(
            actor=request.user, feed=self.get_object(), channel=Channel.API
        )
        return self._created(feed, raw, status_code=status.HTTP_200_OK)
