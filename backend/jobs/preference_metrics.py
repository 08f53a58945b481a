"""The DPO metrics of a job for the Monitor: TRL-named ``rewards/*`` of each training step and
``eval_rewards/*`` / ``eval_loss`` of the held-out pairs (stored on metrics_points.preference by
backend/jobs/progress.py)."""
from __future__ import annotations

from sqlalchemy import select

from backend.core.access import check_owner
from backend.core.schemas import UserInfo
from backend.db.models import MetricsPoint, TrainingJob
from backend.db.session import session_scope

MAX_POINTS = 2000


def preference_history(actor: UserInfo, job_id: str) -> list[dict]:
    """``[{"step": N, "rewards/margins": …, "eval_rewards/accuracies": …, …}]`` in step order (at
    most MAX_POINTS, evenly thinned; held-out points always kept); empty for an SFT job. Raises
    NotFound / Forbidden like every job read."""
    with session_scope() as s:
        check_owner(actor, s.get(TrainingJob, job_id), "Job", job_id)
        rows = s.execute(select(MetricsPoint.step, MetricsPoint.preference)
                         .where(MetricsPoint.job_id == job_id,
                                MetricsPoint.preference.is_not(None))
                         .order_by(MetricsPoint.step)).all()
    out = [{"step": step, **(values or {})} for step, values in rows]
    if len(out) > MAX_POINTS:
        every = -(-len(out) // MAX_POINTS)
        out = [p for i, p in enumerate(out) if i % every == 0 or "eval_loss" in p
               or i == len(out) - 1]
    return out
