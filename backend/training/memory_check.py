"""The estimator's memory prediction held against the peak a finished GPU job measured (pure).

A GPU job records ``torch.cuda.max_memory_allocated`` of every worker; its model's training summary
keeps the largest (``gpu_peak_allocated_gb``) next to the estimate's ``predicted_allocated_gb``
(:attr:`backend.training.estimation.VramEstimate.allocated_gb`). Configure shows the newest such
pair on the chosen hardware (``backend/jobs/estimates.py`` reads the summaries).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class MemoryCheck:
    """A finished GPU job's predicted allocated memory per worker against its measured peak."""

    hardware_id: str
    predicted_gb: float
    measured_gb: float
    error_percent: float  # (predicted - measured) / measured x 100: negative = under-predicted

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def memory_check(hardware_id: str, predicted_gb: float | None,
                 measured_gb: float | None) -> MemoryCheck | None:
    """How far the memory prediction was from the measured peak (None without both figures or
    with a peak of 0). Raises nothing."""
    if not predicted_gb or not measured_gb or measured_gb <= 0:
        return None
    error = (float(predicted_gb) - float(measured_gb)) / float(measured_gb) * 100.0
    return MemoryCheck(hardware_id, float(predicted_gb), float(measured_gb), error)


def last_memory_check(hardware_id: str, summaries: list[dict[str, Any]]) -> MemoryCheck | None:
    """The newest :func:`memory_check` on ``hardware_id`` among finished jobs' training summaries
    (newest first; each with ``hardware``, ``predicted_allocated_gb``, ``gpu_peak_allocated_gb``).
    Raises nothing."""
    for summary in summaries:
        if (summary or {}).get("hardware") != hardware_id:
            continue
        check = memory_check(hardware_id, summary.get("predicted_allocated_gb"),
                             summary.get("gpu_peak_allocated_gb"))
        if check is not None:
            return check
    return None
