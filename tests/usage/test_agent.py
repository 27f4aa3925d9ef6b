"""The node agent: NVML sampler (with a stand-in pynvml), the on-disk spool, the loop, and the
whole path agent → HTTP → API → attribution against a live server, restarts included."""

from __future__ import annotations

import datetime as dt
import socket
import subprocess
import sys
import types
from pathlib import Path

import pytest
import time_machine

from booking.agent.__main__ import EX_TEMPFAIL, main
from booking.agent.client import Agent, BatchRefused, SendFailed, TelemetryClient
from booking.agent.sampler import FakeSampler, NvmlSampler, NvmlUnavailable
from booking.agent.spool import Spool, SpoolBusy
from booking.choices import BookingStatus
from booking.models import Allocation, Booking, TelemetrySample
from booking.services.telemetry import node_key_create
from equipment.models import Node
from tests.factories import aware, make_pool

ROOT = Path(__file__).resolve().parents[2]
MIB = 1024 * 1024
GPU0 = "GPU-7a1b2c3d-0000-4000-8000-000000000000"
GPU1 = "GPU-7a1b2c3d-0000-4000-8000-000000000001"


# --- a stand-in for pynvml (nvidia-ml-py) ----------------------------------------------------


def fake_pynvml(*, init_error: str | None = None) -> types.ModuleType:
    """Two H100s as NVML reports them; the second has no energy counter."""
    nvml = types.ModuleType("pynvml")

    class NVMLError(Exception):
        pass

    class NVMLError_NotSupported(NVMLError):  # noqa: N801 - pynvml's names
        pass

    class NVMLError_LibraryNotFound(NVMLError):  # noqa: N801
        pass

    def init():
        if init_error:
            raise NVMLError_LibraryNotFound(init_error)
        nvml.initialised = True

    def energy(handle):
        if handle == "h1":
            raise NVMLError_NotSupported("Not Supported")
        return 987_654_321  # mJ

    nvml.NVMLError = NVMLError
    nvml.NVMLError_NotSupported = NVMLError_NotSupported
    nvml.NVMLError_LibraryNotFound = NVMLError_LibraryNotFound
    nvml.initialised = False
    nvml.nvmlInit = init
    nvml.nvmlShutdown = lambda: setattr(nvml, "initialised", False)
    nvml.nvmlDeviceGetCount = lambda: 2
    nvml.nvmlDeviceGetHandleByIndex = lambda i: f"h{i}"
    nvml.nvmlDeviceGetUUID = lambda h: (
        GPU0.encode() if h == "h0" else GPU1
    )  # old versions gave bytes
    nvml.nvmlDeviceGetUtilizationRates = lambda h: types.SimpleNamespace(
        gpu=87 if h == "h0" else 3, memory=40
    )
    nvml.nvmlDeviceGetMemoryInfo = lambda h: types.SimpleNamespace(
        used=(61_234 if h == "h0" else 512) * MIB, total=81_559 * MIB, free=0
    )
    nvml.nvmlDeviceGetPowerUsage = lambda h: 512_345 if h == "h0" else 71_000  # mW
    nvml.nvmlDeviceGetTotalEnergyConsumption = energy
    return nvml


def test_nvml_sampler_reads_utilisation_memory_power_and_energy(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", fake_pynvml())
    at = dt.datetime(2026, 12, 1, 0, 0, tzinfo=dt.UTC)

    sampler = NvmlSampler(clock=lambda: at)
    samples = sampler.sample()

    assert samples == [
        {
            "device": "0",
            "at": at.isoformat(),
            "utilization_pct": 87.0,
            "memory_used_mb": 61234.0,
            "power_w": 512.345,
            "energy_j": 987654.321,
        },
        {
            "device": "1",
            "at": at.isoformat(),
            "utilization_pct": 3.0,
            "memory_used_mb": 512.0,
            "power_w": 71.0,
            "energy_j": None,
        },
    ]
    assert [d for d, _h in NvmlSampler(device_key="uuid", clock=lambda: at).devices] == [GPU0, GPU1]
    sampler.close()
    assert sys.modules["pynvml"].initialised is False


def test_nvml_sampler_explains_when_nvml_is_absent(monkeypatch):
    monkeypatch.setitem(
        sys.modules, "pynvml", fake_pynvml(init_error="NVML Shared Library Not Found")
    )
    with pytest.raises(
        NvmlUnavailable, match=r"NVML could not start \(NVML Shared Library Not Found\).*--fake"
    ):
        NvmlSampler()

    monkeypatch.setitem(sys.modules, "pynvml", None)  # nvidia-ml-py not installed
    with pytest.raises(NvmlUnavailable, match="pip install nvidia-ml-py"):
        NvmlSampler()


def test_the_cli_exits_with_a_clear_message_without_nvml(monkeypatch, tmp_path, capsys):
    monkeypatch.setitem(sys.modules, "pynvml", fake_pynvml(init_error="Driver Not Loaded"))

    code = main(
        [
            "--server",
            "http://127.0.0.1:9",
            "--key",
            "tbn_x_y",
            "--once",
            "--state-dir",
            str(tmp_path),
        ]
    )

    assert code == 1
    assert "NVML could not start (Driver Not Loaded)" in capsys.readouterr().err


def test_fake_sampler_is_deterministic_and_integrates_energy():
    times = iter([aware(2026, 12, 1, 9), aware(2026, 12, 1, 9) + dt.timedelta(seconds=10)])
    sampler = FakeSampler(2, utilization=[0.0, 100.0], clock=lambda: next(times))

    first, second = sampler.sample(), sampler.sample()

    assert [s["utilization_pct"] for s in first] == [0.0, 100.0]
    assert [s["energy_j"] for s in first] == [0.0, 0.0]
    assert [s["energy_j"] for s in second] == [1000.0, 7000.0]  # 100 W and 700 W for 10 s


# --- the spool -------------------------------------------------------------------------------


def test_the_spool_keeps_samples_across_reopening_and_admits_one_agent(tmp_path):
    spool = Spool(tmp_path)
    spool.append([{"n": 1}, {"n": 2}, {"n": 3}])
    with pytest.raises(SpoolBusy, match="Another agent"):
        Spool(tmp_path)
    spool.delete([spool.oldest(1)[0][0]])
    spool.close()

    with Spool(tmp_path) as reopened:
        assert [payload for _id, payload in reopened.oldest(10)] == [{"n": 2}, {"n": 3}]


def test_the_spool_drops_the_oldest_beyond_its_cap(tmp_path):
    with Spool(tmp_path, max_samples=3) as spool:
        spool.append([{"n": n} for n in range(5)])
        assert [payload["n"] for _id, payload in spool.oldest(10)] == [2, 3, 4]


# --- the loop, with a stand-in server ---------------------------------------------------------


class StubClient:
    def __init__(self, *outcomes):
        self.outcomes = list(outcomes)
        self.batches: list[list[dict]] = []

    def send(self, samples):
        self.batches.append(samples)
        outcome = self.outcomes.pop(0) if self.outcomes else None
        if isinstance(outcome, Exception):
            raise outcome
        return {"accepted": len(samples), "duplicates": 0, "attributed": 0}


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def test_the_agent_keeps_samples_and_backs_off_while_the_server_is_unreachable(
    tmp_path, monkeypatch
):
    monkeypatch.setattr("booking.agent.client.random.uniform", lambda a, b: 1.0)  # no jitter
    clock = Clock()
    client = StubClient(SendFailed("connection refused"), SendFailed("connection refused"))
    agent = Agent(
        sampler=FakeSampler(2), spool=Spool(tmp_path), client=client, interval=10, monotonic=clock
    )

    agent.read()
    first = agent.flush()
    agent.read()
    during_backoff = agent.flush()
    clock.now += 9
    assert agent.flush().error == "backing off"
    clock.now += 3  # 10 s after the first failure
    second = agent.flush()
    clock.now += 25  # the second failure doubled the wait to 20 s
    third = agent.flush()

    assert (first.error, first.left) == ("connection refused", 2)
    assert (during_backoff.error, during_backoff.left) == ("backing off", 4)
    assert (second.error, second.left) == ("connection refused", 4)
    assert (third.sent, third.left, third.error) == (4, 0, None)
    assert len(client.batches) == 3
    agent.close()


def test_the_agent_sets_aside_only_the_samples_the_server_named(tmp_path):
    refused = BatchRefused(
        400, {"detail": "bad", "errors": {"samples.1.device": ["not a device of node"]}}
    )
    client = StubClient(refused)
    agent = Agent(sampler=FakeSampler(3), spool=Spool(tmp_path), client=client)

    result = agent.run_once()

    assert (result.sent, result.rejected, result.left) == (2, 1, 0)
    assert [s["device"] for s in client.batches[1]] == ["0", "2"]
    assert agent.spool.rejected_count() == 1
    agent.close()


def test_the_agent_halves_its_batch_when_the_server_says_too_large(tmp_path):
    client = StubClient(BatchRefused(413, {"detail": "too large"}))
    agent = Agent(sampler=FakeSampler(4), spool=Spool(tmp_path), client=client, batch=4)

    result = agent.run_once()

    assert (result.sent, result.rejected, result.left) == (4, 0, 0)
    assert [len(b) for b in client.batches] == [4, 2, 2]
    agent.close()


def test_the_agent_runs_without_django_installed_on_the_node():
    probe = (
        "import sys, booking.agent.__main__, booking.agent.client; "
        "sys.exit(1 if any(m == 'django' or m.startswith('django.') for m in sys.modules) else 0)"
    )
    assert subprocess.run([sys.executable, "-c", probe], cwd=ROOT, check=False).returncode == 0
    shown = subprocess.run(
        [sys.executable, "-m", "booking.agent", "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert shown.returncode == 0 and "--fake N" in shown.stdout


# --- end to end: agent → HTTP → API → attribution (live server, real database) ---------------


LATER = aware(2026, 12, 1, 14, 0)


@pytest.fixture
def node_setup(transactional_db, org, member):
    """A pool node with 4 devices held 09–13 by an active booking, and the node's key."""
    pool = make_pool(nodes=1, per_node=4, code="GPU-E2E")
    node = Node.objects.get(pool=pool)
    start, end = aware(2026, 12, 1, 9), aware(2026, 12, 1, 13)
    booking = Booking.objects.create(
        organization=org,
        user=member,
        pool=pool,
        quantity=4,
        start=start,
        end=end,
        status=BookingStatus.ACTIVE,
        actual_start=start,
    )
    Allocation.objects.bulk_create(
        [
            Allocation(booking=booking, device=d, node=node, start=start, end=end)
            for d in node.devices.all()
        ]
    )
    return node, node_key_create(node=node), booking


def ticking(start: dt.datetime, step: float = 10.0):
    """A sampler clock: start, start + step, ... one reading per call."""
    state = {"next": start}

    def clock():
        now = state["next"]
        state["next"] = now + dt.timedelta(seconds=step)
        return now

    return clock


def dead_server() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"  # nothing listens there now: connection refused


def test_agent_samples_reach_the_api_and_are_attributed(live_server, node_setup, tmp_path):
    node, key, booking = node_setup
    sampler = FakeSampler(4, utilization=[90, 10, 0, 55], clock=ticking(aware(2026, 12, 1, 10)))
    agent = Agent(
        sampler=sampler, spool=Spool(tmp_path), client=TelemetryClient(live_server.url, key)
    )

    with time_machine.travel(LATER, tick=True):
        result = agent.run_once()
    agent.close()

    assert (result.sent, result.left, result.error) == (4, 0, None)
    assert result.replies == [{"accepted": 4, "duplicates": 0, "attributed": 4}]
    rows = list(
        TelemetrySample.objects.order_by("device__index").values_list(
            "device__index", "booking_id", "utilization_pct", "node_id"
        )
    )
    assert rows == [
        (0, booking.pk, 90.0, node.pk),
        (1, booking.pk, 10.0, node.pk),
        (2, booking.pk, 0.0, node.pk),
        (3, booking.pk, 55.0, node.pk),
    ]


def test_a_restarted_agent_sends_what_it_queued_while_the_server_was_down(
    live_server, node_setup, tmp_path
):
    node, key, booking = node_setup
    clock = ticking(aware(2026, 12, 1, 10))

    with time_machine.travel(LATER, tick=True):
        first = Agent(
            sampler=FakeSampler(4, clock=clock),
            spool=Spool(tmp_path),
            client=TelemetryClient(dead_server(), key, timeout=5),
        )
        for _ in range(3):
            first.read()
            outcome = first.flush(ignore_backoff=True)
            assert outcome.error and "refused" in outcome.error.lower()
        first.close()  # the agent stops (restart, reboot) with 12 samples queued
        assert not TelemetrySample.objects.exists()

        second = Agent(
            sampler=FakeSampler(4, clock=clock),
            spool=Spool(tmp_path),
            client=TelemetryClient(live_server.url, key),
        )
        result = second.run_once()
        second.close()

    assert (result.sent, result.duplicates, result.left) == (16, 0, 0)
    assert TelemetrySample.objects.count() == 16
    assert TelemetrySample.objects.filter(booking=booking).count() == 16
    assert TelemetrySample.objects.values("device", "at").distinct().count() == 16


def test_a_batch_whose_reply_was_lost_is_sent_again_and_stored_once(
    live_server, node_setup, tmp_path
):
    node, key, _booking = node_setup
    real = TelemetryClient(live_server.url, key)

    class LosesReplies:
        def send(self, samples):
            real.send(samples)  # the server stores them ...
            raise SendFailed("timed out")  # ... but the answer never arrives

    clock = ticking(aware(2026, 12, 1, 10))
    with time_machine.travel(LATER, tick=True):
        lossy = Agent(
            sampler=FakeSampler(4, clock=clock), spool=Spool(tmp_path), client=LosesReplies()
        )
        assert lossy.run_once().left == 4
        lossy.close()
        retry = Agent(sampler=FakeSampler(4, clock=clock), spool=Spool(tmp_path), client=real)
        result = retry.run_once()
        retry.close()

    assert (result.sent, result.duplicates, result.left) == (4, 4, 0)
    assert TelemetrySample.objects.count() == 8


def test_the_cli_once_queues_when_down_and_sends_on_the_next_run(
    live_server, node_setup, tmp_path, monkeypatch
):
    node, key, _booking = node_setup
    state = ["--state-dir", str(tmp_path), "--once", "--fake", "4", "--fake-utilization", "12.5"]

    assert main(["--server", dead_server(), "--key", key, "--timeout", "5", *state]) == EX_TEMPFAIL
    assert not TelemetrySample.objects.exists()
    monkeypatch.setenv("TESTBED_AGENT_KEY", key)
    assert main(["--server", live_server.url, *state]) == 0

    assert TelemetrySample.objects.count() == 8
    assert set(TelemetrySample.objects.values_list("utilization_pct", flat=True)) == {12.5}


def test_the_cli_sends_real_nvml_readings_through_the_api(
    live_server, node_setup, tmp_path, monkeypatch
):
    node, key, _booking = node_setup
    monkeypatch.setitem(sys.modules, "pynvml", fake_pynvml())

    code = main(["--server", live_server.url, "--key", key, "--once", "--state-dir", str(tmp_path)])

    assert code == 0
    rows = sorted(
        TelemetrySample.objects.values_list(
            "device__index", "utilization_pct", "memory_used_mb", "power_w", "energy_j"
        )
    )
    assert rows == [(0, 87.0, 61234.0, 512.345, 987654.321), (1, 3.0, 512.0, 71.0, None)]
