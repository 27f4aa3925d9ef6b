"""Bookings enforced on a REAL Slurm cluster (slurmctld + 3 slurmd on loopback, see conftest.py):
the reconciler creates, updates and removes advance reservations as bookings change."""

from __future__ import annotations

import datetime as dt
import zoneinfo

import pytest

from booking.services.allocation import booking_allocate
from booking.services.bookings import booking_cancel, booking_request
from booking.services.maintenance import maintenance_window_create
from booking.services.moves import booking_move
from equipment.models import Device, Node
from integrations.slurm.models import SlurmAccount, SlurmCluster, SlurmNode
from integrations.slurm.scontrol import SlurmUnavailable, expand_hostlist
from integrations.slurm.services import cluster_reconcile
from testbed.models import AuditEntry
from tests.factories import OrganizationFactory, PoolFactory, UserFactory, add_member
from tests.integrations.slurm.conftest import SLURM_CONF

pytestmark = [pytest.mark.postgres]
SEOUL = zoneinfo.ZoneInfo("Asia/Seoul")


def slurm_pool(*, code="GPU-SLURM"):
    """Three nodes of 8 GPUs: two named as in Slurm, the third mapped to tb-gpu03."""
    pool = PoolFactory(code=code)
    for hostname in ("tb-gpu01", "tb-gpu02", "h100-rack3-n1"):
        node = Node.objects.create(pool=pool, hostname=hostname)
        Device.objects.bulk_create([Device(node=node, index=i) for i in range(8)])
    SlurmNode.objects.create(node=Node.objects.get(hostname="h100-rack3-n1"), slurm_name="tb-gpu03")
    cluster = SlurmCluster.objects.create(pool=pool, cluster_name="testbed", slurm_conf=SLURM_CONF)
    return pool, cluster


def future(hours_from_now: int = 24, length: int = 2) -> tuple[dt.datetime, dt.datetime]:
    start = (dt.datetime.now(tz=SEOUL) + dt.timedelta(hours=hours_from_now)).replace(
        minute=0, second=0, microsecond=0
    )
    return start, start + dt.timedelta(hours=length)


def book(member, org, pool, quantity, window):
    booking = booking_request(
        actor=member,
        organization=org,
        resource_code=pool.code,
        quantity=quantity,
        start=window[0],
        end=window[1],
        purpose="LLM 학습",
    )
    booking_allocate(booking_id=booking.pk)
    booking.refresh_from_db()
    assert booking.status == "confirmed", booking.rejection_detail
    return booking


def slurm_nodes(booking) -> set[str]:
    names = {"h100-rack3-n1": "tb-gpu03"}
    hostnames = booking.allocations.filter(active=True).values_list(
        "device__node__hostname", flat=True
    )
    return {names.get(h, h) for h in hostnames}


def utc(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S")


def audits(action: str) -> list[AuditEntry]:
    return list(AuditEntry.objects.filter(action=action).order_by("pk"))


@pytest.fixture
def people(db):
    org = OrganizationFactory(slug="acme")
    member = UserFactory(username="member")
    add_member(org, member, "member")
    return org, member


def test_it_reserves_a_confirmed_booking_on_its_nodes_window_and_account(slurm, people):
    org, member = people
    pool, cluster = slurm_pool()
    SlurmAccount.objects.create(organization=org, account="acme-ai", users="nobody,daemon")
    booking = book(member, org, pool, 16, future())

    result = cluster_reconcile(cluster_id=cluster.pk)

    assert [a.kind for a in result.applied] == ["create"]
    found = slurm.reservations()[f"tb-{booking.pk}"]
    assert set(expand_hostlist(found["Nodes"])) == slurm_nodes(booking)
    assert len(slurm_nodes(booking)) == 2, "16 GPUs: two whole nodes"
    assert found["StartTime"] == utc(booking.start)
    # The reservation spans what the allocations hold (pools keep no buffer between bookings:
    # booking.services.resources.buffer_of), so back-to-back bookings never overlap in Slurm.
    assert found["EndTime"] == utc(booking.end)
    assert found["Accounts"] == "acme-ai"
    assert set(found["Users"].split(",")) == {"nobody", "daemon"}
    assert "OVERLAP" not in found["Flags"], "whole nodes are not shared"
    # An operator in Korea reading Slurm sees the booking's local (KST) times.
    seoul = slurm.scontrol("-o", "show", "reservation", f"tb-{booking.pk}", tz="Asia/Seoul")
    assert f"StartTime={booking.start.astimezone(SEOUL):%Y-%m-%dT%H:%M:%S}" in seoul

    (entry,) = audits("slurm.reservation_create")
    assert entry.data["reservation"] == f"tb-{booking.pk}" and entry.data["reason"] == "missing"
    cluster.refresh_from_db()
    assert cluster.last_success_at and cluster.pending_changes == 0 and not cluster.last_error

    again = cluster_reconcile(cluster_id=cluster.pk)
    assert again.applied == [] and again.summary() == "in step"


def test_it_removes_the_reservation_when_the_booking_is_cancelled(slurm, people):
    org, member = people
    pool, cluster = slurm_pool()
    booking = book(member, org, pool, 8, future())
    cluster_reconcile(cluster_id=cluster.pk)
    assert slurm.reservations()[f"tb-{booking.pk}"]["Accounts"] == "acme", "default: the slug"

    booking_cancel(actor=member, booking=booking, reason="계획 변경", channel="api")
    result = cluster_reconcile(cluster_id=cluster.pk)

    assert [(a.kind, a.name) for a in result.applied] == [("delete", f"tb-{booking.pk}")]
    assert f"tb-{booking.pk}" not in slurm.reservations()
    (entry,) = audits("slurm.reservation_delete")
    assert entry.data["reason"] == "booking cancelled"


def test_it_follows_a_moved_booking(slurm, people):
    org, member = people
    pool, cluster = slurm_pool()
    old = book(member, org, pool, 8, future(24))
    cluster_reconcile(cluster_id=cluster.pk)
    start, end = future(48, 3)
    moved = booking_move(actor=member, booking=old, start=start, end=end, channel="api")
    booking_allocate(booking_id=moved.pk)
    moved.refresh_from_db()
    assert moved.status == "confirmed"

    cluster_reconcile(cluster_id=cluster.pk)

    held = slurm.reservations()
    assert f"tb-{old.pk}" not in held
    assert (held[f"tb-{moved.pk}"]["StartTime"], held[f"tb-{moved.pk}"]["EndTime"]) == (
        utc(start),
        utc(end),
    )


def test_it_repairs_drift_removes_hand_made_ones_and_reports_foreign_ones(slurm, people):
    org, member = people
    pool, cluster = slurm_pool()
    booking = book(member, org, pool, 8, future())
    cluster_reconcile(cluster_id=cluster.pk)
    name = f"tb-{booking.pk}"
    (node,) = slurm_nodes(booking)
    free = next(n for n in slurm.nodes if n != node)
    start, end = utc(booking.start), utc(booking.end)
    # By hand: our reservation's end changed, a tb- one nobody booked, a foreign one over ours.
    slurm.scontrol(
        "update", f"ReservationName={name}", f"EndTime={utc(booking.end + dt.timedelta(hours=5))}"
    )
    slurm.scontrol(
        "create", "reservation", "ReservationName=tb-999999", f"Nodes={free}",
        f"StartTime={start}", f"EndTime={end}", "Accounts=someone",
    )  # fmt: skip
    slurm.scontrol(
        "create", "reservation", "ReservationName=ops-hold", f"Nodes={node}",
        f"StartTime={start}", f"EndTime={end}", "Users=root", "Flags=OVERLAP",
    )  # fmt: skip

    result = cluster_reconcile(cluster_id=cluster.pk)

    assert sorted((a.kind, a.name) for a in result.applied) == [
        ("delete", "tb-999999"),
        ("update", name),
    ]
    held = slurm.reservations()
    assert held[name]["EndTime"] == end, "drift repaired"
    assert "tb-999999" not in held
    assert "ops-hold" in held, "foreign reservations are never touched"
    (update,) = audits("slurm.reservation_update")
    assert update.data["changes"]["end"][1] == booking.end.astimezone(dt.UTC).isoformat()
    (delete,) = audits("slurm.reservation_delete")
    assert delete.data["reservation"] == "tb-999999" and delete.data["reason"].startswith("unknown")
    (foreign,) = audits("slurm.foreign_reservation")
    assert foreign.data["reservation"] == "ops-hold" and foreign.data["overlaps"] == [name]
    cluster.refresh_from_db()
    assert [c["reservation"] for c in cluster.conflicts] == ["ops-hold"]

    cluster_reconcile(cluster_id=cluster.pk)
    assert len(audits("slurm.foreign_reservation")) == 1, "a known conflict is audited once"


def test_bookings_sharing_a_node_get_overlapping_reservations(slurm, people):
    org, member = people
    other = OrganizationFactory(slug="globex")
    outsider = UserFactory(username="outsider")
    add_member(other, outsider, "member")
    pool, cluster = slurm_pool()
    window = future()
    first = book(member, org, pool, 4, window)
    second = book(outsider, other, pool, 4, window)
    assert slurm_nodes(first) == slurm_nodes(second), "best fit: the same node"

    result = cluster_reconcile(cluster_id=cluster.pk)

    assert not result.refused
    held = slurm.reservations()
    for booking, account in ((first, "acme"), (second, "globex")):
        assert "OVERLAP" in held[f"tb-{booking.pk}"]["Flags"]
        assert held[f"tb-{booking.pk}"]["Accounts"] == account


def test_maintenance_windows_become_maint_reservations(slurm, people, operator):
    pool, cluster = slurm_pool()
    node = Node.objects.get(hostname="h100-rack3-n1")
    start, end = future(72, 4)
    window, _affected = maintenance_window_create(
        actor=operator, target=node, start=start, end=end, reason="펌웨어 업데이트", channel="admin"
    )

    cluster_reconcile(cluster_id=cluster.pk)

    found = slurm.reservations()[f"tb-maint-{window.pk}"]
    assert found["Nodes"] == "tb-gpu03"
    assert {"MAINT", "IGNORE_JOBS"} <= set(found["Flags"].split(","))
    assert found["Users"] == "root"
    assert (found["StartTime"], found["EndTime"]) == (utc(start), utc(end))

    window.delete()
    cluster_reconcile(cluster_id=cluster.pk)
    assert f"tb-maint-{window.pk}" not in slurm.reservations()


def test_a_refused_change_is_pending_and_the_others_go_ahead(slurm, people):
    org, member = people
    pool, cluster = slurm_pool()
    ghost = Node.objects.create(pool=pool, hostname="ghost-n1")  # unknown to Slurm
    Device.objects.bulk_create([Device(node=ghost, index=i) for i in range(16)])
    on_ghost = book(member, org, pool, 16, future())  # only the ghost has 16 GPUs
    fine = book(member, org, pool, 8, future())

    result = cluster_reconcile(cluster_id=cluster.pk)

    assert list(result.refused) == [f"tb-{on_ghost.pk}"]
    assert f"tb-{fine.pk}" in slurm.reservations()
    cluster.refresh_from_db()
    assert cluster.pending_changes == 1 and f"tb-{on_ghost.pk}" in cluster.last_error


def test_slurm_down_never_blocks_a_booking_and_the_reservation_comes_when_it_returns(slurm, people):
    org, member = people
    pool, cluster = slurm_pool()
    slurm.stop_controller()

    booking = book(member, org, pool, 8, future())  # decided without Slurm
    with pytest.raises(SlurmUnavailable):
        cluster_reconcile(cluster_id=cluster.pk)

    cluster.refresh_from_db()
    assert cluster.pending_changes >= 1 and not cluster.in_step
    assert "Unable to contact slurm controller" in cluster.last_error
    assert cluster.last_success_at is None

    slurm.start()
    cluster_reconcile(cluster_id=cluster.pk)

    assert f"tb-{booking.pk}" in slurm.reservations()
    cluster.refresh_from_db()
    assert cluster.in_step and cluster.last_success_at is not None


def test_a_disabled_cluster_is_left_alone(slurm, people):
    org, member = people
    pool, cluster = slurm_pool()
    SlurmCluster.objects.filter(pk=cluster.pk).update(enabled=False)
    book(member, org, pool, 8, future())
    assert cluster_reconcile(cluster_id=cluster.pk).skipped
    assert slurm.reservations() == {}
