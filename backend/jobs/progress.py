"""Writes made while a training job runs (called from the Ray job, rank 0 / driver): stage and
status transitions, metrics points, logs, checkpoints, progress, running cost, completion, failure.

Every write retries through a short database outage (nothing lost) and metric points are written
idempotently on (job_id, step): a resent batch gives the same rows and a step trained again after a
restart replaces the old point, so the chart shows the attempt that produced the adapter. Once a
job is cancelled, what its dying processes still send (logs, metric points, checkpoints) is
dropped.
"""
from __future__ import annotations

import json
import logging
import time
import uuid
from datetime import datetime, timedelta, timezone
from typing import Callable, TypeVar

from sqlalchemy import delete, func, insert, literal_column, null, select

from backend.core import states
from backend.core.errors import DatabaseError, NotFound
from backend.costs import add_cost
from backend.db.models import (
    ROLLUP_STEPS,
    Checkpoint,
    CostRecord,
    EvalSample,
    JobLog,
    MetricsPoint,
    MetricsRollup,
    TrainingJob,
    utcnow,
)
from backend.db.session import dispose_engines, session_scope
from backend.notifications import notify

log = logging.getLogger(__name__)
T = TypeVar("T")
RETRY_SECONDS = 120.0
METRIC_FIELDS = ("training_loss", "validation_loss", "learning_rate", "gradient_norm", "throughput",
                 "gpu_utilization", "tokens_processed")


def with_retry(fn: Callable[[], T], what: str, budget_s: float = RETRY_SECONDS) -> T:
    """Run ``fn`` and retry on an unreachable database for up to ``budget_s`` seconds."""
    deadline, delay = time.monotonic() + budget_s, 0.25
    while True:
        try:
            return fn()
        except DatabaseError as exc:
            if exc.code != "database_unreachable" or time.monotonic() > deadline:
                raise
            log.warning("database unreachable while writing %s; retrying in %.1fs", what, delay)
            time.sleep(delay)
            delay = min(delay * 2, 5.0)
            dispose_engines()


def artifact_id_for(job_id: str) -> str:
    """The id of the model artifact job ``job_id`` produces, and so its object prefix
    ``models/{id}/``: one per job, the same in every process (driver, rank 0, a retried driver),
    so the adapter is uploaded once, under one prefix."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"brightrun:model-artifact:{job_id}"))


def _job(s, job_id: str) -> TrainingJob:
    row = s.get(TrainingJob, job_id)
    if row is None:
        raise NotFound(f"training job {job_id} not found", code="job_not_found")
    return row


def _to(s, row: TrainingJob, status: str | None = None, stage: str | None = None) -> None:
    if status and status != row.status:
        states.check("job", row.status, status)
        row.status = status
    if stage and stage != row.current_stage:
        states.check("stage", row.current_stage, stage)
        row.current_stage = stage


def is_cancelled(job_id: str) -> bool:
    def go() -> bool:
        with session_scope() as s:
            return _job(s, job_id).status == "cancelled"
    return with_retry(go, "status")


def set_stage(job_id: str, stage: str) -> None:
    """Move the job to ``stage`` (initializing also sets status initializing and started_at;
    training sets status running). A job already cancelled/failed is left alone."""
    def go() -> None:
        with session_scope() as s:
            row = _job(s, job_id)
            if row.status in states.JOB_TERMINAL:
                return
            if stage == "initializing":
                if row.status == "queued":  # a restarted worker group says it again: ignore
                    _to(s, row, "initializing", "initializing")
                row.started_at = row.started_at or utcnow()
            elif stage == "training":
                if row.status == "queued":
                    _to(s, row, "initializing", "initializing")
                if row.status == "initializing":
                    _to(s, row, "running")
                if states.can("stage", row.current_stage, "training"):
                    _to(s, row, None, "training")
            elif row.current_stage != stage and states.can("stage", row.current_stage, stage):
                _to(s, row, None, stage)
    with_retry(go, f"stage {stage}")


def _cancelled(s, job_id: str) -> bool:
    """Whether the job was cancelled: what its dying processes still send is dropped."""
    return s.scalar(select(TrainingJob.status).where(TrainingJob.id == job_id)) == "cancelled"


def add_logs(job_id: str, entries: list[dict]) -> None:
    """entries: {level, message, timestamp?, metadata?}. Dropped once the job is cancelled."""
    if not entries:
        return

    def go() -> None:
        with session_scope() as s:
            if _cancelled(s, job_id):
                return
            for e in entries:
                s.add(JobLog(job_id=job_id, level=str(e.get("level", "INFO")).upper()[:10],
                             message=str(e["message"]), timestamp=_ts(e.get("timestamp")),
                             metadata_=e.get("metadata")))
    with_retry(go, "logs")


def _ts(value) -> datetime:
    if isinstance(value, datetime):
        return value
    if isinstance(value, (int, float)):
        return datetime.fromtimestamp(value, timezone.utc)
    return utcnow()


def preference_fields(point: dict) -> dict | None:
    """The TRL-named DPO metrics of a point (``rewards/*``, ``eval_rewards/*``, ``eval_loss``),
    or None for an SFT point."""
    out = {k: v for k, v in point.items()
           if (k.startswith(("rewards/", "eval_rewards/")) or k == "eval_loss") and v is not None}
    return out or None


def append_metrics(job_id: str, points: list[dict]) -> int:
    """Store metric points, one per step: a point replaces a stored point of the same step (a
    step trained again after a restart is the run that goes on; a batch resent after a database
    hiccup gives the same rows). Within ``points`` the last point of a step wins. Dropped once the
    job is cancelled. Returns how many steps were written."""
    if not points:
        return 0
    by_step = {int(p["step"]): p for p in points}

    def go() -> int:
        with session_scope() as s:
            if _cancelled(s, job_id):
                return 0
            steps = sorted(by_step)
            s.execute(delete(MetricsPoint).where(MetricsPoint.job_id == job_id,
                                                 MetricsPoint.step.in_(steps)))
            s.add_all(MetricsPoint(job_id=job_id, epoch=int(p.get("epoch", 0)), step=step,
                                   timestamp=_ts(p.get("timestamp")),
                                   **{k: p.get(k) for k in METRIC_FIELDS},
                                   preference=preference_fields(p) or null())
                      for step, p in by_step.items())
            s.flush()
            refresh_rollups(s, job_id, steps[0], steps[-1])
            return len(steps)
    return with_retry(go, "metrics")


def refresh_rollups(s, job_id: str, first_step: int, last_step: int | None = None) -> None:
    """Recompute the job's MetricsRollup blocks covering ``first_step`` .. ``last_step`` (None: to
    the end, dropping blocks left without points) from its stored points, in session ``s``.
    Idempotent: a resent batch or a retried transaction gives the same rows."""
    lo = max(0, int(first_step)) // ROLLUP_STEPS
    M, R = MetricsPoint, MetricsRollup
    gone = delete(R).where(R.job_id == job_id, R.block >= lo)
    span = [M.job_id == job_id, M.step >= lo * ROLLUP_STEPS]
    if last_step is not None:
        hi = int(last_step) // ROLLUP_STEPS
        gone = gone.where(R.block <= hi)
        span.append(M.step < (hi + 1) * ROLLUP_STEPS)
    s.execute(gone)
    block = (M.step // ROLLUP_STEPS).label("block")
    rows = select(M.job_id, block, func.count(), func.min(M.step), func.max(M.step),
                  func.min(M.training_loss), func.max(M.training_loss),
                  func.sum(M.learning_rate), func.count(M.learning_rate),
                  func.sum(M.throughput), func.count(M.throughput),
                  func.sum(M.gradient_norm), func.count(M.gradient_norm),
                  func.sum(M.gpu_utilization), func.count(M.gpu_utilization),
                  func.max(M.epoch), func.max(M.timestamp), func.max(M.tokens_processed)
                  ).where(*span).group_by(M.job_id, literal_column("block"))
    s.execute(insert(R).from_select(
        ["job_id", "block", "points", "step_min", "step_max", "loss_min", "loss_max", "lr_sum",
         "lr_n", "thr_sum", "thr_n", "gn_sum", "gn_n", "gpu_sum", "gpu_n", "epoch_max", "ts_max",
         "tokens_max"], rows))


def _gpu_summary(row: TrainingJob, result: dict) -> dict:
    """Precision, attention and the measured peak memory next to the estimate's prediction (the
    store ``backend.jobs.estimates.memory_check_for`` reads)."""
    from backend.training.memory_check import memory_check

    predicted = ((row.estimate or {}).get("vram") or {}).get("allocated_gb")
    check = memory_check(row.gpu_config.get("gpu_type"), predicted,
                         result.get("gpu_peak_allocated_gb"))
    return {"precision": result.get("precision"),
            "attn_implementation": (result.get("precision") or {}).get("attn_implementation"),
            "gpu_peak_allocated_gb": result.get("gpu_peak_allocated_gb"),
            "gpu_workers": result.get("gpu_workers"), "predicted_allocated_gb": predicted,
            "memory_error_percent": check.error_percent if check else None}


def update_progress(job_id: str, *, epoch: int, step: int, total_steps: int | None,
                    percent: float, current_metrics: dict | None, eta_s: float | None) -> None:
    """Progress fields, estimated completion and the compute cost accrued so far."""
    def go() -> None:
        with session_scope() as s:
            row = _job(s, job_id)
            if row.status in states.JOB_TERMINAL:
                return
            row.current_epoch, row.current_step = int(epoch), int(step)
            row.total_steps = total_steps or row.total_steps
            row.progress = max(0.0, min(100.0, float(percent)))
            if current_metrics:
                row.current_metrics = {**(row.current_metrics or {}), **current_metrics}
            if eta_s is not None:
                row.estimated_completion_at = utcnow() + timedelta(seconds=float(eta_s))
            _accrue_compute(s, row)
    with_retry(go, "progress")


def _accrue_compute(s, row: TrainingJob, final: bool = False) -> None:
    """Record compute cost (elapsed × workers × rate) not yet recorded for this job: in steps of at
    least half a cent while it runs, all of it when ``final`` (so the ledger's sum for the job is
    the job's final cost, backend/jobs/figures.py)."""
    if row.started_at is None:
        return
    started = row.started_at if row.started_at.tzinfo else row.started_at.replace(tzinfo=timezone.utc)
    hours = max(0.0, (utcnow() - started).total_seconds() / 3600.0)
    workers = int(row.gpu_config.get("num_workers") or row.gpu_config.get("num_gpus") or 1)
    rate = float(row.gpu_config.get("cost_per_gpu_hour") or 0.0)
    total = hours * workers * rate
    recorded = float(s.scalar(select(func.coalesce(func.sum(CostRecord.amount), 0.0)).where(
        CostRecord.job_id == row.id, CostRecord.cost_type == "compute")) or 0.0)
    delta = total - recorded
    if delta >= (1e-9 if final else 0.005):
        add_cost(s, row.user_id, "compute", round(delta, 6), job_id=row.id,
                 details={"worker_hours": hours * workers, "unit_cost": rate,
                          "gpu_type": row.gpu_config.get("gpu_type"), "workers": workers})
    row.current_cost = max(total, recorded)


def add_checkpoint(job_id: str, *, step: int, epoch: int, loss: float | None, bucket: str,
                   path: str, size_bytes: int) -> None:
    def go() -> None:
        with session_scope() as s:
            if _cancelled(s, job_id):
                return
            exists = s.scalar(select(func.count()).select_from(Checkpoint).where(
                Checkpoint.job_id == job_id, Checkpoint.step == step)) or 0
            if not exists:
                s.add(Checkpoint(job_id=job_id, step=step, epoch=epoch, loss=loss,
                                 storage_bucket=bucket, storage_path=path, file_size=size_bytes))
    with_retry(go, "checkpoint")


def add_samples(job_id: str, step: int, items: list[dict]) -> int:
    """Store the evaluation samples of ``step`` (each ``{index, question, prompt, reference,
    answer}`` and optionally ``key_fact``, a list of strings), replacing what that step had (a resumed run sends them again). Returns how many."""
    if not items:
        return 0

    def go() -> int:
        with session_scope() as s:
            _job(s, job_id)
            s.execute(delete(EvalSample).where(EvalSample.job_id == job_id,
                                               EvalSample.step == int(step)))
            s.add_all(EvalSample(job_id=job_id, step=int(step), prompt_index=int(it["index"]),
                                 question=str(it.get("question") or ""),
                                 prompt=str(it.get("prompt") or ""),
                                 reference=str(it.get("reference") or ""),
                                 answer=str(it.get("answer") or ""),
                                 key_fact=json.dumps(it["key_fact"]) if it.get("key_fact")
                                 else None) for it in items)
            return len(items)
    return with_retry(go, "evaluation samples")


def fail_job(job_id: str, message: str, stack: str | None = None) -> bool:
    """Mark an active job failed with its error and notify the user. Returns False when the job had
    already ended (e.g. cancelled)."""
    def go() -> bool:
        with session_scope() as s:
            row = _job(s, job_id)
            if row.status in states.JOB_TERMINAL:
                return False
            _accrue_compute(s, row, final=True)
            _to(s, row, "failed")
            row.error_message, row.error_stack = message[:10000], (stack or "")[:50000] or None
            row.completed_at, row.final_cost = utcnow(), row.current_cost
            s.add(JobLog(job_id=job_id, level="ERROR", message=f"job failed: {message}"))
            notify(s, row.user_id, "job_failed", f"Training job {row.name or row.id[:8]} failed",
                   message[:500], priority="high", action_url=f"/monitor?job={row.id}",
                   metadata={"job_id": row.id})
            return True
    return with_retry(go, "failure")


def complete_job(job_id: str, *, artifact_id: str, artifacts: dict, result: dict) -> str:
    """Finish a job: model artifact (quality metrics, training summary, configuration, file paths),
    final compute cost, storage cost of the adapter, stage/status completed, notification.
    Returns the artifact id. Idempotent: a job already completed returns its artifact id."""
    from backend.db.models import Dataset, ModelArtifact
    from backend.jobs.samples import recorded_scores
    from backend.training.quality import quality_metrics, rating_text

    def go() -> str:
        with session_scope() as s:
            row = _job(s, job_id)
            if row.status == "completed" and row.artifact_id:
                return row.artifact_id
            if row.status in states.JOB_TERMINAL:
                raise states.InvalidTransition(f"job {job_id} already {row.status}")
            _accrue_compute(s, row, final=True)
            if row.current_stage != "saving":
                _to(s, row, None, "saving")
            dataset = s.get(Dataset, row.dataset_id)
            started = row.started_at or row.queued_at
            started = started if started.tzinfo else started.replace(tzinfo=timezone.utc)
            duration = float(result.get("duration_s") or (utcnow() - started).total_seconds())
            workers = int(row.gpu_config.get("num_workers") or 1)
            qm = quality_metrics(result.get("first_train_loss"), result.get("final_train_loss"),
                                 result.get("final_val_loss"), result.get("best_val_loss"),
                                 result.get("best_epoch"), result.get("base_val_loss"),
                                 answers=recorded_scores(s, row.id))
            summary = {"duration_seconds": duration, "total_epochs": row.total_epochs,
                       "total_steps": result.get("total_steps") or row.total_steps,
                       "final_learning_rate": result.get("final_learning_rate"),
                       "worker_hours": duration / 3600.0 * workers,
                       "total_tokens_processed": result.get("tokens_processed"),
                       "avg_throughput": result.get("avg_throughput"),
                       "truncated_conversations": result.get("truncated"),
                       "hardware": row.gpu_config.get("gpu_type"), "workers": workers,
                       "eval_samples_seconds": (result.get("eval_samples") or {}).get("seconds"),
                       "model_params": result.get("model_params")
                       or (row.estimate or {}).get("model_params"),
                       "total_cost": row.current_cost, **_gpu_summary(row, result),
                       # the run's plan and training wall time (backend/jobs/figures.py reads them)
                       "training_seconds": result.get("training_seconds"),
                       "plan": result.get("dataset") if isinstance(result.get("dataset"), dict)
                       else None}
            count = s.scalar(select(func.count()).select_from(ModelArtifact).where(
                ModelArtifact.user_id == row.user_id)) or 0
            s.add(ModelArtifact(
                id=artifact_id, user_id=row.user_id, job_id=row.id, dataset_id=row.dataset_id,
                name=f"{row.name or (dataset.name if dataset else 'adapter')} adapter",
                version=f"v{count + 1}", base_model=row.hyperparameters.get("base_model", ""),
                quality_metrics=qm, training_summary=summary,
                configuration={"preset_id": row.preset_id, "hyperparameters": row.hyperparameters,
                               "gpu_config": row.gpu_config,
                               "dataset_name": dataset.name if dataset else None},
                artifacts=artifacts, parent_model_id=row.parent_model_id))
            row.current_cost = float(row.current_cost or 0.0) + _storage_cost(s, row, artifacts)
            _to(s, row, "completed", "completed")
            row.progress, row.artifact_id = 100.0, artifact_id
            row.completed_at, row.final_cost = utcnow(), row.current_cost
            row.current_metrics = {**(row.current_metrics or {}),
                                   "validation_loss": result.get("final_val_loss")}
            s.add(JobLog(job_id=job_id, level="INFO",
                         message=f"completed: adapter stored as model {artifact_id} "
                                 f"({rating_text(qm['convergence_quality'])})"))
            notify(s, row.user_id, "job_complete",
                   f"Training job {row.name or row.id[:8]} completed",
                   (f"Final validation loss {qm['final_validation_loss']:.4f}, "
                    if qm["final_validation_loss"] is not None else "No validation split, ")
                   + f"{rating_text(qm['convergence_quality'])}, cost ${row.current_cost:,.2f}.",
                   action_url=f"/models?id={artifact_id}",
                   metadata={"job_id": row.id, "artifact_id": artifact_id})
            return artifact_id
    return with_retry(go, "completion")


def _storage_cost(s, row: TrainingJob, artifacts: dict) -> float:
    """Record the adapter's first month of storage at the job's hardware price — the price and
    definition its estimate used (:func:`backend.training.catalogs.storage_cost`); returns the
    amount."""
    from backend.training.catalogs import storage_cost, storage_price_for

    try:
        price = storage_price_for((row.gpu_config or {}).get("gpu_type"))
    except Exception:  # noqa: BLE001 - an unreadable catalog must not lose the completion
        price = 0.0
    size = sum(int(v) for v in (artifacts.get("file_sizes") or {}).values())
    amount = storage_cost(size, price)
    add_cost(s, row.user_id, "storage", amount, job_id=row.id,
             details={"storage_gib": size / 2**30, "unit_cost": price,
                      "description": "adapter, first month"})
    return amount