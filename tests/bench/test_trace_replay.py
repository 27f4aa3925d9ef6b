"""The trace replay's bookkeeping: no double-booked device in any policy, sane metrics, skips."""

from __future__ import annotations

import csv
import random
from pathlib import Path

import pytest

from bench import trace_replay as tr

NODE_HEADER = ["sn", "cpu_milli", "memory_mib", "gpu", "model"]
POD_HEADER = [
    "name",
    "cpu_milli",
    "memory_mib",
    "num_gpu",
    "gpu_milli",
    "gpu_spec",
    "qos",
    "pod_phase",
    "creation_time",
    "deletion_time",
    "scheduled_time",
]


def write_trace(folder: Path, nodes: list[tuple[str, int]], pods: list[dict]) -> Path:
    with (folder / tr.NODE_FILE).open("w", newline="") as fh:
        out = csv.writer(fh)
        out.writerow(NODE_HEADER)
        for i, (model, gpus) in enumerate(nodes):
            out.writerow([f"node-{i:03d}", 64000, 262144, gpus, model])
    with (folder / tr.POD_FILE).open("w", newline="") as fh:
        out = csv.DictWriter(fh, POD_HEADER)
        out.writeheader()
        for i, pod in enumerate(pods):
            row = {
                "name": f"pod-{i:04d}",
                "cpu_milli": 1000,
                "memory_mib": 1024,
                "num_gpu": 1,
                "gpu_milli": 1000,
                "gpu_spec": "",
                "qos": "LS",
                "pod_phase": "Running",
                "scheduled_time": pod.get("creation_time", ""),
            }
            row.update(pod)
            out.writerow(row)
    return folder


@pytest.fixture
def busy_trace(tmp_path: Path) -> tr.Trace:
    """A small cluster of mixed node sizes, overloaded by a seeded stream of pods."""
    nodes = [("A", 2), ("A", 2), ("A", 4), ("A", 8), ("B", 1), ("B", 4), ("C", 0)]
    rng = random.Random(7)
    pods: list[dict] = []
    clock = 0
    for _ in range(160):
        clock += rng.randint(0, 40)
        gpus = rng.choice([1, 1, 1, 1, 1, 2, 4, 8])
        pods.append(
            {
                "num_gpu": gpus,
                "creation_time": clock,
                "deletion_time": clock + rng.randint(1, 400),
                "gpu_milli": rng.choice([1000, 500]) if gpus == 1 else 1000,
                "gpu_spec": rng.choice(["", "", "A", "B", "A|B"]),
            }
        )
    pods += [
        {"num_gpu": 0, "gpu_milli": 0, "creation_time": 5, "deletion_time": 50},
        {"num_gpu": 1, "creation_time": 9, "deletion_time": 9},
        {"num_gpu": 1, "creation_time": 9, "deletion_time": ""},
        {"num_gpu": 1, "gpu_spec": "Z", "creation_time": 9, "deletion_time": 90},
    ]
    return tr.load_trace(write_trace(tmp_path, nodes, pods))


def test_it_never_double_books_a_device_in_any_policy(busy_trace):
    results = tr.run(busy_trace, [1, 2], seed=3, verify_every=1)

    assert len(results) == 2 * len(tr.POLICIES)
    for result in results:
        assert result.rejected > 0, "the fixture should overload the cluster"
        assert tr.overlapping_devices(result) == []
        by_device: dict[int, list[tuple[int, int]]] = {}
        for _, start, end, devices in result.placements:
            assert len(set(devices)) == len(devices)
            for d in devices:
                by_device.setdefault(d, []).append((start, end))
        for windows in by_device.values():
            for i, (s1, e1) in enumerate(windows):
                for s2, e2 in windows[i + 1 :]:
                    assert not (s1 < e2 and s2 < e1)
        assert result.mismatches == 0  # whole-pool calls agree with the replay's narrowed calls


def test_it_keeps_every_metric_within_0_and_1(busy_trace):
    for result in tr.run(busy_trace, [1], seed=0, verify_every=0):
        for value in (
            result.placement_rate,
            result.gpu_hours_rate,
            result.utilisation,
            result.fragmentation,
        ):
            assert 0.0 <= value <= 1.0
        assert result.placed + result.rejected_capacity + result.rejected_fragmentation == (
            result.requested
        )
        assert len(result.waits_s) == result.rejected and min(result.waits_s) > 0


def test_it_counts_skipped_rows_by_reason(busy_trace):
    assert busy_trace.skipped["node rows with gpu = 0"] == 1
    assert busy_trace.skipped["num_gpu = 0 (CPU-only pod)"] == 1
    assert busy_trace.skipped["empty window (deletion ≤ creation)"] == 1
    assert busy_trace.skipped["no creation or deletion time"] == 1
    assert busy_trace.notes["GPU share (gpu_milli < 1000) booked as one whole device"] > 0

    result = tr.run(busy_trace, [1], seed=0, verify_every=0)[0]

    assert result.skipped["no node of its gpu_spec models in this cluster"] == 1
    too_big = sum(1 for r in busy_trace.requests if r.pools == ("B",) and r.gpus > 4)
    assert (
        too_big
        and result.skipped["needs more GPUs than any one node of its pools (multi-node)"] == too_big
    )


def test_it_finds_the_earliest_later_start_where_a_request_fits(tmp_path):
    pods = [
        {"num_gpu": 2, "creation_time": 0, "deletion_time": 100},
        {"num_gpu": 1, "creation_time": 10, "deletion_time": 30},  # rejected: waits 90 s
        {"num_gpu": 1, "creation_time": 100, "deletion_time": 130},  # placed: all free again
    ]
    trace = tr.load_trace(write_trace(tmp_path, [("A", 2)], pods))

    for result in tr.run(trace, [1], seed=0, verify_every=1):
        assert (result.placed, result.rejected_capacity, result.rejected_fragmentation) == (2, 1, 0)
        assert result.waits_s == [90]
        assert result.utilisation == pytest.approx((2 * 100 + 30) / (2 * 130))


@pytest.mark.skipif(not (tr.TRACE_DIR / tr.POD_FILE).exists(), reason="openb trace not present")
def test_it_replays_the_real_trace_with_a_limit_and_writes_nothing(capsys):
    before = tr_doc_state()

    assert tr.main(["--limit", "150", "--no-write", "--shrink", "1,100"]) == 0

    out = capsys.readouterr().out
    assert "Beware of Fragmentation" in out and "| full cluster | best fit" in out
    assert tr_doc_state() == before


def tr_doc_state() -> tuple[bool, float]:
    from bench.report import DOC

    return (DOC.exists(), DOC.stat().st_mtime if DOC.exists() else 0.0)
