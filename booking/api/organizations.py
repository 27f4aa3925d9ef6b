"""Organisations, their members, API keys and invitations over the API (rules: booking/services/access.py)."""

from __future__ import annotations

from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import PermissionDenied as DRFPermissionDenied
from rest_framework.response import Response

from booking.api.serializers import (
    ApiKeyCreateSerializer,
    ApiKeySerializer,
    InvitationSerializer,
    MemberCreateSerializer,
    MemberSerializer,
    OrganizationSerializer,
)
from booking.models import (
    ApiKey,
    Invitation,
    Membership,
    Organization,
)
from booking.selectors import (
    invitation_list,
    organization_list,
)
from booking.services.access import (
    access_organization_api_keys,
    access_organization_members,
    access_organization_to_edit,
    check_organization_fields,
    is_operator,
)
from booking.services.api_keys import api_key_create, api_key_revoke
from booking.services.organizations import (
    invitation_answer,
    member_add,
    organization_create,
    organization_update,
)
from testbed.api.permissions import ANY_KEY
from testbed.choices import Channel, KeyScope
from testbed.security import no_store


def paginated(name: str, child) -> serializers.Serializer:
    """The schema of a page of `child` items: {count, next, previous, results}."""
    return inline_serializer(
        name,
        {
            "count": serializers.IntegerField(),
            "next": serializers.URLField(allow_null=True),
            "previous": serializers.URLField(allow_null=True),
            "results": child(many=True),
        },
    )


@extend_schema(tags=["organisations"])
class OrganizationViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.CreateModelMixin,
    mixins.UpdateModelMixin,
    viewsets.GenericViewSet,
):
    """Organisations: operators see and create all; members see their own."""

    serializer_class = OrganizationSerializer
    lookup_field = "slug"
    filterset_fields = ["category", "region"]
    # Any key reads its own organisation's profile; members need `members:manage`; creating,
    # editing and API keys are for people.
    required_scopes = {
        "list": ANY_KEY,
        "retrieve": ANY_KEY,
        "members": KeyScope.MEMBERS_MANAGE,
    }

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return Organization.objects.none()
        return organization_list(user=self.request.user, auth=self.request.auth).order_by("name")

    def create(self, request):
        if not is_operator(request.user):
            raise DRFPermissionDenied(
                "Only facility operators register organisations: ask an operator."
            )
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        org = organization_create(
            actor=request.user, channel=Channel.API, **serializer.validated_data
        )
        return Response(self.get_serializer(org).data, status=status.HTTP_201_CREATED)

    def update(self, request, *args, **kwargs):
        partial = kwargs.pop("partial", False)
        org = access_organization_to_edit(actor=request.user, slug=kwargs["slug"])
        # Rights before form: a refused field must not first reveal, by a uniqueness error,
        # whether another organisation holds the value sent.
        check_organization_fields(actor=request.user, organization=org, fields=request.data)
        serializer = self.get_serializer(org, data=request.data, partial=partial)
        serializer.is_valid(raise_exception=True)
        org = organization_update(
            actor=request.user, organization=org, channel=Channel.API, **serializer.validated_data
        )
        return Response(self.get_serializer(org).data)

    @extend_schema(
        methods=["GET"],
        responses=paginated("PaginatedMemberList", MemberSerializer),
        description="Managers (and keys with `members:manage`) list members with their emails.",
    )
    @extend_schema(
        methods=["POST"],
        request=MemberCreateSerializer,
        responses={201: MemberSerializer, 202: InvitationSerializer},
        description="A new username creates the account and adds it (201); an existing member gets "
        "the role (201); any other existing account is invited and joins only when that person "
        "accepts (202).",
    )
    @action(detail=True, methods=["get", "post"])
    def members(self, request, slug=None):
        org = access_organization_members(actor=request.user, slug=slug)
        if request.method == "POST":
            body = MemberCreateSerializer(data=request.data)
            body.is_valid(raise_exception=True)
            added = member_add(
                actor=request.user, organization=org, channel=Channel.API, **body.validated_data
            )
            if isinstance(added, Invitation):
                return Response(InvitationSerializer(added).data, status=status.HTTP_202_ACCEPTED)
            return Response(MemberSerializer(added).data, status=status.HTTP_201_CREATED)
        members = (
            Membership.objects.filter(organization=org)
            .select_related("user")
            .order_by("user__username")
        )
        page = self.paginate_queryset(members)
        return self.get_paginated_response(MemberSerializer(page, many=True).data)

    @extend_schema(
        methods=["GET"],
        responses=paginated("PaginatedApiKeyList", ApiKeySerializer),
    )
    @extend_schema(
        methods=["POST"], request=ApiKeyCreateSerializer, responses={201: ApiKeySerializer}
    )
    @action(detail=True, methods=["get", "post"], url_path="api-keys")
    @no_store  # the new key's secret is in the answer: no cache may keep it
    def api_keys(self, request, slug=None):
        org = access_organization_api_keys(actor=request.user, slug=slug)
        if request.method == "POST":
            body = ApiKeyCreateSerializer(data=request.data)
            body.is_valid(raise_exception=True)
            key, raw = api_key_create(
                actor=request.user, organization=org, channel=Channel.API, **body.validated_data
            )
            data = ApiKeySerializer(key).data
            data["key"] = raw
            return Response(data, status=status.HTTP_201_CREATED)
        keys = org.api_keys.select_related("created_by").order_by("-created_at")
        page = self.paginate_queryset(keys)
        return self.get_paginated_response(ApiKeySerializer(page, many=True).data)

    @extend_schema(request=None, responses=ApiKeySerializer)
    @action(detail=True, methods=["post"], url_path=r"api-keys/(?P<key_id>\d+)/revoke")
    def revoke_api_key(self, request, slug=None, key_id=None):
        org = access_organization_api_keys(actor=request.user, slug=slug)
        key = get_object_or_404(ApiKey, pk=key_id, organization=org)
        return Response(
            ApiKeySerializer(api_key_revoke(actor=request.user, key=key, channel=Channel.API)).data
        )


@extend_schema(tags=["organisations"])
class InvitationViewSet(mixins.ListModelMixin, viewsets.GenericViewSet):
    """Invitations addressed to you: accept to join the organisation, or decline. People only."""

    serializer_class = InvitationSerializer
    lookup_value_regex = r"\d+"  # ids are numbers: anything else is a 404, not int() failing

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return Invitation.objects.none()
        return invitation_list(user=self.request.user).order_by("-created_at", "-pk")

    def _answer(self, request, pk, *, accept: bool):
        invitation = invitation_answer(
            actor=request.user, invitation_id=int(pk), accept=accept, channel=Channel.API
        )
        return Response(InvitationSerializer(invitation).data)

    @extend_schema(request=None, responses=InvitationSerializer)
    @action(detail=True, methods=["post"])
    def accept(self, request, pk=None):
        return self._answer(request, pk, accept=True)

    @extend_schema(request=None, responses=InvitationSerializer)
    @action(detail=True, methods=["post"])
    def decline(self, request, pk=None):
        return self._answer(request, pk, accept=False)
