"""The pure part of the Slurm sync: host lists, scontrol's one-line output, and the plan."""

from __future__ import annotations

import datetime as dt

import pytest

from integrations.slurm.reconcile import plan
from integrations.slurm.scontrol import Reservation, expand_hostlist, parse_reservations

UTC = dt.UTC
NOW = dt.datetime(2026, 12, 1, 0, 0, tzinfo=UTC)


def at(hours: float) -> dt.datetime:
    return NOW + dt.timedelta(hours=hours)


def res(name, nodes=("n1",), start=1, end=3, **kwargs) -> Reservation:
    return Reservation(name=name, nodes=frozenset(nodes), start=at(start), end=at(end), **kwargs)


def test_it_expands_slurm_host_lists():
    assert expand_hostlist("tb-gpu[01-03,07],cpu1") == [
        "tb-gpu01",
        "tb-gpu02",
        "tb-gpu03",
        "tb-gpu07",
        "cpu1",
    ]
    assert expand_hostlist("r[1-2]n[8-9]") == ["r1n8", "r1n9", "r2n8", "r2n9"]
    assert expand_hostlist("(null)") == [] and expand_hostlist("") == []


def test_it_parses_one_line_reservations_in_utc():
    line = (
        "ReservationName=tb-42 StartTime=2027-01-05T01:00:00 EndTime=2027-01-05T03:00:00 "
        "Duration=02:00:00 Nodes=tb-gpu[01-02] NodeCnt=2 CoreCnt=32 Features=(null) "
        "PartitionName=(null) Flags=OVERLAP,SPEC_NODES TRES=cpu=32 Users=nobody,daemon "
        "Groups=(null) Accounts=acme Licenses=(null) State=INACTIVE BurstBuffer=(null) "
        "Watts=n/a MaxStartDelay=(null)"
    )
    (found,) = parse_reservations("No noise\n" + line + "\n")
    assert found.name == "tb-42"
    assert found.nodes == {"tb-gpu01", "tb-gpu02"}
    assert found.start == dt.datetime(2027, 1, 5, 1, tzinfo=UTC)
    assert found.end == dt.datetime(2027, 1, 5, 3, tzinfo=UTC)
    assert found.accounts == {"acme"} and found.users == {"nobody", "daemon"}
    assert found.flags == {"OVERLAP", "SPEC_NODES"} and found.partition == ""
    assert found.state == "INACTIVE"
    assert parse_reservations("No reservations in the system\n") == []


def test_it_plans_creates_updates_recreates_and_deletes_of_its_own_reservations_only():
    desired = [
        res("tb-1"),  # missing → create
        res("tb-2", end=4),  # end changed → update
        res("tb-3", flags=frozenset({"OVERLAP"})),  # flags changed → recreate
        res("tb-4", accounts=frozenset({"acme"})),  # in step
        res("tb-9", start=-5, end=-1),  # ended: nothing to do
    ]
    actual = [
        res("tb-2", end=3),
        res("tb-3", flags=frozenset({"SPEC_NODES"})),
        res("tb-4", accounts=frozenset({"acme"}), flags=frozenset({"SPEC_NODES"})),
        res("tb-77"),  # ours, unknown → delete
        res("other", nodes=("n9",)),  # not ours, nowhere near: untouched, unreported
    ]
    result = plan(desired=desired, actual=actual, prefix="tb-", now=NOW)
    assert [(a.kind, a.name) for a in result.actions] == [
        ("create", "tb-1"),
        ("update", "tb-2"),
        ("recreate", "tb-3"),
        ("delete", "tb-77"),
    ]
    assert result.actions[1].changes == {
        "end": [at(3).isoformat(), at(4).isoformat()],
    }
    assert result.conflicts == []


def test_a_started_reservation_keeps_its_start():
    began = res("tb-1", start=-1, end=3, state="ACTIVE")
    want = res("tb-1", start=-2, end=3)  # the booking began earlier: Slurm made it "now"
    assert plan(desired=[want], actual=[began], prefix="tb-", now=NOW).empty
    later = res("tb-1", start=-2, end=5)
    (action,) = plan(desired=[later], actual=[began], prefix="tb-", now=NOW).actions
    assert action.kind == "update" and set(action.changes) == {"end"}


def test_it_reports_foreign_reservations_over_booked_nodes():
    desired = [
        res("tb-1", nodes=("n1", "n2")),
        res("tb-maint-5", nodes=("n3",), flags=frozenset({"MAINT"})),
    ]
    actual = [
        res("tb-1", nodes=("n1", "n2")),
        res("tb-maint-5", nodes=("n3",), flags=frozenset({"MAINT"})),
        res("hold", nodes=("n2", "n3"), start=2, end=6),
        res("later", nodes=("n1",), start=3, end=5),  # starts as tb-1 ends: no overlap
    ]
    result = plan(desired=desired, actual=actual, prefix="tb-", now=NOW)
    assert result.empty
    assert result.conflicts == [
        {
            "reservation": "hold",
            "nodes": "n2",
            "start": at(2).isoformat(),
            "end": at(6).isoformat(),
            "flags": "",
            "overlaps": ["tb-1"],
        }
    ]


def test_booking_reservations_are_created_before_maintenance_ones():
    desired = [res("tb-maint-1", flags=frozenset({"MAINT"})), res("tb-2")]
    result = plan(desired=desired, actual=[], prefix="tb-", now=NOW)
    assert [a.name for a in result.actions] == ["tb-2", "tb-maint-1"]


@pytest.mark.redis
def test_an_event_about_a_slurm_pool_queues_its_sync_and_others_cost_nothing(
    transactional_db, django_capture_on_commit_callbacks, django_assert_num_queries, monkeypatch
):
    """Receivers run after commit, where the read cache (testbed/readcache.py) answers."""
    from booking.events import BOOKING_CONFIRMED, publish
    from integrations.slurm.models import SlurmCluster
    from integrations.slurm.tasks import reconcile_cluster
    from tests.factories import PoolFactory

    queued: list[int] = []
    monkeypatch.setattr(reconcile_cluster, "delay", queued.append)
    cluster = SlurmCluster.objects.create(pool=PoolFactory(code="GPU-S"))
    other = PoolFactory(code="GPU-OTHER")

    def booking_event(code: str):
        data = {"booking": {"id": 1, "resource": {"kind": "pool", "code": code}}}
        with django_capture_on_commit_callbacks(execute=True):
            publish(BOOKING_CONFIRMED, organization_id=None, data=data)

    booking_event(cluster.pool.code)
    assert queued == [cluster.pk]
    cluster.refresh_from_db()
    assert cluster.pending_changes == 1
    booking_event(other.code)
    with django_assert_num_queries(0):  # the index of Slurm pools is cached
        booking_event(other.code)
    assert queued == [cluster.pk]
