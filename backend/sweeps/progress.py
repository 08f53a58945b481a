"""Writes made for a sweep while its Ray job runs (``ray_jobs/sweep.py``, the Tune driver) and
when it ends: what the driver reads (:func:`sweep_inputs`), running, a trial stopped early by
the scheduler, the best trial marked, the sweep's end. Every write retries through a short
database outage (``backend.jobs.progress.with_retry``)."""
from __future__ import annotations

from typing import Any

from sqlalchemy import select

from backend.core import states
from backend.core.errors import NotFound
from backend.db.models import JobLog, Sweep, TrainingJob, utcnow
from backend.db.session import session_scope
from backend.jobs.progress import fail_job, with_retry


def _sweep(s, sweep_id: str) -> Sweep:
    row = s.get(Sweep, sweep_id)
    if row is None:
        raise NotFound(f"sweep {sweep_id} not found", code="sweep_not_found")
    return row


def _trials(s, sweep_id: str, active_only: bool = False) -> list[TrainingJob]:
    stmt = select(TrainingJob).where(TrainingJob.sweep_id == sweep_id)
    if active_only:
        stmt = stmt.where(TrainingJob.status.in_(states.JOB_ACTIVE))
    return sorted(s.scalars(stmt).all(), key=lambda j: (j.sweep_trial or {}).get("index", 0))


def sweep_inputs(sweep_id: str) -> dict[str, Any]:
    """What the sweep's driver needs: status, the trial job ids in grid order (those still
    queued), max_concurrent, scheduler, metric, evaluations (ASHA's max_t), where Tune keeps its
    experiment. Raises NotFound."""
    from backend.core.config import get_settings

    with session_scope() as s:
        row = _sweep(s, sweep_id)
        trials = [j.id for j in _trials(s, sweep_id) if j.status == "queued"]
        return {"status": row.status, "job_ids": trials, "max_concurrent": row.max_concurrent,
                "scheduler": row.scheduler, "metric": row.metric,
                "evaluations": int((row.estimate or {}).get("evaluations") or 1),
                "storage_path": str(get_settings().home / "ray_results" / "sweeps")}


def mark_running(sweep_id: str) -> bool:
    """queued → running (started_at). Returns False when the sweep already ended (cancelled)."""
    def go() -> bool:
        with session_scope() as s:
            row = _sweep(s, sweep_id)
            if row.status not in states.SWEEP_ACTIVE:
                return False
            if row.status == "queued":
                row.status, row.started_at = "running", utcnow()
            return True
    return with_retry(go, "sweep running")


def trial_stopped_early(job_id: str, evaluations: int, last: float | None,
                        scheduler: str = "ASHA") -> bool:
    """The scheduler stopped trial ``job_id``: when it is still active it ends ``cancelled``,
    ``sweep_trial.stopped_early`` set, with the reason. Returns whether it changed."""
    def go() -> bool:
        with session_scope() as s:
            row = s.get(TrainingJob, job_id)
            if row is None or row.status not in states.JOB_ACTIVE:
                return False
            loss = f", validation loss {last:.4f}" if last is not None else ""
            why = f"stopped early by {scheduler} after {evaluations} evaluation(s){loss}"
            states.check("job", row.status, "cancelled")
            row.status, row.completed_at, row.final_cost = "cancelled", utcnow(), row.current_cost
            row.error_message = why
            row.sweep_trial = {**(row.sweep_trial or {}), "stopped_early": True,
                               "evaluations": evaluations}
            s.add(JobLog(job_id=job_id, level="WARNING", message=why))
            return True
    return with_retry(go, "trial stopped early")


def trial_failed(job_id: str, message: str) -> bool:
    """A trial's process failed (Tune's ``on_trial_error``): an active trial ends failed."""
    return fail_job(job_id, message)


def best_trial(s, sweep_id: str) -> TrainingJob | None:
    """The completed trial with the lowest final validation loss (None when none has one)."""
    done = [(float(j.current_metrics["validation_loss"]), (j.sweep_trial or {}).get("index", 0), j)
            for j in _trials(s, sweep_id) if j.status == "completed" and j.artifact_id
            and (j.current_metrics or {}).get("validation_loss") is not None]
    return min(done, key=lambda t: t[:2])[2] if done else None


def finish_sweep(sweep_id: str) -> str | None:
    """The Tuner returned: mark the best trial (its adapter is kept), fail any trial Tune never
    ended, and end the sweep ``completed`` (left as is when it was cancelled). Returns the best
    trial's job id."""
    def go() -> str | None:
        with session_scope() as s:
            row = _sweep(s, sweep_id)
            best = best_trial(s, sweep_id)
            if best is not None:
                best.sweep_trial = {**(best.sweep_trial or {}), "best": True}
                row.best_job_id = best.id
                s.add(JobLog(job_id=best.id, level="INFO",
                             message=f"best trial of sweep {sweep_id} (lowest validation loss "
                                     f"{best.current_metrics['validation_loss']:.4f})"))
            left = [j.id for j in _trials(s, sweep_id, active_only=True)]
            if row.status in states.SWEEP_ACTIVE:
                if row.status == "queued":
                    row.status = "running"
                row.status, row.completed_at = "completed", utcnow()
                if best is None:
                    row.error_message = "no trial completed with a validation loss"
            best_id = best.id if best is not None else None
        for job_id in left:
            fail_job(job_id, "the sweep ended without finishing this trial")
        return best_id
    return with_retry(go, "sweep finished")


def fail_sweep(sweep_id: str, message: str) -> bool:
    """End an active sweep ``failed`` with ``message``, and every trial it left active. Returns
    False when the sweep had already ended (its trials still left active are failed anyway)."""
    def go() -> tuple[bool, list[str]]:
        with session_scope() as s:
            row = _sweep(s, sweep_id)
            left = [j.id for j in _trials(s, sweep_id, active_only=True)]
            if row.status not in states.SWEEP_ACTIVE:
                return False, left
            row.status, row.completed_at = "failed", utcnow()
            row.error_message = message[:10000]
            return True, left
    changed, left = with_retry(go, "sweep failure")
    for job_id in left:
        fail_job(job_id, f"its sweep ended: {message}")
    return changed
