"""Start-up phases of a training job, logged as they happen (a job-log line whose metadata names
the phase and the moment it happened), so the Monitor can draw a start-up timeline while the user
waits. The phase names and labels are shared with ``backend.jobs.startup``, which reads them back."""
from __future__ import annotations

import time
from typing import Any

# phase -> what it means; in the order a job goes through them
PHASES: dict[str, str] = {
    "submitted": "submitted to Ray",
    "driver": "job driver started",
    "worker_group": "worker group requested (Ray Train starts the workers, or the driver forks "
                    "them)",
    "worker_up": "training loop started on the worker",
    "imports": "torch / transformers imported",
    "data": "dataset read and tokenised",
    "model": "base model loaded, LoRA attached, optimizer ready",
    "first_step": "first optimizer step done",
}


def phase(sink: Any, name: str, at: float | None = None, **meta: Any) -> None:
    """Log phase ``name`` on ``sink`` (any ProgressSink); ``at`` is when it happened (epoch
    seconds, default now). Raises KeyError for an unknown phase name."""
    sink.log("info", f"start-up: {PHASES[name]}", phase=name,
             at=round(time.time() if at is None else at, 3), **meta)
