"""Reading the node's accelerators: NVML for NVIDIA GPUs, a deterministic fake for tests and demos.

A sample is a plain dict in the wire format of `POST /api/v1/telemetry`:
{"device": "<index or uuid>", "at": ISO 8601 with offset, "utilization_pct": 0–100,
 "memory_used_mb": MiB | None, "power_w": W | None, "energy_j": cumulative J | None}.
NPUs (FuriosaAI RNGD, Rebellions ATOM, ...) send the same vendor-neutral fields from a sampler
of their own that implements `Sampler`.
"""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from collections.abc import Callable, Sequence
from types import ModuleType
from typing import Any, Protocol

logger = logging.getLogger(__name__)

Clock = Callable[[], dt.datetime]
MIB = 1024 * 1024


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class Sampler(Protocol):
    def sample(self) -> list[dict[str, Any]]:
        """One reading of every device on this node, all with the same `at`."""
        ...

    def close(self) -> None: ...


class NvmlUnavailable(RuntimeError):
    """NVML cannot be used on this machine: the message says why and what to do."""


def _load_pynvml() -> ModuleType:
    try:
        import pynvml
    except ImportError as exc:
        raise NvmlUnavailable(
            "The NVML bindings are not installed (pip install nvidia-ml-py); for a test run without a GPU "
            "use --fake N."
        ) from exc
    return pynvml


class NvmlSampler:
    """Every GPU NVML reports: utilisation, memory used, power and the energy counter.

    `device_key` chooses how devices are named to the server: "index" (NVML's index, which is the
    inventory's index on the node) or "uuid" (NVML's GPU-… UUID, when the inventory records UUIDs).
    Power or energy a card cannot report (NVMLError_NotSupported) is sent as null. MIG partitions
    report no utilisation through NVML, so only whole cards are sampled.
    """

    def __init__(
        self, *, device_key: str = "index", nvml: ModuleType | None = None, clock: Clock = utc_now
    ) -> None:
        if device_key not in {"index", "uuid"}:
            raise ValueError("device_key is 'index' or 'uuid'")
        self.nvml = nvml or _load_pynvml()
        self.clock = clock
        self.device_key = device_key
        try:
            self.nvml.nvmlInit()
        except self.nvml.NVMLError as exc:
            raise NvmlUnavailable(
                f"NVML could not start ({exc}): this machine needs an NVIDIA driver with libnvidia-ml; "
                "for a test run without a GPU use --fake N."
            ) from exc
        self.devices: list[tuple[str, Any]] = []
        for index in range(self.nvml.nvmlDeviceGetCount()):
            handle = self.nvml.nvmlDeviceGetHandleByIndex(index)
            raw_uuid = self.nvml.nvmlDeviceGetUUID(handle)
            device_uuid = raw_uuid.decode() if isinstance(raw_uuid, bytes) else str(raw_uuid)
            self.devices.append((str(index) if device_key == "index" else device_uuid, handle))
        logger.info(
            "NVML: %d device(s): %s", len(self.devices), ", ".join(d for d, _h in self.devices)
        )

    def _optional(
        self, getter: Callable[[Any], Any], handle: Any, scale: float, name: str
    ) -> float | None:
        try:
            return float(getter(handle)) / scale
        except self.nvml.NVMLError_NotSupported:
            return None
        except self.nvml.NVMLError as exc:
            logger.warning("NVML could not read %s: %s", name, exc)
            return None

    def sample(self) -> list[dict[str, Any]]:
        at = self.clock().isoformat()
        nvml = self.nvml
        out = []
        for device, handle in self.devices:
            try:
                utilization = float(nvml.nvmlDeviceGetUtilizationRates(handle).gpu)
                memory_used = float(nvml.nvmlDeviceGetMemoryInfo(handle).used) / MIB
            except nvml.NVMLError as exc:  # e.g. GPU fallen off the bus: the others are still read
                logger.error("NVML could not read device %s: %s", device, exc)
                continue
            out.append(
                {
                    "device": device,
                    "at": at,
                    "utilization_pct": utilization,
                    "memory_used_mb": round(memory_used, 1),
                    "power_w": self._optional(
                        nvml.nvmlDeviceGetPowerUsage, handle, 1000.0, "power"
                    ),  # mW
                    "energy_j": self._optional(
                        nvml.nvmlDeviceGetTotalEnergyConsumption, handle, 1000.0, "energy"
                    ),  # mJ
                }
            )
        return out

    def close(self) -> None:
        try:
            self.nvml.nvmlShutdown()
        except self.nvml.NVMLError as exc:  # pragma: no cover - shutting down anyway
            logger.debug("nvmlShutdown: %s", exc)


class FakeSampler:
    """A deterministic stand-in for NVML: `devices` cards named by index (0..N−1).

    `utilization` is one percentage for all, one per device, or a callable (index, at) → percentage.
    Power follows utilisation (100 W idle to 700 W busy) and the energy counter integrates it
    between readings, so the figures look like a real card's.
    """

    def __init__(
        self,
        devices: int = 8,
        *,
        utilization: float | Sequence[float] | Callable[[int, dt.datetime], float] = 50.0,
        memory_total_mb: float = 81_559.0,
        clock: Clock = utc_now,
        device_key: str = "index",
        node_name: str = "fake",
    ) -> None:
        if devices < 1:
            raise ValueError("a fake node has at least one device")
        self.count = devices
        self.utilization = utilization
        self.memory_total_mb = memory_total_mb
        self.clock = clock
        self.names = [
            str(i)
            if device_key == "index"
            else f"GPU-{uuid.uuid5(uuid.NAMESPACE_DNS, f'{node_name}.{i}')}"
            for i in range(devices)
        ]
        self._energy = [0.0] * devices
        self._last: dt.datetime | None = None

    def _utilization(self, index: int, at: dt.datetime) -> float:
        if callable(self.utilization):
            return float(self.utilization(index, at))
        if isinstance(self.utilization, int | float):
            return float(self.utilization)
        return float(self.utilization[index % len(self.utilization)])

    def sample(self) -> list[dict[str, Any]]:
        now = self.clock()
        elapsed = max(0.0, (now - self._last).total_seconds()) if self._last else 0.0
        self._last = now
        out = []
        for index, name in enumerate(self.names):
            utilization = min(100.0, max(0.0, self._utilization(index, now)))
            power = 100.0 + 6.0 * utilization
            self._energy[index] += power * elapsed
            out.append(
                {
                    "device": name,
                    "at": now.isoformat(),
                    "utilization_pct": utilization,
                    "memory_used_mb": round(self.memory_total_mb * utilization / 100.0, 1),
                    "power_w": power,
                    "energy_j": round(self._energy[index], 3),
                }
            )
        return out

    def close(self) -> None:
        pass
