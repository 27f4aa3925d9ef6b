"""A real Slurm cluster for these tests: Debian's slurmctld + three slurmd with munge on loopback,
started by ensure_slurm.sh (idempotent: already running → nothing). Where Slurm cannot be had
(no root, no apt-get), the tests that need it are skipped with the reason — never under CI
(CI=true or TESTBED_REQUIRE_SERVICES=1), where they fail instead.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.services import REQUIRED

HERE = Path(__file__).resolve().parent
ENSURE = HERE / "ensure_slurm.sh"
SLURM_DIR = os.environ.get("TESTBED_SLURM_DIR", "/tmp/testbed-slurm")  # noqa: S108 - the script's default
SLURM_CONF = f"{SLURM_DIR}/slurm.conf"
NODES = ("tb-gpu01", "tb-gpu02", "tb-gpu03")


class SlurmCluster:
    """The test cluster from the outside, as an operator's shell would see it."""

    conf = SLURM_CONF
    nodes = NODES

    def scontrol(self, *args: str, tz: str = "UTC", check: bool = True) -> str:
        done = subprocess.run(  # noqa: S603
            ["scontrol", *args],  # noqa: S607
            env={**os.environ, "SLURM_CONF": SLURM_CONF, "TZ": tz},
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        if check and done.returncode != 0:
            raise AssertionError(f"scontrol {' '.join(args)}: {done.stderr or done.stdout}")
        return done.stdout

    def reservations(self) -> dict[str, dict[str, str]]:
        from integrations.slurm.scontrol import parse_reservations

        return {
            r.name: r.raw for r in parse_reservations(self.scontrol("-o", "show", "reservation"))
        }

    def delete_all(self) -> None:
        for name in self.reservations():
            self.scontrol("delete", f"ReservationName={name}", check=False)

    def stop_controller(self) -> None:
        subprocess.run(["sh", str(ENSURE), "stop-controller"], check=True, timeout=60)  # noqa: S603,S607

    def start(self) -> None:
        subprocess.run(["sh", str(ENSURE)], check=True, timeout=180)  # noqa: S603,S607
        if not _controller_up():
            raise AssertionError(f"slurmctld did not come back (see {SLURM_DIR}/log/slurmctld.log)")


def _controller_up() -> bool:
    try:
        done = subprocess.run(
            ["scontrol", "ping"],  # noqa: S607
            env={**os.environ, "SLURM_CONF": SLURM_CONF},
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return "is UP" in done.stdout


@pytest.fixture(scope="session")
def slurm_session() -> SlurmCluster:
    done = subprocess.run(  # noqa: S603
        ["sh", str(ENSURE)],  # noqa: S607
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    if not _controller_up():
        why = (
            " ".join((done.stdout + done.stderr).split())
            or f"slurmctld does not answer (see {SLURM_DIR}/log)"
        )
        if REQUIRED:
            pytest.fail(f"Slurm tests must run under CI, but Slurm is not available: {why}")
        pytest.skip(f"!!! Slurm tests SKIPPED: {why} !!!")
    return SlurmCluster()


@pytest.fixture
def slurm(slurm_session) -> SlurmCluster:
    """The cluster with no reservation at the start and end of the test (controller up)."""
    if not _controller_up():
        slurm_session.start()
    slurm_session.delete_all()
    yield slurm_session
    if not _controller_up():
        slurm_session.start()
    slurm_session.delete_all()
