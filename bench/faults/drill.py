"""Running one drill: private stack, steady load, the fault, the settle, the checks, the report.

A drill module defines `FAULT` (a function given the stack, the load and the verdict, that
injects its fault while the load runs and returns the fault windows as wall-clock
(start, end) pairs) and calls `main(...)`. Each drill prints PASS or FAIL with its
figures and exits 0 (PASS) or 1 (FAIL).
"""

from __future__ import annotations

import json
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass

from bench.faults.checks import Verdict, verify, wait_until_final
from bench.faults.harness import SWEEP_LOOP_SECONDS, Stack
from bench.faults.load import Load, demand_hours

MARGIN_SECONDS = 10.0  # on top of sweep interval + sweeper period: a worker's restart, a backlog
ERROR_GRACE_SECONDS = 5.0  # errors this soon after a fault ends still count as the fault's


@dataclass
class Plan:
    name: str
    title: str
    seconds: float = 40.0  # how long the load runs, fault included
    clients: int = 8
    rate: float = 12.0  # requests per second, all clients together
    web_instances: int = 1
    workers: int = 1
    worker_concurrency: int = 2
    sweep_seconds: int = 6
    decide_delay_ms: int = 0
    flag_ttl_seconds: int = 10
    extra_bound: float = 0.0  # a drill whose bound is more (the coalescing flag's TTL)


def wait_ready(stack: Stack, seconds: float = 90) -> None:
    deadline = time.monotonic() + seconds
    for port in stack.web_ports:
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=3) as r:  # noqa: S310
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"web on {port} not healthy: {stack.tail(port)}")
            time.sleep(0.3)
    wait_workers(stack, stack.live_workers(), deadline)


def wait_workers(stack: Stack, count: int, deadline: float | None = None) -> float:
    """Until `count` workers answer a control ping; returns the wall time they did."""
    deadline = deadline or time.monotonic() + 90
    while True:
        try:
            replies = stack.celery().control.ping(timeout=1.0)
        except Exception:
            replies = []
        if len(replies) >= count:
            return time.time()
        if time.monotonic() > deadline:
            raise RuntimeError(
                f"{len(replies)}/{count} Celery workers answer: {stack.errors_in_logs()}"
            )
        time.sleep(0.5)


Fault = Callable[[Stack, Load, Verdict], list[tuple[float, float]]]
After = Callable[[Stack, Load, Verdict], None]


def run(plan: Plan, fault: Fault, after: After | None = None) -> Verdict:
    bound = plan.sweep_seconds + SWEEP_LOOP_SECONDS + MARGIN_SECONDS + plan.extra_bound
    verdict = Verdict()
    t_start = time.monotonic()
    with Stack(
        plan.name,
        demand_hours=demand_hours(plan.rate, plan.seconds),
        web_instances=plan.web_instances,
        workers=plan.workers,
        worker_concurrency=plan.worker_concurrency,
        sweep_seconds=plan.sweep_seconds,
        decide_delay_ms=plan.decide_delay_ms,
        flag_ttl_seconds=plan.flag_ttl_seconds,
    ) as stack:
        wait_ready(stack)
        load = Load(stack, clients=plan.clients, rate=plan.rate, seconds=plan.seconds)
        load.start()
        faults: list[tuple[float, float]] = []
        try:
            faults = fault(stack, load, verdict)
        except Exception as exc:  # the drill itself broke: a FAIL, and still check what we can
            verdict.failures.append(f"the drill could not go on: {type(exc).__name__}: {exc}")
            faults = [(load.started_at, time.time())]
            stack.ensure_running()
        finally:
            load.stop()
        last = max([b for _a, b in faults] + [max((r.t1 for r in load.results), default=0.0)])
        wait_until_final(stack, last, bound)
        if after is not None:
            try:
                after(stack, load, verdict)
            except Exception as exc:
                verdict.failures.append(f"the drill's last step broke: {type(exc).__name__}: {exc}")
        checked = verify(stack, load, faults=faults, bound=bound)
        verdict.failures += checked.failures
        verdict.notes += checked.notes
        _load_figures(verdict, load, faults)
        verdict.figures.update(checked.figures)
        verdict.figures["processes that exited by themselves (restarted)"] = len(stack.crashes)
        verdict.notes += stack.crashes
        verdict.figures["sweeps queued / failed to queue"] = (
            f"{stack.sweeps_sent}/{stack.sweeps_failed}"
        )
        if not verdict.passed:
            verdict.notes.append("server log errors:\n" + stack.errors_in_logs())
    verdict.figures["drill wall time, s"] = round(time.monotonic() - t_start)
    return verdict


def _load_figures(verdict: Verdict, load: Load, faults: list[tuple[float, float]]) -> None:
    sent = len(load.results)
    created = load.created()
    errors = load.errors(faults, ERROR_GRACE_SECONDS)
    span = max((r.t1 for r in load.results), default=0.0) - load.started_at
    verdict.figures = {
        "requests sent": sent,
        "requests/s (asked / achieved)": f"{load.rate:.0f} / {sent / span if span > 0 else 0:.1f}",
        "201 answers": len(created),
        "201 outcomes": dict(sorted(load.outcomes().items())),
        "201 answer time, s": load.latency(),
        "errors during the fault": dict(errors["during"]),
        "errors outside the fault": dict(errors["outside"]),
        "fault windows, s": [round(b - a, 1) for a, b in faults],
        **verdict.figures,
    }
    outside = sum(errors["outside"].values())
    verdict.check(
        outside == 0, f"{outside} failed requests outside the fault: {dict(errors['outside'])}"
    )
    confirmed = sum(1 for r in created if r.status == "confirmed")
    verdict.check(
        confirmed > 0, "no booking was confirmed at all: the load did not exercise anything"
    )


def report(plan: Plan, verdict: Verdict) -> str:
    state = "PASS" if verdict.passed else "FAIL"
    lines = [f"== {plan.name}: {state} — {plan.title}"]
    for key, value in verdict.figures.items():
        lines.append(
            f"  {key}: {json.dumps(value, ensure_ascii=False) if isinstance(value, dict | list) else value}"
        )
    for failure in verdict.failures:
        lines.append(f"  FAIL: {failure}")
    for note in verdict.notes:
        lines.append(f"  note: {note}")
    return "\n".join(lines)


def main(
    plan: Plan,
    fault: Fault,
    *,
    after: After | None = None,
) -> int:
    """Run, print, return the exit code (0 PASS, 1 FAIL); also dumps JSON to --json."""
    verdict = run(plan, fault, after)
    print(report(plan, verdict), flush=True)
    if "--json" in sys.argv:
        out = sys.argv[sys.argv.index("--json") + 1]
        with open(out, "w") as fh:
            json.dump(
                {
                    "name": plan.name,
                    "title": plan.title,
                    "state": "PASS" if verdict.passed else "FAIL",
                    "figures": verdict.figures,
                    "failures": verdict.failures,
                    "notes": [n for n in verdict.notes if not n.startswith("server log")],
                },
                fh,
                ensure_ascii=False,
                default=str,
            )
    return 0 if verdict.passed else 1
