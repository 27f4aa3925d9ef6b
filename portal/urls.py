"""The portal's stable addresses (users share them; tests rely on them)."""

from django.urls import path

from portal.views import accounts, bookings, catalogue, moves, operations, organization

app_name = "portal"
urlpatterns = [
    path("", catalogue.home, name="home"),
    path("login/", accounts.PortalLoginView.as_view(), name="login"),
    path("logout/", accounts.logout_view, name="logout"),
    path("resources/<str:code>/", catalogue.resource, name="resource"),
    path("book/", bookings.book, name="book"),
    path("bookings/", bookings.booking_list, name="bookings"),
    path("bookings/<int:booking_id>/", bookings.booking_detail, name="booking"),
    path("bookings/<int:booking_id>/status/", bookings.booking_status, name="booking-status"),
    path("bookings/<int:booking_id>/move/", moves.booking_move_view, name="booking-move"),
    path("organization/", organization.dashboard, name="organization"),
    path("organization/members/", organization.member_invite, name="organization-invite"),
    path(
        "organization/members/<int:membership_id>/role/",
        organization.member_role,
        name="organization-member-role",
    ),
    path(
        "organization/members/<int:membership_id>/remove/",
        organization.member_delete,
        name="organization-member-remove",
    ),
    path("organization/api-keys/", organization.api_key_create, name="organization-key-create"),
    path(
        "organization/api-keys/<int:key_id>/revoke/",
        organization.api_key_revoke,
        name="organization-key-revoke",
    ),
    path(
        "organization/invitations/<int:invitation_id>/",
        organization.invitation_answer,
        name="organization-invitation",
    ),
    path("operations/", operations.console, name="operations"),
    path(
        "operations/bookings/<int:booking_id>/approve/",
        operations.approve,
        name="operations-approve",
    ),
    path(
        "operations/bookings/<int:booking_id>/reject/",
        operations.reject,
        name="operations-reject",
    ),
    path(
        "operations/bookings/<int:booking_id>/reclaim/",
        operations.reclaim,
        name="operations-reclaim",
    ),
    path("operations/maintenance/", operations.maintenance, name="operations-maintenance"),
    path("operations/utilisation/", operations.utilisation, name="operations-utilisation"),
]
