"""Talking to a Slurm controller through its own CLI, `scontrol`: read, create, update, delete
advance reservations. No Django model here: plain values in, plain values out.

Slurm 22.05's scontrol has no `--json` (that came with 23.02), so reservations are read with
`scontrol -o show reservation` (one `Key=Value ...` line each). scontrol prints and parses times
in its own process's local time zone: we always run it with TZ=UTC and convert, so a reservation
is the same instant whatever zone the cluster's machines use.

Two kinds of failure, because they are handled differently:
- `SlurmUnavailable`: the controller cannot be reached (down, network, timeout, no scontrol):
  the whole sync is retried later and shown as pending.
- `SlurmRefused`: the controller answered no to one command (a node it does not know, a
  reservation overlapping someone else's): that one change is reported, the others go ahead.
"""

from __future__ import annotations

import datetime as dt
import itertools
import os
import re
import subprocess  # noqa: S404 - scontrol is Slurm's own interface; arguments are a list, never a shell
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

UTC = dt.UTC
TIME_FORMAT = "%Y-%m-%dT%H:%M:%S"
# Values we put on a command line: Slurm names (nodes, accounts, users, reservations, partitions).
SLURM_NAME = re.compile(r"^[A-Za-z0-9_.@-]{1,64}$")
# What scontrol says when it never reached the controller (see src/common/slurm_errno.c).
_UNREACHABLE = (
    "unable to contact slurm controller",
    "connect failure",
    "connection refused",
    "socket timed out",
    "zero bytes were transmitted",
    "communication connection failure",
    "unable to establish controller machine",
    "could not establish a configuration source",
    "authentication failure",
    "munge",
)


class SlurmError(Exception):
    """Base of the errors below; str() is what scontrol said (one line)."""


class SlurmUnavailable(SlurmError):
    """The controller could not be reached: retry the whole sync later."""


class SlurmRefused(SlurmError):
    """The controller refused one command."""


@dataclass(frozen=True)
class Reservation:
    """One advance reservation: what we want, or what `scontrol show reservation` says."""

    name: str
    nodes: frozenset[str]
    start: dt.datetime  # aware
    end: dt.datetime  # aware
    accounts: frozenset[str] = frozenset()
    users: frozenset[str] = frozenset()
    flags: frozenset[str] = frozenset()
    partition: str = ""
    state: str = ""  # ACTIVE / INACTIVE as Slurm reports it; "" for a desired reservation
    raw: dict[str, str] = field(default_factory=dict, compare=False, hash=False, repr=False)

    def overlaps(self, other: Reservation) -> bool:
        return bool(self.nodes & other.nodes) and self.start < other.end and other.start < self.end


def expand_hostlist(text: str) -> list[str]:
    """Slurm's compressed host list → names: "gpu[01-03,07],cpu1" → gpu01 gpu02 gpu03 gpu07 cpu1.

    Handles several bracket groups in one name (cartesian product) and zero padding, as
    `scontrol show hostnames` does."""
    text = text.strip()
    if not text or text == "(null)":
        return []
    names: list[str] = []
    for token in _split_top_level(text):
        parts = re.split(r"(\[[^\]]*\])", token)
        choices: list[list[str]] = []
        for part in parts:
            if part.startswith("[") and part.endswith("]"):
                choices.append(_expand_range(part[1:-1]))
            elif part:
                choices.append([part])
        names.extend("".join(combo) for combo in itertools.product(*choices))
    return names


def _split_top_level(text: str) -> list[str]:
    tokens, depth, current = [], 0, ""
    for char in text:
        if char == "[":
            depth += 1
        elif char == "]":
            depth -= 1
        if char == "," and depth == 0:
            tokens.append(current)
            current = ""
        else:
            current += char
    if current:
        tokens.append(current)
    return tokens


def _expand_range(inner: str) -> list[str]:
    values: list[str] = []
    for piece in inner.split(","):
        if "-" in piece:
            low, high = piece.split("-", 1)
            width = len(low)
            values.extend(str(n).zfill(width) for n in range(int(low), int(high) + 1))
        else:
            values.append(piece)
    return values


def parse_reservations(output: str) -> list[Reservation]:
    """`scontrol -o show reservation` → reservations (times read as UTC: run scontrol with TZ=UTC)."""
    found = []
    for line in output.splitlines():
        line = line.strip()
        if not line.startswith("ReservationName="):
            continue
        values = _key_values(line)
        found.append(
            Reservation(
                name=values["ReservationName"],
                nodes=frozenset(expand_hostlist(values.get("Nodes", ""))),
                start=parse_time(values["StartTime"]),
                end=parse_time(values["EndTime"]),
                accounts=_name_set(values.get("Accounts", "")),
                users=_name_set(values.get("Users", "")),
                flags=_name_set(values.get("Flags", "")),
                partition=_null(values.get("PartitionName", "")),
                state=values.get("State", ""),
                raw=values,
            )
        )
    return found


def _key_values(line: str) -> dict[str, str]:
    """Split `A=1 B=x y C=2` into keys and values; a token without `=` continues the value."""
    values: dict[str, str] = {}
    key = None
    for token in line.split(" "):
        match = re.match(r"^([A-Za-z][A-Za-z0-9_]*)=(.*)$", token)
        if match:
            key = match.group(1)
            values[key] = match.group(2)
        elif key is not None:
            values[key] += " " + token
    return values


def _null(value: str) -> str:
    return "" if value in {"(null)", "N/A", "n/a"} else value


def _name_set(value: str) -> frozenset[str]:
    value = _null(value)
    return frozenset(v for v in value.split(",") if v) if value else frozenset()


def parse_time(value: str) -> dt.datetime:
    return dt.datetime.strptime(value, TIME_FORMAT).replace(tzinfo=UTC)


def format_time(moment: dt.datetime) -> str:
    return moment.astimezone(UTC).strftime(TIME_FORMAT)


def check_name(value: str, what: str) -> str:
    if not SLURM_NAME.match(value):
        raise ValueError(
            f"{what} {value!r} is not a Slurm name (letters, digits, _ . @ -, at most 64)"
        )
    return value


class Scontrol:
    """One cluster's `scontrol`: `binary` (path or name on PATH), `slurm_conf` (SLURM_CONF; empty:
    Slurm's default, /etc/slurm/slurm.conf), `timeout` seconds per command."""

    def __init__(self, *, binary: str = "scontrol", slurm_conf: str = "", timeout: float = 20):
        self.binary = binary
        self.slurm_conf = slurm_conf
        self.timeout = timeout

    def _env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["TZ"] = "UTC"
        if self.slurm_conf:
            env["SLURM_CONF"] = self.slurm_conf
        return env

    def run(self, args: Sequence[str]) -> str:
        """Run scontrol with `args`; its stdout. Raises SlurmUnavailable or SlurmRefused."""
        command = [self.binary, *args]
        try:
            done = subprocess.run(  # noqa: S603 - fixed binary, list arguments, checked names
                command,
                env=self._env(),
                capture_output=True,
                text=True,
                timeout=self.timeout,
                check=False,
            )
        except FileNotFoundError as exc:
            raise SlurmUnavailable(f"scontrol not found ({self.binary}): {exc}") from exc
        except subprocess.TimeoutExpired as exc:
            raise SlurmUnavailable(
                f"scontrol {' '.join(args[:2])} did not answer within {self.timeout:g} s"
            ) from exc
        if done.returncode != 0:
            message = " ".join((done.stderr or done.stdout or "").split()) or (
                f"scontrol exited with {done.returncode}"
            )
            if any(marker in message.lower() for marker in _UNREACHABLE):
                raise SlurmUnavailable(message)
            raise SlurmRefused(message)
        return done.stdout

    def reservations(self) -> list[Reservation]:
        return parse_reservations(self.run(["-o", "show", "reservation"]))

    def create(self, spec: Reservation) -> None:
        start = "now" if spec.start <= dt.datetime.now(UTC) else format_time(spec.start)
        args = ["create", "reservation", f"ReservationName={spec.name}", f"StartTime={start}"]
        args += [f"EndTime={format_time(spec.end)}", *self._who(spec), *self._where(spec)]
        if spec.flags:
            args.append(f"Flags={','.join(sorted(spec.flags))}")
        self.run(args)

    def update(self, spec: Reservation, *, started: bool) -> None:
        """Bring the reservation `spec.name` to `spec` (its flags must already match: Slurm
        cannot take OVERLAP or MAINT off a reservation; delete and create instead)."""
        args = ["update", f"ReservationName={spec.name}"]
        if not started:  # Slurm refuses a new start for a reservation that has begun
            args.append(f"StartTime={format_time(spec.start)}")
        args += [
            f"EndTime={format_time(spec.end)}",
            *self._who(spec, clear=True),
            *self._where(spec),
        ]
        self.run(args)

    def delete(self, name: str) -> None:
        self.run(["delete", f"ReservationName={check_name(name, 'reservation')}"])

    def ping(self) -> str:
        return self.run(["ping"]).strip()

    @staticmethod
    def _who(spec: Reservation, *, clear: bool = False) -> list[str]:
        args = []
        for key, names in (("Accounts", spec.accounts), ("Users", spec.users)):
            if names or clear:
                args.append(f"{key}={','.join(sorted(check_name(n, key) for n in names))}")
        return args

    @staticmethod
    def _where(spec: Reservation) -> list[str]:
        args = [f"Nodes={','.join(sorted(check_name(n, 'node') for n in spec.nodes))}"]
        if spec.partition:
            args.append(f"PartitionName={check_name(spec.partition, 'partition')}")
        return args


def names(values: Iterable[str]) -> str:
    return ",".join(sorted(values))
