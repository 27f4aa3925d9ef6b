"""Offline allocation benchmark: replay the Alibaba GPU trace through the pure allocator.

    python -m bench.trace_replay [--limit N] [--seed S] [--no-write] [--shrink K,...]
                                 [--max-days D] [--verify-every N] [--trace-dir DIR]

Data: cluster-trace-gpu-v2023 "openb" (alibaba/clusterdata), the two CSV files in
/work/shared/data/traces (or $TRACE_DIR): Q. Weng et al., "Beware of Fragmentation: Scheduling
GPU-Sharing Workloads with Fragmentation Gradient Descent", USENIX ATC 2023.

Model. One pool per GPU model of the node list, one node per row (rows with gpu = 0 skipped).
Each pod becomes a booking of num_gpu whole devices over [creation_time, deletion_time), placed
online in creation order at its creation time (first come, first served); one that does not fit
then is rejected and not retried. A pod whose gpu_spec names models may use any of them; an
empty gpu_spec (every pod in openb) may use any pool, so the allocator gets the union of the
pools' nodes. Requests larger than every node of their pools would need several nodes, which
our allocator only does with whole nodes of the pool's largest size; they are skipped and
counted instead. Policies: `choose_devices` (best fit) and three baselines kept here.

Bookkeeping is incremental: per-device busy lists, rebuilt into DeviceState/NodeState only for
the node a placement touches, plus free-device counters and a release heap. Each call is handed
the nodes that could take the request; for the policies that rank nodes by free count alone with
ties to the lower id (best, first, worst fit), the idle nodes of one (pool, size) class are
collapsed into their lowest-id member, which cannot change their answer. Every
`--verify-every`-th request the policy is also called with the whole pool, the answers are
compared and that call is timed: the per-call cost a service passing the whole pool would pay.
"""

from __future__ import annotations

import argparse
import bisect
import csv
import heapq
import os
import random
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from booking.allocator import DeviceState, NodeState, Placement, choose_devices

TRACE_DIR = Path(os.environ.get("TRACE_DIR", "/work/shared/data/traces"))
NODE_FILE = "openb_node_list_gpu_node.csv"
POD_FILE = "openb_pod_list_default.csv"
# The trace counts seconds from an unstated origin; only differences matter here.
EPOCH = datetime(2023, 1, 1, tzinfo=UTC)
CITATION = (
    'Q. Weng et al., "Beware of Fragmentation: Scheduling GPU-Sharing Workloads with '
    'Fragmentation Gradient Descent", USENIX ATC 2023'
)
SOURCE = "Alibaba cluster-trace-gpu-v2023 (`openb`, alibaba/clusterdata)"
DEFAULT_SHRINK = (1, 50, 100, 150)

AllocFn = Callable[[Sequence[NodeState], datetime, datetime, int], Placement | None]


def at(seconds: int) -> datetime:
    return EPOCH + timedelta(seconds=seconds)


# --------------------------------------------------------------------------- the trace


@dataclass(frozen=True)
class NodeRow:
    sn: str
    model: str
    gpus: int


@dataclass(frozen=True)
class Request:
    name: str
    gpus: int
    start: int  # seconds
    end: int
    pools: tuple[str, ...] | None  # None: any pool
    phase: str


@dataclass
class Trace:
    nodes: list[NodeRow]
    requests: list[Request]
    node_rows: int
    pod_rows: int
    skipped: Counter[str] = field(default_factory=Counter)  # rows not replayed, by reason
    notes: Counter[str] = field(default_factory=Counter)  # rows replayed with a caveat


def load_trace(
    trace_dir: Path = TRACE_DIR, *, limit: int | None = None, max_days: float | None = None
) -> Trace:
    """Read both CSV files; `limit` keeps the first N pods in creation order."""
    skipped: Counter[str] = Counter()
    notes: Counter[str] = Counter()
    nodes: list[NodeRow] = []
    node_rows = 0
    with (trace_dir / NODE_FILE).open(newline="") as fh:
        for row in csv.DictReader(fh):
            node_rows += 1
            gpus = int(row["gpu"] or 0)
            if gpus <= 0:
                skipped["node rows with gpu = 0"] += 1
                continue
            nodes.append(NodeRow(row["sn"], row["model"].strip(), gpus))
    with (trace_dir / POD_FILE).open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    keyed = [
        (int(r["creation_time"]) if r["creation_time"] else -1, i, r) for i, r in enumerate(rows)
    ]
    keyed.sort(key=lambda k: (k[0], k[1]))
    if limit is not None:
        keyed = keyed[:limit]
    horizon_end = max((int(r["deletion_time"]) for r in rows if r["deletion_time"]), default=0)
    cap = None if max_days is None else int(max_days * 86400)
    requests: list[Request] = []
    for _, _, row in keyed:
        gpus = int(row["num_gpu"] or 0)
        if gpus <= 0:
            skipped["num_gpu = 0 (CPU-only pod)"] += 1
            continue
        if not row["creation_time"] or not row["deletion_time"]:
            skipped["no creation or deletion time"] += 1
            continue
        start, end = int(row["creation_time"]), int(row["deletion_time"])
        if end <= start:
            skipped["empty window (deletion ≤ creation)"] += 1
            continue
        if cap is not None and end - start > cap:
            end = start + cap
            notes[f"lifetime capped at {max_days:g} days"] += 1
        if gpus == 1 and int(row["gpu_milli"] or 1000) < 1000:
            notes["GPU share (gpu_milli < 1000) booked as one whole device"] += 1
        if row["pod_phase"] == "Pending":
            notes["Pending in the trace (never scheduled there), replayed anyway"] += 1
        if int(row["deletion_time"]) == horizon_end:
            notes["still running at the trace's end (lifetime censored there)"] += 1
        spec = tuple(m.strip() for m in (row["gpu_spec"] or "").split("|") if m.strip())
        requests.append(Request(row["name"], gpus, start, end, spec or None, row["pod_phase"]))
    return Trace(nodes, requests, node_rows, len(rows), skipped, notes)


# --------------------------------------------------------------------------- the cluster


@dataclass
class Cluster:
    label: str
    nodes: list[NodeRow]
    pools: list[str]
    node_pool: list[int]
    node_devices: list[tuple[int, ...]]

    @property
    def devices(self) -> int:
        return sum(len(d) for d in self.node_devices)

    @property
    def mix(self) -> str:
        """Nodes per model and size, e.g. "G2 5×8 GPUs, T4 4×2 GPUs"."""
        counts = Counter((r.model, r.gpus) for r in self.nodes)
        return ", ".join(f"{m} {c}×{g}" for (m, g), c in sorted(counts.items())) + " (nodes × GPUs)"


def build_cluster(rows: Sequence[NodeRow], shrink: int = 1) -> Cluster:
    """One pool per model; with shrink K, every K-th node in (model, size, sn) order."""
    if shrink > 1:
        ordered = sorted(rows, key=lambda r: (r.model, r.gpus, r.sn))
        rows = [r for i, r in enumerate(ordered) if i % shrink == shrink // 2]
    pools = sorted({r.model for r in rows})
    pool_index = {m: i for i, m in enumerate(pools)}
    node_devices: list[tuple[int, ...]] = []
    next_device = 0
    for r in rows:
        node_devices.append(tuple(range(next_device, next_device + r.gpus)))
        next_device += r.gpus
    total = sum(r.gpus for r in rows)
    label = "full cluster" if shrink <= 1 else f"1/{shrink} node sample"
    label += f" ({len(rows):,} nodes, {total:,} GPUs)"
    return Cluster(label, list(rows), pools, [pool_index[r.model] for r in rows], node_devices)


# --------------------------------------------------------------------------- policies


def _one_node_can(nodes: Sequence[NodeState], quantity: int) -> bool:
    """Whether `quantity` is within a node's size: else the allocator's multi-node rule applies."""
    return any(len(n.devices) >= quantity for n in nodes)


def first_fit(
    nodes: Sequence[NodeState], start: datetime, end: datetime, quantity: int
) -> Placement | None:
    """The lowest node id with enough free devices; beyond a node, the allocator's whole-node rule."""
    if not _one_node_can(nodes, quantity):
        return choose_devices(nodes, start, end, quantity) if nodes else None
    for node in sorted(nodes, key=lambda n: n.id):
        free = node.free_device_ids(start, end)
        if len(free) >= quantity:
            return Placement(node_ids=(node.id,), device_ids=tuple(free[:quantity]))
    return None


def worst_fit(
    nodes: Sequence[NodeState], start: datetime, end: datetime, quantity: int
) -> Placement | None:
    """The feasible node with the most free devices (ties to the lower id)."""
    if not _one_node_can(nodes, quantity):
        return choose_devices(nodes, start, end, quantity) if nodes else None
    best: tuple[tuple[int, int], NodeState, list[int]] | None = None
    for node in nodes:
        free = node.free_device_ids(start, end)
        if len(free) < quantity:
            continue
        key = (-len(free), node.id)
        if best is None or key < best[0]:
            best = (key, node, free)
    if best is None:
        return None
    _, node, free = best
    return Placement(node_ids=(node.id,), device_ids=tuple(free[:quantity]))


class RandomFit:
    """A feasible node drawn uniformly (seeded), its lowest free device ids."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)

    def clone(self) -> RandomFit:
        twin = RandomFit(0)
        twin.rng.setstate(self.rng.getstate())
        return twin

    def __call__(
        self, nodes: Sequence[NodeState], start: datetime, end: datetime, quantity: int
    ) -> Placement | None:
        if not _one_node_can(nodes, quantity):
            return choose_devices(nodes, start, end, quantity) if nodes else None
        left = list(nodes)
        while left:
            i = self.rng.randrange(len(left))
            node = left[i]
            free = node.free_device_ids(start, end)
            if len(free) >= quantity:
                return Placement(node_ids=(node.id,), device_ids=tuple(free[:quantity]))
            left[i] = left[-1]
            left.pop()
        return None


@dataclass(frozen=True)
class PolicySpec:
    name: str
    make: Callable[[int], AllocFn]
    # Ranks nodes by free count alone, ties to the lower id: collapsing idle twins is exact.
    ranked: bool


POLICIES = (
    PolicySpec("best fit (`choose_devices`)", lambda seed: choose_devices, True),
    PolicySpec("first fit", lambda seed: first_fit, True),
    PolicySpec("worst fit", lambda seed: worst_fit, True),
    PolicySpec("random fit", lambda seed: RandomFit(seed), False),
)


# --------------------------------------------------------------------------- the replay


@dataclass
class Result:
    policy: str
    cluster: str
    devices: int
    mix: str = ""
    requested: int = 0
    placed: int = 0
    gpu_s_requested: int = 0
    gpu_s_placed: int = 0
    horizon_s: int = 0
    rejected_capacity: int = 0
    rejected_fragmentation: int = 0
    waits_s: list[int] = field(default_factory=list)
    frag_sum: float = 0.0
    frag_n: int = 0
    calls: int = 0
    call_s: float = 0.0
    full_calls: int = 0
    full_call_s: float = 0.0
    mismatches: int = 0
    skipped: Counter[str] = field(default_factory=Counter)
    # (request index, start, end, device ids): every placement made, for invariant checks.
    placements: list[tuple[int, int, int, tuple[int, ...]]] = field(default_factory=list)

    @property
    def rejected(self) -> int:
        return self.requested - self.placed

    def ratio(self, num: float, den: float) -> float:
        return num / den if den else 0.0

    @property
    def placement_rate(self) -> float:
        return self.ratio(self.placed, self.requested)

    @property
    def gpu_hours_rate(self) -> float:
        return self.ratio(self.gpu_s_placed, self.gpu_s_requested)

    @property
    def utilisation(self) -> float:
        return self.ratio(self.gpu_s_placed, self.devices * self.horizon_s)

    @property
    def fragmentation(self) -> float:
        return self.ratio(self.frag_sum, self.frag_n)

    @property
    def mean_wait_h(self) -> float | None:
        return sum(self.waits_s) / len(self.waits_s) / 3600 if self.waits_s else None

    @property
    def call_us(self) -> float:
        return self.ratio(self.call_s, self.calls) * 1e6

    @property
    def full_call_us(self) -> float | None:
        return self.full_call_s / self.full_calls * 1e6 if self.full_calls else None


class _State:
    """The cluster's bookings as of the replay's clock, kept incrementally."""

    def __init__(self, cluster: Cluster, size_tail: tuple[list[int], int]) -> None:
        self.cluster = cluster
        self.tail, self.tail_total = size_tail
        self.size = [len(d) for d in cluster.node_devices]
        self.free = list(self.size)
        n_devices = cluster.devices
        self.busy: list[list[tuple[int, int]]] = [[] for _ in range(n_devices)]
        self.dev_end = [0] * n_devices  # end of each device's latest booking
        self.dev_state = [DeviceState(d, ()) for d in range(n_devices)]
        self.node_state = [
            NodeState(n, tuple(self.dev_state[d] for d in devs))
            for n, devs in enumerate(cluster.node_devices)
        ]
        self.releases: list[tuple[int, int, int]] = []  # (end, node, devices freed)
        top = max(self.size, default=0)
        self.hist = [[0] * (top + 1) for _ in cluster.pools]  # nodes by free count, per pool
        self.idle: dict[tuple[int, int], list[int]] = {}  # (pool, size) -> idle node ids, sorted
        for n, size in enumerate(self.size):
            self.hist[cluster.node_pool[n]][size] += 1
            self.idle.setdefault((cluster.node_pool[n], size), []).append(n)
        self.partial: set[int] = set()  # nodes with at least one busy device
        # Per pool: free devices, and Σ free · #(requests needing more than that free), whole
        # numbers kept as nodes change: the expected unusable free devices times the count.
        self.pool_free = [0] * len(cluster.pools)
        self.pool_unusable = [0] * len(cluster.pools)
        for n, size in enumerate(self.size):
            self.pool_free[cluster.node_pool[n]] += size
            self.pool_unusable[cluster.node_pool[n]] += size * self._tail(size)

    def _tail(self, free: int) -> int:
        return self.tail[free] if free < len(self.tail) else 0

    def advance(self, now: int) -> None:
        while self.releases and self.releases[0][0] <= now:
            _, node, count = heapq.heappop(self.releases)
            self._set_free(node, self.free[node] + count)

    def _set_free(self, node: int, new: int) -> None:
        old, size, pool = self.free[node], self.size[node], self.cluster.node_pool[node]
        self.hist[pool][old] -= 1
        self.hist[pool][new] += 1
        self.pool_free[pool] += new - old
        self.pool_unusable[pool] += new * self._tail(new) - old * self._tail(old)
        idle = self.idle[(pool, size)]
        if old == size:
            del idle[bisect.bisect_left(idle, node)]
        if new == size:
            bisect.insort(idle, node)
            self.partial.discard(node)
        else:
            self.partial.add(node)
        self.free[node] = new

    def place(self, node: int, devices: tuple[int, ...], start: int, end: int) -> None:
        for d in devices:
            if self.dev_end[d] > start:
                raise AssertionError(f"device {d} handed out while booked until {self.dev_end[d]}")
            # Bookings that ended by now never matter again: every later query starts later.
            kept = [iv for iv in self.busy[d] if iv[1] > start]
            kept.append((start, end))
            self.busy[d] = kept
            self.dev_end[d] = end
            self.dev_state[d] = DeviceState(d, tuple((at(s), at(e)) for s, e in kept))
        self.node_state[node] = NodeState(
            node, tuple(self.dev_state[d] for d in self.cluster.node_devices[node])
        )
        self._set_free(node, self.free[node] - len(devices))
        heapq.heappush(self.releases, (end, node, len(devices)))

    def free_in(self, pools: frozenset[int]) -> int:
        return sum(self.pool_free[p] for p in pools)

    def fragmentation(self, pools: frozenset[int]) -> float | None:
        free = sum(self.pool_free[p] for p in pools)
        if not free:
            return None
        return sum(self.pool_unusable[p] for p in pools) / (free * self.tail_total)

    def candidates(self, pools: frozenset[int], quantity: int, *, collapse: bool) -> list[int]:
        """Node ids that have `quantity` free devices now, ascending."""
        pool_of = self.cluster.node_pool
        found = [n for n in self.partial if self.free[n] >= quantity and pool_of[n] in pools]
        for (pool, size), ids in self.idle.items():
            if ids and size >= quantity and pool in pools:
                if collapse:
                    found.append(ids[0])
                else:
                    found.extend(ids)
        found.sort()
        return found

    def earliest_fit(
        self, pools: frozenset[int], quantity: int, now: int
    ) -> tuple[int, int | None]:
        """(earliest start ≥ now with a node of `quantity` free, latest device release before it)."""
        pool_of, devs_of, dev_end = self.cluster.node_pool, self.cluster.node_devices, self.dev_end
        best = None
        for n in range(len(self.size)):
            if pool_of[n] in pools and self.size[n] >= quantity:
                ends = sorted(max(dev_end[d], now) for d in devs_of[n])
                if best is None or ends[quantity - 1] < best:
                    best = ends[quantity - 1]
        if best is None:
            raise AssertionError("no node is large enough; such requests are skipped earlier")
        before = [
            dev_end[d]
            for n in range(len(self.size))
            if pool_of[n] in pools
            for d in devs_of[n]
            if now < dev_end[d] < best
        ]
        return best, max(before, default=None)


def replay(
    cluster: Cluster,
    requests: Sequence[Request],
    spec: PolicySpec,
    *,
    seed: int = 0,
    verify_every: int = 50,
    size_tail: tuple[list[int], int] | None = None,
) -> Result:
    """Replay `requests` (creation order) against `cluster` with one policy."""
    if size_tail is None:
        size_tail = tail_counts(requests)
    state = _State(cluster, size_tail)
    policy = spec.make(seed)
    result = Result(spec.name, cluster.label, cluster.devices, cluster.mix)
    pool_index = {m: i for i, m in enumerate(cluster.pools)}
    pool_max = [0] * len(cluster.pools)
    for n, p in enumerate(cluster.node_pool):
        pool_max[p] = max(pool_max[p], state.size[n])
    all_pools = frozenset(range(len(cluster.pools)))
    whole: dict[frozenset[int], list[int]] = {}
    first, last = None, None
    for index, req in enumerate(requests):
        if req.pools is None:
            pools = all_pools
        else:
            pools = frozenset(pool_index[m] for m in req.pools if m in pool_index)
            if not pools:
                result.skipped["no node of its gpu_spec models in this cluster"] += 1
                continue
        if req.gpus > max(pool_max[p] for p in pools):
            result.skipped["needs more GPUs than any one node of its pools (multi-node)"] += 1
            continue
        now, duration = req.start, req.end - req.start
        state.advance(now)
        result.requested += 1
        result.gpu_s_requested += req.gpus * duration
        first = now if first is None else first
        last = req.end if last is None else max(last, req.end)

        free_total = state.free_in(pools)
        frag = state.fragmentation(pools)
        if frag is not None:
            result.frag_sum += frag
            result.frag_n += 1

        nodes = [
            state.node_state[n] for n in state.candidates(pools, req.gpus, collapse=spec.ranked)
        ]
        start_at, end_at = at(now), at(req.end)
        t0 = time.perf_counter()
        placement = policy(nodes, start_at, end_at, req.gpus)
        result.call_s += time.perf_counter() - t0
        result.calls += 1

        if verify_every and index % verify_every == 0:
            if pools not in whole:
                whole[pools] = [n for n, p in enumerate(cluster.node_pool) if p in pools]
            every = [state.node_state[n] for n in whole[pools]]
            twin = policy.clone() if isinstance(policy, RandomFit) else policy
            t0 = time.perf_counter()
            check = twin(every, start_at, end_at, req.gpus)
            result.full_call_s += time.perf_counter() - t0
            result.full_calls += 1
            same = check == placement if spec.ranked else (check is None) == (placement is None)
            result.mismatches += not same

        if placement is not None:
            if len(placement.node_ids) != 1:
                raise AssertionError("multi-node placements are skipped before the call")
            state.place(placement.node_ids[0], placement.device_ids, now, req.end)
            result.placed += 1
            result.gpu_s_placed += req.gpus * duration
            result.placements.append((index, now, req.end, placement.device_ids))
            continue

        if free_total >= req.gpus:
            result.rejected_fragmentation += 1
        else:
            result.rejected_capacity += 1
        # Earliest later start, given the bookings made so far (later arrivals ignored),
        # confirmed with the allocator: it fits there and not at the release just before.
        start, before = state.earliest_fit(pools, req.gpus, now)
        every = [state.node_state[n] for n, p in enumerate(cluster.node_pool) if p in pools]
        if choose_devices(every, at(start), at(start + duration), req.gpus) is None:
            raise AssertionError(f"{req.name}: the allocator does not fit it at {start}")
        if before is not None and choose_devices(
            every, at(before), at(before + duration), req.gpus
        ):
            raise AssertionError(f"{req.name}: the allocator fits it earlier, at {before}")
        result.waits_s.append(start - now)
    result.horizon_s = (last - first) if first is not None and last is not None else 0
    return result


def tail_counts(requests: Sequence[Request]) -> tuple[list[int], int]:
    """([requests needing more than f GPUs for f = 0..max], requests): the size mix's tail."""
    top = max((r.gpus for r in requests), default=0)
    counts = Counter(r.gpus for r in requests)
    return [sum(c for g, c in counts.items() if g > f) for f in range(top + 1)], len(requests) or 1


def peak_demand(requests: Sequence[Request]) -> tuple[int, int]:
    """(most GPUs requested at once, when)."""
    events = sorted(
        [(r.start, r.gpus) for r in requests] + [(r.end, -r.gpus) for r in requests],
        key=lambda e: (e[0], e[1]),
    )
    current = peak = when = 0
    for moment, delta in events:
        current += delta
        if current > peak:
            peak, when = current, moment
    return peak, when


def overlapping_devices(result: Result) -> list[int]:
    """Devices that hold two overlapping placements (must be empty)."""
    by_device: dict[int, list[tuple[int, int]]] = {}
    for _, start, end, devices in result.placements:
        for d in devices:
            by_device.setdefault(d, []).append((start, end))
    bad = []
    for d, windows in by_device.items():
        windows.sort()
        if any(b[0] < a[1] for a, b in zip(windows, windows[1:], strict=False)):
            bad.append(d)
    return bad


# --------------------------------------------------------------------------- report


def _pct(x: float) -> str:
    return f"{100 * x:.2f} %"


def _short(policy: str) -> str:
    return policy.split(" (")[0]


def render(
    trace: Trace,
    results: Sequence[Result],
    *,
    seed: int,
    limit: int | None,
    elapsed_s: float,
    verify_every: int,
    shrinks: Sequence[int],
) -> str:
    requests = trace.requests
    peak, peak_at = peak_demand(requests)
    sizes = Counter(r.gpus for r in requests)
    span_days = max((r.end for r in requests), default=0) / 86400
    longest_days = max((r.end - r.start for r in requests), default=0) / 86400
    len_devices = sum(n.gpus for n in trace.nodes)
    command = "python -m bench.trace_replay" + (f" --limit {limit}" if limit else "")
    command += f" --seed {seed} --shrink {','.join(map(str, shrinks))}"
    lines = [
        "## Allocation on a real GPU trace (Alibaba openb)",
        "",
        f"Data: {SOURCE}, {trace.node_rows:,} GPU nodes and {trace.pod_rows:,} pods"
        + (f" (the first {limit:,} by creation time)" if limit else "")
        + f"; {CITATION}.",
        "",
        f"`{command}`: each pod becomes a booking of num_gpu whole devices over "
        "[creation, deletion), placed online in creation order at its creation time (first come "
        "first served, no queue: a request that does not fit then is rejected). The pool is any "
        "of its gpu_spec models, and every openb pod leaves gpu_spec empty, so each call gets "
        "the union of the model pools. "
        f"{len(requests):,} requests replayed ("
        + ", ".join(f"{c:,} × {g} GPU" for g, c in sorted(sizes.items()))
        + f"); at most {peak:,} GPUs are requested at once (day {peak_at / 86400:.0f} of "
        f"{span_days:.0f}), {_pct(peak / max(len_devices, 1))} of the cluster's GPUs; the "
        "same replay therefore also runs "
        "against node samples (every K-th node in (model, size, sn) order), where policies "
        "compete for devices:",
        "",
    ]
    seen: dict[str, str] = {}
    for r in results:
        seen.setdefault(r.cluster, r.mix)
    lines += [f"- {label}: {mix}" for label, mix in seen.items()]
    lines += [
        "",
        "| cluster | policy | placed / requested | GPU-h placed / requested | utilisation "
        "| rejected: capacity / fragmented | fragmentation | mean wait (h) | µs / call | "
        "µs / call, whole pool |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        wait = f"{r.mean_wait_h:.1f}" if r.mean_wait_h is not None else "–"
        full = f"{r.full_call_us:,.0f}" if r.full_call_us is not None else "–"
        lines.append(
            f"| {r.cluster.split(' (')[0]} | {r.policy} "
            f"| {r.placed:,} / {r.requested:,} ({_pct(r.placement_rate)}) "
            f"| {_pct(r.gpu_hours_rate)} | {_pct(r.utilisation)} "
            f"| {r.rejected_capacity:,} / {r.rejected_fragmentation:,} | {r.fragmentation:.4f} "
            f"| {wait} | {r.call_us:,.0f} | {full} |"
        )
    skipped = Counter(trace.skipped)
    for r in results:  # the same for every policy of one cluster
        for reason, count in r.skipped.items():
            skipped[f"{reason} ({r.cluster.split(' (')[0]})"] = count
    lines += [
        "",
        "Rows not replayed: "
        + ("; ".join(f"{reason}: {count:,}" for reason, count in sorted(skipped.items())) or "none")
        + ". Replayed with a caveat: "
        + ("; ".join(f"{note}: {count:,}" for note, count in sorted(trace.notes.items())) or "none")
        + f". The longest lifetime is {longest_days:.0f} days: long-lived services, not errors, "
        "so lifetimes are capped only with `--max-days`.",
    ]
    mismatches = sum(r.mismatches for r in results)
    checked = sum(r.full_calls for r in results)
    lines += [
        "",
        "*Utilisation*: busy device-seconds / (devices × span from first creation to last "
        "deletion). *Rejected*: did not fit at its creation time; *fragmented* when the pools "
        "had at least num_gpu free devices in all but no node had that many, *capacity* "
        "otherwise (at a rejection every free device is on a node with too few by definition, so "
        "that share is always 1 and is not shown). *Fragmentation* (the FGD paper's measure, for "
        "whole GPUs): at each arrival, the share of free devices that a request drawn from the "
        "replayed size mix could not use because their node has fewer free, "
        "Σ_nodes free · P(num_gpu > free) / Σ free, averaged over arrivals. *Mean wait*: for "
        "rejected requests, how much later some node would first fit it given the bookings "
        "already made (later arrivals ignored), from the release times, each confirmed with "
        "`choose_devices` (fits then, not at the release before). *µs / call*: the policy as "
        "the replay calls it (only nodes with enough free devices, idle nodes of one pool and "
        "size collapsed to the lowest id for the ranked policies, which cannot change their "
        + (
            f"answer); *whole pool*: every {verify_every}th request again with every node of its "
            f"pools, as a service would call it ({checked:,} calls; {mismatches} answers differed "
            "from the replay's, random fit compared on fit / no fit only)."
            if verify_every
            else "answer); *whole pool*: not measured (`--verify-every 0`)."
        )
        + " Random fit uses one seed.",
        "",
        f"Result: {interpret(results, peak)}",
        "",
        f"_Whole run, loading included: {elapsed_s:.1f} s._",
    ]
    return "\n".join(lines)


def interpret(results: Sequence[Result], peak: int) -> str:
    clusters: dict[str, list[Result]] = {}
    for r in results:
        clusters.setdefault(r.cluster.split(" (")[0], []).append(r)
    calm = [label for label, rows in clusters.items() if all(r.rejected == 0 for r in rows)]
    busy = {label: rows for label, rows in clusters.items() if label not in calm}
    parts = []
    if calm:
        devices = max(r.devices for label in calm for r in clusters[label])
        parts.append(
            f"with at most {peak:,} GPUs requested at once, every policy places every request on "
            + " and ".join(f"the {label}" for label in calm)
            + (f" ({devices:,} GPUs)" if len(calm) == 1 else f" (the largest has {devices:,} GPUs)")
            + ", so there the policies cannot be told apart"
        )
    if busy:
        best = POLICIES[0].name
        top = {label: max(r.gpu_hours_rate for r in rows) for label, rows in busy.items()}
        leaders = {
            label: [r for r in rows if r.gpu_hours_rate == top[label]]
            for label, rows in busy.items()
        }
        if all(any(r.policy == best for r in leaders[label]) for label in busy):
            gaps = [
                top[label] - min(r.gpu_hours_rate for r in rows) for label, rows in busy.items()
            ]
            low, high = 100 * min(gaps), 100 * max(gaps)
            spread = f"{low:.1f}" if f"{low:.1f}" == f"{high:.1f}" else f"{low:.1f}–{high:.1f}"
            text = (
                "on the samples where devices run short, best fit places the most GPU-hours "
                f"(ties included) on every one ({spread} points above the weakest policy)"
            )
        else:
            text = "on the samples where devices run short, the most GPU-hours go to " + ", ".join(
                f"{' and '.join(_short(r.policy) for r in leaders[label])} on the {label}"
                for label in busy
            )
        fewest = [
            label
            for label, rows in busy.items()
            if any(r.policy == POLICIES[0].name for r in rows)
            and min(r.rejected_fragmentation for r in rows)
            == next(r.rejected_fragmentation for r in rows if r.policy == POLICIES[0].name)
        ]
        text += (
            f", and best fit has the fewest rejections from fragmentation (ties included) on "
            f"{len(fewest)} of them"
        )
        for label, rows in busy.items():
            by_count = max(rows, key=lambda r: r.placement_rate)
            if by_count.gpu_hours_rate < top[label]:
                text += (
                    f"; on the {label}, {_short(by_count.policy)} places the most requests "
                    f"({_pct(by_count.placement_rate)}) but only {_pct(by_count.gpu_hours_rate)} "
                    "of the GPU-hours, so what it turned away was bigger or longer"
                )
        parts.append(text)
    sentence = "; ".join(parts)
    return (
        sentence[0].upper()
        + sentence[1:]
        + " (GPU shares are booked as whole GPUs and nothing queues, so this is a packing "
        "comparison, not a reproduction of the cluster)."
    )


# --------------------------------------------------------------------------- main


def run(trace: Trace, shrinks: Sequence[int], *, seed: int, verify_every: int) -> list[Result]:
    tail = tail_counts(trace.requests)
    results = []
    for shrink in shrinks:
        cluster = build_cluster(trace.nodes, shrink)
        for spec in POLICIES:
            result = replay(
                cluster, trace.requests, spec, seed=seed, verify_every=verify_every, size_tail=tail
            )
            if overlapping_devices(result):
                raise AssertionError(f"{spec.name} on {cluster.label}: overlapping placements")
            results.append(result)
    return results


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=None, help="replay the first N pods only")
    parser.add_argument("--seed", type=int, default=0, help="seed of random fit")
    parser.add_argument("--no-write", action="store_true", help="print only, leave docs alone")
    parser.add_argument(
        "--shrink",
        default=",".join(map(str, DEFAULT_SHRINK)),
        help="clusters to replay against: 1 = all nodes, K = every K-th node",
    )
    parser.add_argument("--max-days", type=float, default=None, help="cap each lifetime")
    parser.add_argument(
        "--verify-every",
        type=int,
        default=50,
        help="every N-th call again with the whole pool (0: never)",
    )
    parser.add_argument("--trace-dir", type=Path, default=TRACE_DIR)
    args = parser.parse_args(argv)
    shrinks = [int(k) for k in args.shrink.split(",") if k.strip()]

    began = time.perf_counter()
    trace = load_trace(args.trace_dir, limit=args.limit, max_days=args.max_days)
    results = run(trace, shrinks, seed=args.seed, verify_every=args.verify_every)
    elapsed = time.perf_counter() - began
    markdown = render(
        trace,
        results,
        seed=args.seed,
        limit=args.limit,
        elapsed_s=elapsed,
        verify_every=args.verify_every,
        shrinks=shrinks,
    )
    print(markdown)
    if not args.no_write:
        from bench.report import write_section

        print(f"\nwrote {write_section('trace-replay', markdown)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
