"""Status machines for datasets, jobs, job stages and models — the one place transitions are checked.

No other transitions are legal; :func:`check` raises InvalidTransition for anything else.
"""
from __future__ import annotations

from backend.core.errors import InvalidTransition

DATASET = {
    "uploading": {"validating", "error"},
    "validating": {"ready", "error"},
    "ready": {"validating"},          # re-validate
    "error": {"validating"},          # re-validate after error
}
JOB = {
    "queued": {"initializing", "failed", "cancelled"},
    "initializing": {"running", "failed", "cancelled"},
    "running": {"completed", "failed", "cancelled"},
    "completed": set(),
    "failed": set(),
    "cancelled": set(),
}
STAGE = {
    "queued": {"initializing"},
    "initializing": {"training"},
    "training": {"validating", "saving"},
    "validating": {"training", "saving"},
    "saving": {"completed"},
    "completed": set(),
}
MODEL = {
    "stored": {"deployed", "archived"},
    "deployed": {"stored", "archived"},
    "archived": set(),
}
SWEEP = {  # a hyperparameter sweep (backend/sweeps/): its Ray job runs the trials
    "queued": {"running", "failed", "cancelled"},
    "running": {"completed", "failed", "cancelled"},
    "completed": set(),
    "failed": set(),
    "cancelled": set(),
}
MACHINES = {"dataset": DATASET, "job": JOB, "stage": STAGE, "model": MODEL, "sweep": SWEEP}

JOB_ACTIVE = ("queued", "initializing", "running")
JOB_TERMINAL = ("completed", "failed", "cancelled")
SWEEP_ACTIVE = ("queued", "running")
JOB_STAGES = ("queued", "initializing", "training", "validating", "saving", "completed")


def can(kind: str, current: str, new: str) -> bool:
    """Whether ``current → new`` is legal for machine ``kind`` (dataset, job, stage, model)."""
    return new in MACHINES[kind].get(current, set())


def check(kind: str, current: str, new: str) -> None:
    """Raise InvalidTransition unless ``current → new`` is legal (a no-op change is refused too)."""
    if kind not in MACHINES:
        raise ValueError(f"unknown state machine {kind!r}")
    if new not in MACHINES[kind]:
        raise InvalidTransition(f"{new!r} is not a {kind} status; known: {', '.join(MACHINES[kind])}")
    if not can(kind, current, new):
        allowed = ", ".join(sorted(MACHINES[kind].get(current, set()))) or "none (final)"
        raise InvalidTransition(f"A {kind} cannot go from {current!r} to {new!r} "
                                f"(allowed from {current!r}: {allowed})")
