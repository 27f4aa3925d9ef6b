"""Moving a booking from the portal: /bookings/<id>/move/ (Django test client)."""

from __future__ import annotations

import pytest
import time_machine
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from booking.models import Booking
from booking.services.allocation import booking_allocate
from booking.services.requests import booking_request
from testbed.models import AuditEntry
from tests.factories import UserFactory, add_member, aware, make_pool

pytestmark = pytest.mark.django_db

NOW = aware(2026, 12, 1, 9, 0)


@pytest.fixture(autouse=True)
def frozen_now():
    with time_machine.travel(NOW, tick=False):
        yield


@pytest.fixture
def pool(db):
    return make_pool(code="H100-M", nodes=1, per_node=2, hourly_rate=10000)


@pytest.fixture
def booking(pool, org, member):
    made = booking_request(
        actor=member,
        organization=org,
        resource_code=pool.code,
        quantity=2,
        start=aware(2026, 12, 8, 10),
        end=aware(2026, 12, 8, 12),
        purpose="학습",
    )
    booking_allocate(booking_id=made.pk)
    made.refresh_from_db()
    assert made.status == "confirmed"
    return made


def browser(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def url(booking) -> str:
    return reverse("portal:booking-move", args=[booking.pk])


def test_the_page_shows_the_form_prefilled_in_korean(booking, member):
    response = browser(member).get(url(booking))
    assert response.status_code == 200
    html = response.content.decode()
    assert "다른 시간으로 옮기기" in html
    assert 'value="2026-12-08T10:00"' in html and 'value="2026-12-08T12:00"' in html
    assert '<label for="id_move_start">' in html and 'id="id_move_start"' in html


def test_it_moves_and_sends_the_person_to_the_new_booking(booking, member):
    response = browser(member).post(
        url(booking), {"start": "2026-12-08T11:00", "end": "2026-12-08T13:00"}
    )
    new = Booking.objects.get(replaces=booking)
    assert response.status_code == 302
    assert response["Location"] == reverse("portal:booking", args=[new.pk])
    assert new.status == "pending" and new.channel == "web"
    assert new.start == aware(2026, 12, 8, 11) and new.end == aware(2026, 12, 8, 13)
    booking.refresh_from_db()
    assert booking.status == "confirmed"
    assert AuditEntry.objects.filter(action="booking.move_request", channel="web").exists()
    booking_allocate(booking_id=new.pk)
    booking.refresh_from_db()
    assert booking.status == "cancelled"


def test_htmx_is_told_where_to_go(booking, member):
    response = browser(member).post(
        url(booking),
        {"start": "2026-12-09T10:00", "end": "2026-12-09T12:00"},
        HTTP_HX_REQUEST="true",
    )
    new = Booking.objects.get(replaces=booking)
    assert response.status_code == 200
    assert response["HX-Redirect"] == reverse("portal:booking", args=[new.pk])


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"start": "", "end": "2026-12-09T12:00"}, "start"),
        ({"start": "2026-12-09T12:00", "end": "2026-12-09T10:00"}, "end"),
        ({"start": "2026-12-08T10:00", "end": "2026-12-08T12:00"}, "start"),  # the same window
        ({"start": "2026-11-30T10:00", "end": "2026-11-30T12:00"}, "start"),  # in the past
    ],
)
def test_bad_input_names_the_field_and_changes_nothing(booking, member, data, field):
    before = Booking.objects.count(), AuditEntry.objects.count()
    response = browser(member).post(url(booking), data)
    assert response.status_code == 400
    html = response.content.decode()
    assert f'id="id_move_{field}"' in html
    assert 'aria-invalid="true"' in html and 'role="alert"' in html
    assert f'<div id="move-err-{field}"><p class="error" role="alert">' in html
    assert (Booking.objects.count(), AuditEntry.objects.count()) == before


def test_htmx_gets_the_form_back_with_the_error(booking, member):
    response = browser(member).post(
        url(booking),
        {"start": "2026-12-09T12:00", "end": "2026-12-09T10:00"},
        HTTP_HX_REQUEST="true",
    )
    assert response.status_code == 200
    html = response.content.decode()
    assert html.lstrip().startswith("<form") and "<html" not in html
    assert '<div id="move-err-end"><p class="error" role="alert">' in html


def test_a_second_move_is_refused_with_409(booking, member):
    client = browser(member)
    client.post(url(booking), {"start": "2026-12-09T10:00", "end": "2026-12-09T12:00"})
    response = client.post(url(booking), {"start": "2026-12-10T10:00", "end": "2026-12-10T12:00"})
    assert response.status_code == 409
    assert Booking.objects.filter(replaces=booking).count() == 1
    page = client.get(url(booking)).content.decode()
    assert "이미 옮기는 중" in page


def test_another_organisation_gets_404(booking, outsider):
    client = browser(outsider)
    assert client.get(url(booking)).status_code == 404
    assert (
        client.post(
            url(booking), {"start": "2026-12-09T10:00", "end": "2026-12-09T12:00"}
        ).status_code
        == 404
    )
    assert not Booking.objects.filter(replaces=booking).exists()


def test_a_colleague_who_did_not_book_gets_403(booking, org):
    colleague = UserFactory(username="colleague")
    add_member(org, colleague, "member")
    response = browser(colleague).post(
        url(booking), {"start": "2026-12-09T10:00", "end": "2026-12-09T12:00"}
    )
    assert response.status_code == 403
    assert not Booking.objects.filter(replaces=booking).exists()


def test_a_manager_may_move_and_the_booking_stays_the_members(booking, manager, member):
    response = browser(manager).post(
        url(booking), {"start": "2026-12-09T10:00", "end": "2026-12-09T12:00"}
    )
    assert response.status_code == 302
    assert Booking.objects.get(replaces=booking).user == member


def test_anonymous_people_are_sent_to_sign_in(booking):
    response = Client().get(url(booking))
    assert response.status_code == 302 and response["Location"].startswith("/login/")


def test_the_page_is_a_handful_of_queries(booking, member):
    client = browser(member)
    client.get(url(booking))
    with CaptureQueriesContext(connection) as queries:
        assert client.get(url(booking)).status_code == 200
    assert len(queries) <= 8, [q["sql"] for q in queries]


def test_the_booking_page_offers_the_move_form(booking, member):
    html = browser(member).get(reverse("portal:booking", args=[booking.pk])).content.decode()
    assert 'id="move-form"' in html
    assert f'action="{url(booking)}"' in html
    assert 'value="2026-12-08T10:00"' in html
