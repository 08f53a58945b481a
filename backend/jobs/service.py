"""Training jobs: estimate, admission (budget), creation and submission to Ray, listing, cancel,
metrics/logs for the monitor, and the reconciler that never leaves a dead job running."""
from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict

from sqlalchemy import func, select

from backend.cluster.ended import (
    age_s,
    ended_reason,
    has_ended,
    never_submitted,
    ray_info,
    stop_quietly,
)
from backend.core import states
from backend.core.access import check_owner, scope
from backend.core.config import get_settings
from backend.core.errors import BrightRunError, BudgetExceeded, InvalidInput
from backend.core.pagination import Page, clamp_page
from backend.core.schemas import CheckpointInfo, JobInfo, JobLogInfo, MetricsPointInfo, UserInfo
from backend.costs import money_text
from backend.db.models import Checkpoint, Dataset, JobLog, ModelArtifact, TrainingJob, utcnow
from backend.db.session import session_scope
from backend.jobs.estimates import build_config, estimate_for_dataset

log = logging.getLogger(__name__)
__all__ = ["build_config", "estimate_for_dataset", "create_job", "get_job", "list_jobs",
           "cancel_job", "job_metrics", "job_logs", "job_checkpoints", "reconcile", "job_counts"]


def _info(s, row: TrainingJob) -> JobInfo:
    info = JobInfo.model_validate(row)
    ds = s.get(Dataset, row.dataset_id)
    info.dataset_name = ds.name if ds else None
    return info


def _row(s, actor: UserInfo, job_id: str) -> TrainingJob:
    row = s.get(TrainingJob, job_id)
    check_owner(actor, row, "Job", job_id)
    return row


def default_job_name(dataset_name: str | None, preset_id: str | None) -> str:
    """The name a job gets when none is typed: what Configure's job-name field shows as its
    placeholder, "<dataset> · <preset>" (cut to the 200 characters a name may have)."""
    return f"{dataset_name or 'dataset'} · {preset_id or 'custom'}"[:200]


def create_job(actor: UserInfo, dataset_id: str, *, preset_id: str = "balanced",
               overrides: list[str] | dict | None = None, base_model: str | None = None,
               hardware_id: str = "cpu-local", workers: int = 1, allow_over_budget: bool = False,
               name: str | None = None, parent_model_id: str | None = None,
               submit: bool = True) -> JobInfo:
    """Check the dataset (ready, owned), build and validate the configuration, estimate, apply the
    budget admission rule, store the job and submit the training Ray job.

    Raises NotFound (dataset/parent model), InvalidInput (dataset not ready, bad config, base model
    not on this machine, hardware the known Ray cluster does not have: ``hardware_unavailable``),
    BudgetExceeded (over budget without ``allow_over_budget``). A failed Ray submission leaves the
    job ``failed`` with the reason, never ``queued``.
    """
    from backend.base_models.registry import resolve_base_model
    from backend.core.text_checks import check_text
    from backend.jobs.capacity import check_hardware_available

    name = check_text((name or "").strip()[:200], "job name") or None
    config = build_config(preset_id, base_model=base_model, overrides=overrides)
    resolve_base_model(config.base_model, get_settings().home)  # must exist locally
    est = estimate_for_dataset(actor, dataset_id, config, hardware_id, workers)
    if submit:
        check_hardware_available(est["hardware"]["is_gpu"], workers, est["hardware"]["name"])
    decision = est["budget"]
    if decision["over_budget"] and not allow_over_budget:
        raise BudgetExceeded(
            f"this job (estimated {money_text(est['cost']['total'])}) would bring this month's "
            f"spend to {money_text(decision['projected'])}, over your "
            f"{money_text(decision['budget'])} budget",
            hint="confirm with --allow-over-budget (or the checkbox) to start it anyway")
    decision["confirmed_over_budget"] = bool(decision["over_budget"] and allow_over_budget)
    with session_scope() as s:
        if parent_model_id:
            parent = s.get(ModelArtifact, parent_model_id)
            check_owner(actor, parent, "Model", parent_model_id)
        hw = est["hardware"]
        row = TrainingJob(
            user_id=actor.id, dataset_id=dataset_id, parent_model_id=parent_model_id,
            name=name or default_job_name(getattr(s.get(Dataset, dataset_id), "name", None),
                                          preset_id),
            preset_id=preset_id,
            hyperparameters=config.model_dump(mode="json"),
            gpu_config={"gpu_type": hw["id"], "num_gpus": workers if hw["is_gpu"] else 0,
                        "num_workers": workers, "gpu_memory_gb": hw["memory_gb"],
                        "cost_per_gpu_hour": hw["cost_per_gpu_hour"], "use_gpu": hw["is_gpu"],
                        # as the estimate decided it (the setting's none = auto)
                        "gradient_checkpointing": est["vram"]["gradient_checkpointing"],
                        # the Ray cluster is this machine (backend.training.runtime_plan.runtime_kind)
                        "local_cluster": local_cluster()},
            estimate=est, budget_decision=decision, total_epochs=config.num_epochs,
            total_steps=est.get("total_steps"), estimated_total_cost=est["cost"]["total"],
            estimated_completion_at=None)
        s.add(row)
        s.flush()
        s.add(JobLog(job_id=row.id, level="INFO",
                     message=f"job created: preset {preset_id}, {workers} × {hw['id']}, "
                             f"estimate {money_text(est['cost']['total'])}"))
        job_id = row.id
    if submit:
        submit_job(job_id)
    with session_scope() as s:
        return _info(s, s.get(TrainingJob, job_id))


def local_cluster() -> bool:
    """Whether jobs run on a Ray cluster that is this machine: the product's own head
    (``RAY_ADDRESS`` unset) or one on a loopback address. False for a bad ``RAY_ADDRESS`` (the
    submission reports that). Raises nothing."""
    from backend.cluster.gateway import get_gateway

    try:
        return not get_gateway().is_remote
    except BrightRunError:
        return False


def submit_job(job_id: str) -> str | None:
    """Submit the training recipe for a queued job; a failed submission marks the job failed."""
    from backend.cluster.gateway import get_gateway
    from backend.jobs.progress import fail_job
    from backend.training.runtime_plan import driver_cpus, runtime_kind

    local = local_cluster()
    with session_scope() as s:
        row = s.get(TrainingJob, job_id)
        gpu = dict(row.gpu_config or {})
        if gpu.get("local_cluster") != local:  # the cluster setting changed since create_job
            row.gpu_config = gpu = {**gpu, "local_cluster": local}
    # the driver trains itself (one CPU worker) or forks the ranks (CPU workers on a local
    # cluster): it is scheduled with the CPUs they use (ray_jobs.worker.runtime)
    workers = int(gpu.get("num_workers") or 1)
    kind = runtime_kind(workers, bool(gpu.get("use_gpu")), local)
    try:
        sub = get_gateway().submit("ray_jobs.train_lora", ["--job-id", job_id], kind="train",
                                   object_id=job_id,
                                   entrypoint_num_cpus=driver_cpus(kind, workers))
    except BrightRunError as exc:
        fail_job(job_id, f"could not submit the job to Ray: {exc}")
        return None
    with session_scope() as s:
        s.get(TrainingJob, job_id).external_job_id = sub
        s.add(JobLog(job_id=job_id, level="INFO", message=f"submitted to Ray as {sub}",
                     metadata_={"phase": "submitted", "at": round(time.time(), 3)}))
    return sub


def get_job(actor: UserInfo, job_id: str) -> JobInfo:
    """Raises NotFound."""
    with session_scope() as s:
        return _info(s, _row(s, actor, job_id))


def list_jobs(actor: UserInfo, *, status: str | None = None, dataset_id: str | None = None,
              page: int = 1, per_page: int = 20) -> Page[JobInfo]:
    """The actor's jobs (admins: all), newest first."""
    page, per_page = clamp_page(page, per_page)
    stmt = scope(select(TrainingJob), TrainingJob, actor)
    if status:
        stmt = stmt.where(TrainingJob.status == status)
    if dataset_id:
        stmt = stmt.where(TrainingJob.dataset_id == dataset_id)
    with session_scope() as s:
        total = s.scalar(select(func.count()).select_from(stmt.subquery())) or 0
        rows = s.execute(
            stmt.add_columns(Dataset.name).join(Dataset, Dataset.id == TrainingJob.dataset_id)
            .order_by(TrainingJob.created_at.desc(), TrainingJob.id)
            .offset((page - 1) * per_page).limit(per_page)).all()
        items = []
        for row, ds_name in rows:
            info = JobInfo.model_validate(row)
            info.dataset_name = ds_name
            items.append(info)
        return Page(items, total, page, per_page)


def job_counts(actor: UserInfo) -> dict[str, int]:
    stmt = scope(select(TrainingJob.status, func.count()), TrainingJob, actor).group_by(
        TrainingJob.status)
    with session_scope() as s:
        by = dict(s.execute(stmt).all())
    by["active"] = sum(by.get(k, 0) for k in states.JOB_ACTIVE)
    by["total"] = sum(v for k, v in by.items() if k not in ("active",))
    return by


def cancel_job(actor: UserInfo, job_id: str) -> JobInfo:
    """Stop the Ray job and mark the job cancelled. Raises NotFound, InvalidTransition (already
    ended)."""

    with session_scope() as s:
        row = _row(s, actor, job_id)
        states.check("job", row.status, "cancelled")
        row.status, row.completed_at = "cancelled", utcnow()
        row.final_cost = row.current_cost
        row.error_message = f"cancelled by {actor.email}"
        s.add(JobLog(job_id=job_id, level="WARNING", message=f"cancelled by {actor.email}"))
        sub = row.external_job_id
    stop_quietly(sub)
    return get_job(actor, job_id)


_METRICS_ENTRIES = 32  # results kept per process (≈ 1,200 points each)
_METRICS_TTL_S = 2.0  # an active job's result is recomputed at least this often
_metrics_lock = threading.Lock()
_metrics_cache: OrderedDict[tuple[str, int], tuple[tuple, float, list[MetricsPointInfo]]] = \
    OrderedDict()
_metrics_flights = [threading.Lock() for _ in range(16)]  # one computation at a time per job


def forget_metrics(job_id: str | None = None) -> None:
    """Empty the process-wide metrics caches (of one job, or all): the next ``job_metrics`` reads
    from scratch (tests, benchmarks)."""
    from backend.jobs import metrics as metrics_query

    if job_id is None:
        metrics_query.clear_cache()
    else:
        metrics_query.forget_job(job_id)
    with _metrics_lock:
        for key in [k for k in _metrics_cache if job_id in (None, k[0])]:
            del _metrics_cache[key]


def job_metrics(actor: UserInfo, job_id: str, max_points: int = 1000) -> list[MetricsPointInfo]:
    """Metric points for charts, downsampled in the query to about ``max_points`` with each bucket's
    highest and lowest training loss kept (peaks survive); every validation point is kept.

    The result is shared by every session of the process: kept per (job, max_points) while the
    job's step, status and ``updated_at`` stay the same (an active job's at most
    ``_METRICS_TTL_S``), computed by one session at a time per job. The access check runs on every
    call. The returned points are shared: do not modify them."""
    flight = _metrics_flights[hash(job_id) % len(_metrics_flights)]
    with session_scope() as s:
        row = _row(s, actor, job_id)
        key = (row.current_step, row.status, row.updated_at)
        ttl = _METRICS_TTL_S if row.status in states.JOB_ACTIVE else None
        hit = _metrics_cached(job_id, max_points, key, ttl)
        if hit is not None:
            return hit
        if flight.acquire(blocking=False):  # nobody computing: compute in this session
            try:
                return _metrics_compute(s, job_id, max_points, key)
            finally:
                flight.release()
    with flight:  # another session computes: wait for it without holding a connection
        hit = _metrics_cached(job_id, max_points, key, ttl)
        if hit is not None:
            return hit
        with session_scope() as s:
            return _metrics_compute(s, job_id, max_points, key)


def _metrics_cached(job_id: str, max_points: int, key: tuple,
                    ttl: float | None) -> list[MetricsPointInfo] | None:
    with _metrics_lock:
        hit = _metrics_cache.get((job_id, max_points))
        if hit is None or hit[0] != key or (ttl is not None and time.monotonic() - hit[1] > ttl):
            return None
        _metrics_cache.move_to_end((job_id, max_points))
        return list(hit[2])


def _metrics_compute(s, job_id: str, max_points: int, key: tuple) -> list[MetricsPointInfo]:
    from backend.jobs.metrics import downsampled_points

    points = downsampled_points(s, job_id, max_points)
    with _metrics_lock:
        _metrics_cache[(job_id, max_points)] = (key, time.monotonic(), points)
        _metrics_cache.move_to_end((job_id, max_points))
        while len(_metrics_cache) > _METRICS_ENTRIES:
            _metrics_cache.popitem(last=False)
    return list(points)


def job_logs(actor: UserInfo, job_id: str, *, level: str | None = None,
             limit: int = 200) -> list[JobLogInfo]:
    """Latest ``limit`` log lines (oldest first), optionally only one level and above."""
    order = {"INFO": 0, "WARNING": 1, "ERROR": 2}
    with session_scope() as s:
        _row(s, actor, job_id)
        stmt = select(JobLog).where(JobLog.job_id == job_id)
        if level:
            if level.upper() not in order:
                raise InvalidInput(f"level must be one of {', '.join(order)}")
            stmt = stmt.where(JobLog.level.in_([k for k, v in order.items()
                                                if v >= order[level.upper()]]))
        # newest first for the limit, then reversed: oldest first, by timestamp then id (the same
        # order on every read, also for lines with one timestamp)
        rows = s.scalars(stmt.order_by(JobLog.timestamp.desc(), JobLog.id.desc())
                         .limit(limit)).all()
        return [JobLogInfo.model_validate(r) for r in reversed(rows)]


def job_checkpoints(actor: UserInfo, job_id: str) -> list[CheckpointInfo]:
    with session_scope() as s:
        _row(s, actor, job_id)
        return [CheckpointInfo.model_validate(r) for r in s.scalars(
            select(Checkpoint).where(Checkpoint.job_id == job_id).order_by(Checkpoint.step))]




def reconcile() -> int:
    """Active jobs whose Ray job is not running them become terminal, with the reason: the Ray job
    failed, was stopped or vanished (failed; cancelled when stopped on purpose stays cancelled),
    the job was never submitted (queued without a Ray job for ``backend.cluster.ended.NEVER_SUBMITTED_GRACE_S``), or it
    has waited ``BRIGHTRUN_MISSING_RESOURCE_WAIT_S`` for resources the cluster does not have (its
    Ray job is stopped). Returns how many changed."""
    from backend.jobs.progress import fail_job

    with session_scope() as s:
        active = [(r.id, r.external_job_id, r.updated_at, r.created_at, r.status,
                   dict(r.gpu_config or {})) for r in s.scalars(
            select(TrainingJob).where(TrainingJob.status.in_(states.JOB_ACTIVE),
                                      # a sweep's trials: backend.sweeps.service.reconcile_sweeps
                                      TrainingJob.sweep_id.is_(None)))]
    changed = 0
    for job_id, sub, updated, created, status, gpu in active:
        if sub is None:
            if status == "queued" and never_submitted(created):
                changed += fail_job(job_id, "the job was never submitted to Ray (the process "
                                            "creating it ended first); create it again")
            continue
        info = ray_info(sub)
        if info is None:
            continue
        if info.get("status") in ("PENDING", "RUNNING"):
            why = _waits_for_missing_resources(status, created, gpu)
            if why and fail_job(job_id, why):
                changed += 1
                stop_quietly(sub)
            continue
        if has_ended(info, updated) and fail_job(job_id, ended_reason(sub, info)):
            changed += 1
    return changed


def _waits_for_missing_resources(status: str, created, gpu: dict) -> str | None:
    """The failure reason for a job that has not started training after the bounded wait and
    needs resources the cluster does not have at all; None otherwise (or when not known)."""
    from backend.jobs.capacity import cluster_totals, job_needs, missing_resources

    wait_s = get_settings().missing_resource_wait_s
    if status not in ("queued", "initializing") or wait_s <= 0 or age_s(created) < wait_s:
        return None
    totals = cluster_totals()
    needs = job_needs(bool(gpu.get("use_gpu")), int(gpu.get("num_workers") or 1))
    why = missing_resources(needs, totals) if totals else None
    return f"{why} (waited {wait_s:g} s; BRIGHTRUN_MISSING_RESOURCE_WAIT_S)" if why else None


