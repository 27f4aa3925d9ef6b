"""The portal's stable addresses (users share them; tests rely on them)."""

from django.urls import path

from portal.views import (
    accounts,
    bookings,
    calendars,
    catalogue,
    moves,
    operations,
    organization,
    webhooks,
)

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
    path("calendars/", calendars.calendars, name="calendars"),
    path("calendars/new/", calendars.calendar_create, name="calendar-create"),
    path(
        "calendars/<int:feed_id>/regenerate/",
        calendars.calendar_regenerate,
        name="calendar-regenerate",
    ),
    path("calendars/<int:feed_id>/delete/", calendars.calendar_delete, name="calendar-delete"),
    path("organization/webhooks/", webhooks.endpoint_list, name="organization-webhooks"),
    path(
        "organization/webhooks/<int:endpoint_id>/",
        webhooks.endpoint_detail,
        name="organization-webhook",
    ),
    path(
        "organization/webhooks/<int:endpoint_id>/update/",
        webhooks.endpoint_update,
        name="organization-webhook-update",
    ),
    path(
        "organization/webhooks/<int:endpoint_id>/rotate/",
        webhooks.endpoint_rotate,
        name="organization-webhook-rotate",
    ),
    path(
        "organization/webhooks/<int:endpoint_id>/test/",
        webhooks.endpoint_test,
        name="organization-webhook-test",
    ),
    path(
        "organization/webhooks/<int:endpoint_id>/delete/",
        webhooks.endpoint_delete,
        name="organization-webhook-delete",
    ),
    path(
        "organization/webhooks/<int:endpoint_id>/deliveries/<int:delivery_id>/redeliver/",
        webhooks.delivery_redeliver,
        name="organization-webhook-redeliver",
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
