"""/organization/: quotas, monthly usage, members, API keys and my invitations (Django test client).

Personas (tests/conftest.py): manager and member of acme, outsider (manager of globex), operator.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
from decimal import Decimal

import pytest
import time_machine
from django.contrib.auth import get_user_model
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from booking.models import ApiKey, Invitation, Membership, QuotaGrant, QuotaLedgerEntry
from booking.reports import usage_report
from booking.services.api_keys import api_key_create
from booking.services.organizations import member_remove
from portal.charts import nice_ceiling
from portal.views.organization import usage_window
from testbed.choices import Channel
from testbed.errors import Conflict, NotFound
from testbed.models import AuditEntry
from tests.factories import UserFactory, add_member, aware

pytestmark = pytest.mark.django_db

URL = "/organization/"


def signed_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def members_of(org) -> dict[str, str]:
    return dict(Membership.objects.filter(organization=org).values_list("user__username", "role"))


# --- who sees what ---------------------------------------------------------------------------


def test_it_asks_an_anonymous_visitor_to_sign_in(client):
    response = client.get(URL)
    assert response.status_code == 302
    assert response["Location"].startswith("/login/?next=/organization/")


def test_it_shows_a_member_the_quotas_and_usage_but_not_members_or_keys(member, manager, org):
    QuotaGrant.objects.create(
        organization=org,
        scope="*",
        period_start=dt.date(2026, 1, 1),
        period_end=dt.date(2026, 12, 31),
        limit_hours=100,
    )
    response = signed_in(member).get(URL)

    assert response.status_code == 200
    html = response.content.decode()
    assert org.name in html
    assert 'id="quotas"' in html and 'id="usage"' in html
    assert 'id="members"' not in html and 'id="api-keys"' not in html
    assert manager.email not in html  # members' emails are for managers


def test_it_shows_a_manager_the_members_with_emails_and_the_keys(manager, member, org):
    api_key_create(
        actor=manager, organization=org, name="ERP", scopes=["catalog:read"], channel=Channel.API
    )
    response = signed_in(manager).get(URL)

    html = response.content.decode()
    assert 'id="members"' in html and 'id="api-keys"' in html
    assert member.email in html and manager.email in html
    assert "ERP" in html and "catalog:read" in html


def test_it_answers_404_for_another_organisation(outsider, org):
    assert signed_in(outsider).get(URL, {"org": org.slug}).status_code == 404
    assert signed_in(outsider).get(URL, {"org": "no-such-org"}).status_code == 404


def test_it_lets_an_operator_choose_any_organisation(operator, org, other_org, manager):
    client = signed_in(operator)
    chooser = client.get(URL).content.decode()
    assert f"?org={org.slug}" in chooser and f"?org={other_org.slug}" in chooser

    html = client.get(URL, {"org": org.slug}).content.decode()
    assert 'id="members"' in html and 'id="api-keys"' in html


def test_it_lists_the_organisations_of_a_person_in_several(member, org, other_org):
    add_member(other_org, member, "member")
    client = signed_in(member)
    chooser = client.get(URL).content.decode()
    assert f"?org={org.slug}" in chooser and f"?org={other_org.slug}" in chooser
    assert other_org.name in client.get(URL, {"org": other_org.slug}).content.decode()


def test_it_tells_a_person_without_an_organisation_what_to_do(db):
    html = signed_in(UserFactory(username="lonely")).get(URL).content.decode()
    assert "초대" in html


# --- quotas ----------------------------------------------------------------------------------


def test_it_shows_each_grant_as_used_held_and_remaining(member, org):
    grant = QuotaGrant.objects.create(
        organization=org,
        scope="*",
        period_start=dt.date(2026, 1, 1),
        period_end=dt.date(2026, 12, 31),
        limit_hours=Decimal("100"),
    )
    QuotaLedgerEntry.objects.create(grant=grant, kind="hold", hours=Decimal("30"))
    QuotaLedgerEntry.objects.create(grant=grant, kind="consume", hours=Decimal("20"))

    html = signed_in(member).get(URL).content.decode()

    figures = re.sub(r"\s+", " ", html)
    assert "<dd>20.0</dd>" in figures  # used
    assert "<dd>30.0</dd>" in figures  # held
    assert "<dd>50.0</dd>" in figures  # remaining = 100 − 30 − 20
    assert "width: 20.0%" in html and "width: 30.0%" in html


def test_it_marks_a_soft_grant_that_is_over_its_limit_in_words(member, org):
    grant = QuotaGrant.objects.create(
        organization=org,
        scope="*",
        period_start=dt.date(2026, 1, 1),
        period_end=dt.date(2026, 12, 31),
        limit_hours=Decimal("10"),
        enforcement="soft",
    )
    QuotaLedgerEntry.objects.create(grant=grant, kind="consume", hours=Decimal("15"))
    html = signed_in(member).get(URL).content.decode()
    assert "-5.0 (초과)" in html
    assert "width: 100.0%" in html


# --- usage -----------------------------------------------------------------------------------


def test_the_usage_window_is_the_last_twelve_months():
    start, end = usage_window(dt.date(2027, 1, 15))
    assert start == aware(2026, 2, 1) and end == aware(2027, 2, 1)
    start, end = usage_window(dt.date(2026, 12, 31))
    assert start == aware(2026, 1, 1) and end == aware(2027, 1, 1)


def test_nice_ceiling_gives_readable_axis_tops():
    assert [nice_ceiling(v) for v in (0, 0.4, 7, 12, 92.7, 1234)] == [1, 1, 10, 20, 100, 2000]


@pytest.fixture
def november(org, other_org, member, outsider):
    from tests.usage.test_rollups import build_month, roll_up_all

    built = build_month(org=org, other_org=other_org, member=member, outsider=outsider)
    roll_up_all()
    return built


@time_machine.travel(aware(2027, 1, 15, 9), tick=False)
def test_it_charts_usage_by_month_with_the_same_figures_in_a_table(member, november, org):
    response = signed_in(member).get(URL)
    html = response.content.decode()

    assert '<svg class="chart"' in html and '<title id="usage-chart-title">' in html
    assert '<desc id="usage-chart-desc">' in html
    assert html.count("<rect x=") >= 24  # 12 months × 2 series (+ legend)
    rows = re.findall(r'<tr><th scope="row">([^<]+)</th>', html)
    assert rows[0] == "2026년 2월" and rows[-2] == "2027년 1월"  # then the total row
    november_row = re.search(r'<th scope="row">2026년 11월</th>(.*?)</tr>', html).group(1)
    expected = usage_report(
        scope_q=None, start=aware(2026, 11, 1), end=aware(2026, 12, 1), group_by=["month"],
        organization_id=org.pk,
    ).rows[0]  # fmt: skip
    assert f"<td>{expected['bookings']}</td>" in november_row
    assert f"<td>{expected['unit_hours']:,.1f}</td>" in november_row
    assert f"{expected['charge_krw']:,}원" in november_row
    assert expected["unit_hours"] > 0


@time_machine.travel(aware(2027, 1, 15, 9), tick=False)
def test_the_csv_download_link_works_with_the_session_and_has_a_bom(member, november, org):
    html = signed_in(member).get(URL).content.decode()
    link = re.search(r'<a href="(/api/v1/usage\?[^"]*format=csv[^"]*)"', html).group(1)
    link = link.replace("&amp;", "&")

    response = signed_in(member).get(link)

    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("text/csv")
    assert response.content.startswith(b"\xef\xbb\xbf")
    text = response.content.decode("utf-8-sig")
    assert text.splitlines()[0].startswith("month,resource,")
    assert "2026-11,HC-EMG" in text
    xlsx = re.search(r'<a href="(/api/v1/usage\?[^"]*format=xlsx[^"]*)"', html).group(1)
    assert signed_in(member).get(xlsx.replace("&amp;", "&")).status_code == 200


def test_the_dashboard_runs_a_fixed_number_of_queries(manager, org):
    """No N+1: more members, invitations, grants and keys do not mean more queries."""

    def count() -> int:
        client = signed_in(manager)
        with CaptureQueriesContext(connection) as queries:
            assert client.get(URL).status_code == 200
        return len(queries)

    def grow(n: int) -> None:
        for i in range(n):
            add_member(org, UserFactory(), "member")
            Invitation.objects.create(organization=org, user=UserFactory(), invited_by=manager)
            grant = QuotaGrant.objects.create(
                organization=org,
                scope="*",
                period_start=dt.date(2026, 1, 1) + dt.timedelta(days=i),
                period_end=dt.date(2026, 12, 31),
                limit_hours=10,
            )
            QuotaLedgerEntry.objects.create(grant=grant, kind="hold", hours=1)
            api_key_create(
                actor=manager, organization=org, name=f"k{i}", scopes=["catalog:read"],
                channel=Channel.API,
            )  # fmt: skip

    grow(1)
    small = count()
    grow(5)
    assert count() == small
    assert small <= 22


# --- members ---------------------------------------------------------------------------------


def test_a_manager_adds_a_new_person_and_the_account_is_made(manager, org):
    response = signed_in(manager).post(
        "/organization/members/",
        {"org": org.slug, "username": "newbie", "email": "newbie@example.kr", "role": "member"},
    )
    assert response.status_code == 302 and response["Location"].endswith("#members")
    assert members_of(org)["newbie"] == "member"
    assert AuditEntry.objects.filter(action="membership.set", channel=Channel.WEB).exists()


def test_a_manager_invites_an_existing_account_which_shows_as_invited(manager, org, db):
    UserFactory(username="elsewhere")
    client = signed_in(manager)
    client.post(
        "/organization/members/",
        {"org": org.slug, "username": "elsewhere", "email": "x@example.kr", "role": "manager"},
    )
    assert "elsewhere" not in members_of(org)
    invitation = Invitation.objects.get(organization=org, user__username="elsewhere")
    assert invitation.role == "manager" and invitation.answered_at is None
    html = client.get(URL).content.decode()
    assert "초대됨 · 수락 대기" in html and "elsewhere" in html


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"username": "", "email": "a@example.kr", "role": "member"}, "username"),
        ({"username": "newbie", "email": "not-an-email", "role": "member"}, "email"),
        ({"username": "newbie", "email": "a@example.kr", "role": "owner"}, "role"),
        ({"username": "apikey-x", "email": "a@example.kr", "role": "member"}, "username"),
        ({"username": "member", "email": "a@example.kr", "role": "member"}, "username"),
        ({"username": "newbie", "email": "a@example.kr", "role": "member", "password": "1"}, "password"),
    ],
)  # fmt: skip
def test_the_invite_form_refuses_bad_input_naming_the_field(manager, member, org, data, field):
    before = (members_of(org), get_user_model().objects.count(), Invitation.objects.count())
    response = signed_in(manager).post("/organization/members/", {"org": org.slug, **data})

    assert response.status_code in (400, 409)
    html = response.content.decode()
    assert f'id="id_{field}-error"' in html and 'role="alert"' in html
    assert f'aria-describedby="id_{field}-error"' in html
    assert before == (members_of(org), get_user_model().objects.count(), Invitation.objects.count())


def test_the_invite_answers_htmx_with_the_members_section_alone(manager, org):
    response = signed_in(manager).post(
        "/organization/members/",
        {"org": org.slug, "username": "newbie", "email": "newbie@example.kr", "role": "member"},
        HTTP_HX_REQUEST="true",
    )
    html = response.content.decode()
    assert response.status_code == 200
    assert html.lstrip().startswith('<section id="members"') and "<html" not in html
    assert "newbie" in html and 'role="status"' in html
    bad = signed_in(manager).post(
        "/organization/members/",
        {"org": org.slug, "username": "", "email": "x", "role": "member"},
        HTTP_HX_REQUEST="true",
    )
    assert bad.status_code == 200 and 'id="id_username-error"' in bad.content.decode()


def test_a_member_may_not_invite_and_an_outsider_gets_404(member, outsider, org):
    data = {"org": org.slug, "username": "newbie", "email": "n@example.kr", "role": "member"}
    assert signed_in(member).post("/organization/members/", data).status_code == 403
    assert signed_in(outsider).post("/organization/members/", data).status_code == 404
    assert "newbie" not in members_of(org)


def test_a_manager_changes_a_members_role(manager, member, org):
    membership = Membership.objects.get(organization=org, user=member)
    response = signed_in(manager).post(
        f"/organization/members/{membership.pk}/role/", {"org": org.slug, "role": "manager"}
    )
    assert response.status_code == 302
    assert members_of(org)["member"] == "manager"


def test_a_bad_role_is_refused_and_changes_nothing(manager, member, org):
    membership = Membership.objects.get(organization=org, user=member)
    response = signed_in(manager).post(
        f"/organization/members/{membership.pk}/role/", {"org": org.slug, "role": "king"}
    )
    assert response.status_code == 400
    html = response.content.decode()
    assert 'id="members-error"' in html and "역할" in html
    assert f'id="role-{membership.pk}" name="role" aria-invalid="true"' in html
    assert members_of(org)["member"] == "member"


def test_role_and_removal_of_another_organisations_member_answer_404(
    manager, outsider, org, other_org
):
    theirs = Membership.objects.get(organization=other_org, user=outsider)
    client = signed_in(manager)
    assert (
        client.post(f"/organization/members/{theirs.pk}/role/", {"role": "member"}).status_code
        == 404
    )
    assert client.post(f"/organization/members/{theirs.pk}/remove/").status_code == 404
    ours = Membership.objects.get(organization=org, user=manager)
    assert (
        signed_in(outsider)
        .post(f"/organization/members/{ours.pk}/remove/", {"org": org.slug})
        .status_code
        == 404
    )
    assert members_of(other_org) == {"outsider": "manager"}


def test_a_manager_removes_a_member(manager, member, org):
    membership = Membership.objects.get(organization=org, user=member)
    response = signed_in(manager).post(
        f"/organization/members/{membership.pk}/remove/", {"org": org.slug}
    )
    assert response.status_code == 302
    assert "member" not in members_of(org)
    entry = AuditEntry.objects.get(action="membership.remove")
    assert entry.from_state == "member" and entry.actor == manager and entry.channel == "web"
    assert get_user_model().objects.filter(username="member").exists()  # the account stays


def test_a_member_may_not_remove_anyone(manager, member, org):
    membership = Membership.objects.get(organization=org, user=manager)
    assert (
        signed_in(member).post(f"/organization/members/{membership.pk}/remove/").status_code == 403
    )
    assert "manager" in members_of(org)


def test_the_last_manager_is_never_removed(manager, member, org):
    membership = Membership.objects.get(organization=org, user=manager)
    response = signed_in(manager).post(
        f"/organization/members/{membership.pk}/remove/", {"org": org.slug}
    )
    assert response.status_code == 409
    assert "last manager" in response.content.decode()
    assert members_of(org)["manager"] == "manager"


def test_member_remove_refuses_the_last_manager_and_unknown_people(manager, member, org):
    with pytest.raises(Conflict) as refused:
        member_remove(actor=manager, organization=org, username="manager", channel=Channel.API)
    assert refused.value.field == "username" and refused.value.code == "last_manager"
    with pytest.raises(NotFound):
        member_remove(actor=manager, organization=org, username="nobody", channel=Channel.API)
    add_member(org, UserFactory(username="second"), "manager")
    member_remove(actor=manager, organization=org, username="manager", channel=Channel.API)
    assert members_of(org) == {"member": "member", "second": "manager"}


# --- API keys --------------------------------------------------------------------------------


def test_a_manager_creates_a_key_and_sees_the_secret_once(manager, org):
    client = signed_in(manager)
    response = client.post(
        "/organization/api-keys/",
        {"org": org.slug, "name": "ERP", "scopes": ["bookings:read", "usage:read"]},
    )
    assert response.status_code == 201
    assert response["Cache-Control"] == "no-store"
    secret = re.search(r'value="(tbk_[^"]+)"', response.content.decode()).group(1)
    key = ApiKey.objects.get(organization=org)
    assert key.scopes == ["bookings:read", "usage:read"] and key.name == "ERP"
    assert key.key_hash == hashlib.sha256(secret.encode()).hexdigest()
    assert AuditEntry.objects.filter(action="api_key.create", channel="web").exists()
    assert secret not in client.get(URL).content.decode()  # never again


@pytest.mark.parametrize(
    ("data", "field"),
    [({"name": "ERP"}, "scopes"), ({"name": "", "scopes": ["catalog:read"]}, "name"),
     ({"name": "ERP", "scopes": ["root"]}, "scopes")],
)  # fmt: skip
def test_the_key_form_refuses_bad_input_naming_the_field(manager, org, data, field):
    response = signed_in(manager).post("/organization/api-keys/", {"org": org.slug, **data})
    assert response.status_code == 400
    assert f'id="id_{field}-error"' in response.content.decode()
    assert not ApiKey.objects.exists()


def test_members_and_outsiders_cannot_make_or_revoke_keys(manager, member, outsider, org):
    key, _secret = api_key_create(
        actor=manager, organization=org, name="ERP", scopes=["catalog:read"], channel=Channel.API
    )
    data = {"org": org.slug, "name": "mine", "scopes": ["catalog:read"]}
    assert signed_in(member).post("/organization/api-keys/", data).status_code == 403
    assert signed_in(outsider).post("/organization/api-keys/", data).status_code == 404
    assert signed_in(member).post(f"/organization/api-keys/{key.pk}/revoke/").status_code == 403
    assert (
        signed_in(outsider)
        .post(f"/organization/api-keys/{key.pk}/revoke/", {"org": org.slug})
        .status_code
        == 404
    )
    # The outsider's own organisation does not have this key either.
    assert signed_in(outsider).post(f"/organization/api-keys/{key.pk}/revoke/").status_code == 404
    assert ApiKey.objects.count() == 1 and ApiKey.objects.get().revoked_at is None


def test_a_manager_revokes_a_key_and_its_last_use_shows(manager, org):
    key, _secret = api_key_create(
        actor=manager, organization=org, name="ERP", scopes=["catalog:read"], channel=Channel.API
    )
    ApiKey.objects.filter(pk=key.pk).update(last_used_at=aware(2026, 12, 8, 14, 30))
    client = signed_in(manager)
    assert "2026년 12월 8일 (화) 14:30" in client.get(URL).content.decode()

    response = client.post(f"/organization/api-keys/{key.pk}/revoke/", {"org": org.slug})
    assert response.status_code == 302
    key.refresh_from_db()
    assert key.revoked_at is not None
    assert "폐기됨" in client.get(URL).content.decode()


# --- my invitations --------------------------------------------------------------------------


@pytest.fixture
def invitation(manager, org):
    return Invitation.objects.create(
        organization=org, user=UserFactory(username="guest"), role="member", invited_by=manager
    )


def test_an_invited_person_sees_and_accepts_the_invitation(invitation, org):
    client = signed_in(invitation.user)
    html = client.get(URL).content.decode()
    assert org.name in html and f"/organization/invitations/{invitation.pk}/" in html

    response = client.post(f"/organization/invitations/{invitation.pk}/", {"answer": "accept"})
    assert response.status_code == 302 and f"org={org.slug}" in response["Location"]
    assert members_of(org)["guest"] == "member"
    assert AuditEntry.objects.filter(action="invitation.accept", channel="web").exists()


def test_an_invited_person_declines(invitation, org):
    response = signed_in(invitation.user).post(
        f"/organization/invitations/{invitation.pk}/", {"answer": "decline"}
    )
    assert response.status_code == 302
    invitation.refresh_from_db()
    assert invitation.accepted is False and "guest" not in members_of(org)


def test_nobody_else_answers_an_invitation(invitation, manager, org):
    url = f"/organization/invitations/{invitation.pk}/"
    assert signed_in(manager).post(url, {"answer": "accept"}).status_code == 404
    assert signed_in(invitation.user).post(url, {"answer": "maybe"}).status_code == 302
    invitation.refresh_from_db()
    assert invitation.answered_at is None and "guest" not in members_of(org)
