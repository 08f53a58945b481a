"""Start-up phases of a training job, logged as they happen (a job-log line whose metadata names
the phase and the moment it happened), so the Monitor can draw a start-up timeline while the user
waits. The phase names and labels live in ``backend.training.startup_phases``."""
from __future__ import annotations

import time
from typing import Any

from backend.training.startup_phases import PHASES


def phase(sink: Any, name: str, at: float | None = None, **meta: Any) -> None:
    """Log phase ``name`` on ``sink`` (any ProgressSink); ``at`` is when it happened (epoch
    seconds, default now). Raises KeyError for an unknown phase name."""
    sink.log("info", f"start-up: {PHASES[name]}", phase=name,
             at=round(time.time() if at is None else at, 3), **meta)
