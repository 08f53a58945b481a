"""GPU utilisation and memory of each training worker, for the metric points and the result.

Every worker samples its own GPU (:class:`GpuMonitor`: utilisation and used memory through NVML —
the ``nvidia-ml-py`` package, imported only when a GPU is there and optional — and the peak memory
torch allocated, ``torch.cuda.max_memory_allocated``); the samples of all workers are summed into
one vector (each worker fills its own slots, :func:`pack` / :func:`unpack`) so rank 0 can put every
worker's figures in its metric point (:func:`point_fields`). On a CPU worker nothing is sampled and
no collective is run. Importable with torch alone (``bench/gpu_check.py``).
"""
from __future__ import annotations

import os
from typing import Any, Callable

GIB = 2**30
FIELDS = ("utilization", "memory_used_gb", "peak_allocated_gb")  # per worker, in this order


def pack(sample: dict[str, float | None], rank: int, world: int) -> list[float]:
    """This worker's sample in its slots of a zero vector of ``len(FIELDS) * world`` (summing the
    vectors of all workers gives every worker's figures; a missing figure is sent as -1)."""
    out = [0.0] * (len(FIELDS) * world)
    for i, name in enumerate(FIELDS):
        value = sample.get(name)
        out[rank * len(FIELDS) + i] = -1.0 if value is None else float(value)
    return out


def unpack(flat: list[float], world: int) -> list[dict[str, Any]]:
    """Per-worker dicts ``{"rank", "utilization", "memory_used_gb", "peak_allocated_gb"}`` (None
    where a worker had no figure) from the summed vector of :func:`pack`."""
    n = len(FIELDS)
    workers = []
    for rank in range(world):
        row: dict[str, Any] = {"rank": rank}
        for i, name in enumerate(FIELDS):
            value = flat[rank * n + i]
            row[name] = None if value < 0 else round(value, 4)
        workers.append(row)
    return workers


def point_fields(workers: list[dict[str, Any]]) -> dict[str, Any]:
    """What a metric point carries about the GPUs: ``gpu_utilization`` = mean over the workers that
    reported one (the stored column), ``gpu_peak_allocated_gb`` = the largest worker's peak so far,
    ``gpu_memory_used_gb`` = the largest worker's used memory, and ``gpu_workers`` (each one)."""
    def values(name):
        return [w[name] for w in workers if w.get(name) is not None]

    util, used, peak = values("utilization"), values("memory_used_gb"), \
        values("peak_allocated_gb")
    return {"gpu_utilization": sum(util) / len(util) if util else None,
            "gpu_memory_used_gb": max(used) if used else None,
            "gpu_peak_allocated_gb": max(peak) if peak else None,
            "gpu_workers": workers}


def _nvml_handle(index: int):
    """The NVML handle of CUDA device ``index`` of this process, or None (no nvidia-ml-py, no
    driver library). Found by UUID, so a worker that sees one GPU of many (Ray sets
    CUDA_VISIBLE_DEVICES) reads its own."""
    try:
        import pynvml
    except ImportError:
        return None
    try:
        pynvml.nvmlInit()
        import torch

        uuid = getattr(torch.cuda.get_device_properties(index), "uuid", None)
        if uuid is not None:
            text = str(uuid)
            return pynvml.nvmlDeviceGetHandleByUUID(text if text.startswith("GPU-")
                                                     else f"GPU-{text}")
        visible = os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",")
        physical = int(visible[index]) if index < len(visible) and visible[index].isdigit() \
            else index
        return pynvml.nvmlDeviceGetHandleByIndex(physical)
    except Exception:  # noqa: BLE001 - metrics are optional; training goes on without them
        return None


class GpuMonitor:
    """Samples one worker's GPU; inactive (samples nothing) on a CPU device."""

    def __init__(self, device: Any, handle_for: Callable[[int], Any] = _nvml_handle):
        self.active = getattr(device, "type", str(device)) == "cuda"
        self.handle = None
        if self.active:
            import torch

            index = device.index if device.index is not None else torch.cuda.current_device()
            self.index = index
            self.handle = handle_for(index)

    def peak_allocated_gb(self) -> float | None:
        """``torch.cuda.max_memory_allocated`` of this worker's device in GiB (None on CPU)."""
        if not self.active:
            return None
        import torch

        return torch.cuda.max_memory_allocated(self.index) / GIB

    def sample(self) -> dict[str, float | None]:
        """Utilisation (%) and used memory (GiB) from NVML when available, and the peak
        allocated memory so far."""
        out: dict[str, float | None] = {"utilization": None, "memory_used_gb": None,
                                        "peak_allocated_gb": self.peak_allocated_gb()}
        if self.handle is not None:
            try:
                import pynvml

                out["utilization"] = float(pynvml.nvmlDeviceGetUtilizationRates(self.handle).gpu)
                out["memory_used_gb"] = pynvml.nvmlDeviceGetMemoryInfo(self.handle).used / GIB
            except Exception:  # noqa: BLE001 - a transient NVML error loses one sample
                pass
        return out

    def gather(self, rank: int, world: int,
               allreduce: Callable[[list[float]], list[float]]) -> dict[str, Any]:
        """Every worker's sample as :func:`point_fields` (a collective: all workers call it at
        the same step); ``{}`` on CPU workers, with no collective."""
        if not self.active:
            return {}
        return point_fields(unpack(allreduce(pack(self.sample(), rank, world)), world))
