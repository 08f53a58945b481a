"""The plain data the sweep service returns."""
from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict

from backend.core.schemas import JobInfo


class SweepInfo(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    user_id: str
    dataset_id: str
    name: str | None = None
    preset_id: str
    grid: dict
    overrides: list | None = None
    samples: int
    max_concurrent: int
    scheduler: str
    metric: str
    status: str
    trial_count: int
    best_job_id: str | None = None
    estimate: dict | None = None
    budget_decision: dict | None = None
    estimated_total_cost: float
    external_job_id: str | None = None
    error_message: str | None = None
    started_at: datetime | None = None
    completed_at: datetime | None = None
    created_at: datetime
    updated_at: datetime
    dataset_name: str | None = None
    trials: list[JobInfo] = []

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json")

    def counts(self) -> dict[str, int]:
        """Trials by outcome: completed, stopped_early, failed, cancelled, active."""
        out = {"completed": 0, "stopped_early": 0, "failed": 0, "cancelled": 0, "active": 0}
        for t in self.trials:
            if (t.sweep_trial or {}).get("stopped_early"):
                out["stopped_early"] += 1
            elif t.status in out:
                out[t.status] += 1
            else:
                out["active"] += 1
        return out
