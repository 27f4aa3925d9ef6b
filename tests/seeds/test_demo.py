"""`load_seeds --demo`: organisations, accounts that can log in, qualifications, quota grants."""

from __future__ import annotations

import io

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command
from django.db import transaction
from django.test import override_settings
from django.utils import timezone

from booking.models import Membership, Organization, Qualification, QuotaGrant
from booking.validators import business_number_is_valid
from equipment.models import Center
from seeds.loader import DEMO_PASSWORD, DEMO_REFUSED, SeedError, load_catalogue, load_demo

pytestmark = pytest.mark.django_db


# Hashing seven passwords with the production hasher takes seconds; MD5 keeps the module fast.
def fast_hashing() -> override_settings:
    return override_settings(
        DEBUG=True, PASSWORD_HASHERS=["django.contrib.auth.hashers.MD5PasswordHasher"]
    )


@pytest.fixture(scope="module")
def demo(django_db_setup, django_db_blocker):
    """Catalogue and demo data loaded once for the module, rolled back after its last test."""
    with django_db_blocker.unblock(), fast_hashing(), transaction.atomic():
        load_catalogue()
        yield load_demo()
        transaction.set_rollback(True)


def test_it_refuses_demo_when_debug_is_off(settings):
    settings.DEBUG = False
    users, centres = get_user_model().objects.count(), Center.objects.count()

    with pytest.raises(CommandError) as exc_info:
        call_command("load_seeds", "--demo")

    assert str(exc_info.value) == DEMO_REFUSED
    assert "refused when DEBUG is off" in DEMO_REFUSED
    assert (get_user_model().objects.count(), Center.objects.count()) == (users, centres)
    with pytest.raises(SeedError):
        load_demo()


@pytest.mark.usefixtures("demo")
@pytest.mark.parametrize(
    "username",
    [
        "operator",
        "gjsme-manager",
        "gjsme-member",
        "startup-manager",
        "startup-member",
        "univ-manager",
        "univ-member",
    ],
)
def test_it_lets_demo_users_log_in(client, username):
    assert client.login(username=username, password=DEMO_PASSWORD)
    assert not client.login(username=username, password="wrong-password")


@pytest.mark.usefixtures("demo")
def test_it_makes_the_operator_a_staff_superuser():
    operator = get_user_model().objects.get(username="operator")
    assert operator.is_staff and operator.is_superuser
    assert not get_user_model().objects.filter(is_staff=True).exclude(username="operator").exists()


@pytest.mark.usefixtures("demo")
def test_it_creates_three_organisations_with_valid_business_numbers():
    orgs = {o.slug: o for o in Organization.objects.all()}
    assert set(orgs) == {"bitgoeul-ai", "mudeung-lab", "hangang-univ"}
    for org in orgs.values():
        assert business_number_is_valid(org.business_number), org.slug
        org.full_clean()
    assert (orgs["bitgoeul-ai"].category, orgs["bitgoeul-ai"].region) == ("sme", "gwangju")
    assert orgs["mudeung-lab"].youth_startup is True
    assert (orgs["hangang-univ"].category, orgs["hangang-univ"].region) == ("university", "seoul")


@pytest.mark.usefixtures("demo")
def test_it_gives_each_organisation_a_manager_and_a_member():
    for org in Organization.objects.all():
        roles = sorted(Membership.objects.filter(organization=org).values_list("role", flat=True))
        assert roles == ["manager", "member"], org.slug


@pytest.mark.usefixtures("demo")
def test_it_qualifies_the_member_on_types_that_require_qualification():
    quals = Qualification.objects.filter(user__username="gjsme-member").select_related(
        "equipment_type"
    )
    assert {q.equipment_type.code for q in quals} == {"AU-SIM-L", "HC-EMG"}
    for q in quals:
        assert q.equipment_type.requires_qualification
        assert q.valid_until >= timezone.localdate()


@pytest.mark.usefixtures("demo")
def test_it_grants_h100_hours_for_the_current_year():
    year = timezone.localdate().year
    grant = QuotaGrant.objects.get(organization__slug="bitgoeul-ai", scope="NAIDC-H100")
    assert grant.limit_hours == 500
    assert grant.enforcement == "hard"
    assert (grant.period_start.isoformat(), grant.period_end.isoformat()) == (
        f"{year}-01-01",
        f"{year}-12-31",
    )


@pytest.mark.usefixtures("demo")
def test_it_changes_nothing_when_demo_runs_again():
    counts = [
        m.objects.count()
        for m in (get_user_model(), Organization, Membership, Qualification, QuotaGrant)
    ]

    with fast_hashing():
        result = load_demo()

    assert (result["created"], result["updated"]) == (0, 0)
    assert [
        m.objects.count()
        for m in (get_user_model(), Organization, Membership, Qualification, QuotaGrant)
    ] == counts


@pytest.mark.usefixtures("demo")
def test_it_keeps_a_changed_password(client):
    user = get_user_model().objects.get(username="univ-member")
    user.set_password("my-own-secret-2026")
    user.save()

    with fast_hashing():
        load_demo()

    assert client.login(username="univ-member", password="my-own-secret-2026")


@pytest.mark.usefixtures("demo")
def test_it_prints_the_demo_accounts_from_the_command(settings):
    settings.DEBUG = True
    out = io.StringIO()

    call_command("load_seeds", "--demo", stdout=out)

    text = out.getvalue()
    assert "gjsme-manager" in text
    # One line per account naming its password: the dev server's banner shows those lines.
    assert sum(DEMO_PASSWORD in line and "password" in line for line in text.splitlines()) == 7
    assert "0 created, 0 updated" in text
