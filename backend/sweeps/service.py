"""Hyperparameter sweeps: create (grid → one queued training job per trial, the sweep's cost
estimate and budget admission before anything is written), submit the sweep's one Ray job
(``python -m ray_jobs.sweep --sweep-id ID``: Ray Tune runs the trials), list/show, cancel (every
trial with it) and reconcile (a dead sweep driver ends its sweep and every trial left active)."""
from __future__ import annotations

import logging
import time

from sqlalchemy import func, select

from backend.cluster.ended import stop_quietly
from backend.core import states
from backend.core.access import check_owner, scope
from backend.core.errors import BrightRunError, BudgetExceeded, InvalidInput
from backend.core.pagination import Page, clamp_page
from backend.core.schemas import JobInfo, UserInfo
from backend.costs import money_text
from backend.db.models import Dataset, JobLog, Sweep, TrainingJob, utcnow
from backend.db.session import session_scope
from backend.sweeps import grid as sweep_grid
from backend.sweeps.progress import fail_sweep
from backend.sweeps.schemas import SweepInfo

log = logging.getLogger(__name__)
HARDWARE = "cpu-local"  # each trial: one CPU worker trained in its Tune trial's process
MAX_CONCURRENT = 16


def _info(s, row: Sweep, with_trials: bool = True) -> SweepInfo:
    info = SweepInfo.model_validate(row)
    ds = s.get(Dataset, row.dataset_id)
    info.dataset_name = ds.name if ds else None
    if with_trials:
        jobs = s.scalars(select(TrainingJob).where(TrainingJob.sweep_id == row.id)).all()
        info.trials = sorted((JobInfo.model_validate(j) for j in jobs),
                             key=lambda j: (j.sweep_trial or {}).get("index", 0))
        for t in info.trials:
            t.dataset_name = info.dataset_name
    return info


def _row(s, actor: UserInfo, sweep_id: str) -> Sweep:
    row = s.get(Sweep, sweep_id)
    check_owner(actor, row, "Sweep", sweep_id)
    return row


def plan_sweep(actor: UserInfo, dataset_id: str, *, preset_id: str = "balanced",
               grid: list[str], overrides: list[str] | None = None, base_model: str | None = None,
               samples: int = 1, max_concurrent: int = 1, scheduler: str = "fifo") -> dict:
    """Check everything a sweep needs and estimate it, writing nothing: ``{"grid", "trials":
    [{"params", "config", "estimate"}], "cost", "budget", "evaluations"}``. Raises InvalidInput
    (bad grid, parameter, value, scheduler, concurrency; dataset not ready), NotFound (dataset,
    preset, base model)."""
    from backend.base_models.registry import resolve_base_model
    from backend.core.config import get_settings
    from backend.jobs.estimates import build_config, estimate_for_dataset
    from backend.training.config import InvalidTrainingConfig, TrainingConfig
    from backend.training.estimation import budget_check

    scheduler = sweep_grid.check_scheduler(scheduler)
    if not 1 <= int(max_concurrent) <= MAX_CONCURRENT:
        raise InvalidInput(f"--max-concurrent must be 1 to {MAX_CONCURRENT}, not {max_concurrent}",
                           code="invalid_grid")
    values = sweep_grid.parse_grid(list(grid))
    points = sweep_grid.expand(values, samples)
    base = build_config(preset_id, base_model=base_model, overrides=list(overrides or []))
    resolve_base_model(base.base_model, get_settings().home)  # must exist locally
    trials, total = [], 0.0
    for params in points:
        try:
            config = TrainingConfig(**{**base.model_dump(),
                                       **sweep_grid.trial_overrides(params, base.seed)})
        except InvalidTrainingConfig as exc:
            raise InvalidInput(f"trial {sweep_grid.params_text(params)}: {exc}",
                               code="invalid_grid") from None
        est = estimate_for_dataset(actor, dataset_id, config, HARDWARE, 1)
        total += float(est["cost"]["total"])
        trials.append({"params": params, "config": config, "estimate": est})
    first = trials[0]["estimate"]["budget"]
    decision = budget_check(first["month_spend"], total, first.get("budget")).to_dict()
    decision.update(month_spend=first["month_spend"],
                    over_budget=not decision["allowed_without_confirmation"])
    evaluations = max(_evaluations(t["config"], t["estimate"]) for t in trials)
    if scheduler == "asha" and evaluations < 2:
        raise InvalidInput("ASHA needs trials that evaluate at least twice; this one evaluates "
                           "once", code="invalid_grid",
                           hint="raise num_epochs or set eval_every_steps")
    return {"grid": values, "trials": trials, "cost": total, "budget": decision,
            "evaluations": evaluations, "scheduler": scheduler, "preset_id": preset_id,
            "overrides": list(overrides or []), "samples": int(samples),
            "max_concurrent": int(max_concurrent)}


def _evaluations(config, est: dict) -> int:
    """How many validation losses a trial reports: one per epoch, plus every eval_every_steps."""
    steps = int(est.get("total_steps") or 0)
    every = int(config.eval_every_steps or 0)
    return int(config.num_epochs) + (steps // every if every else 0)


def create_sweep(actor: UserInfo, dataset_id: str, *, preset_id: str = "balanced",
                 grid: list[str], overrides: list[str] | None = None,
                 base_model: str | None = None, samples: int = 1, max_concurrent: int = 1,
                 scheduler: str = "fifo", allow_over_budget: bool = False,
                 name: str | None = None, submit: bool = True) -> SweepInfo:
    """Plan (:func:`plan_sweep`), admit against the budget (the sum of the trials' estimates),
    store the sweep and one queued job per trial in one transaction, submit the sweep's Ray job.
    Raises what :func:`plan_sweep` raises and BudgetExceeded; nothing is written then. A failed
    submission leaves the sweep and its trials ``failed`` with the reason."""
    from backend.core.text_checks import check_text
    from backend.jobs.service import local_cluster

    name = check_text((name or "").strip()[:200], "sweep name") or None
    plan = plan_sweep(actor, dataset_id, preset_id=preset_id, grid=grid, overrides=overrides,
                      base_model=base_model, samples=samples, max_concurrent=max_concurrent,
                      scheduler=scheduler)
    decision = plan["budget"]
    if decision["over_budget"] and not allow_over_budget:
        raise BudgetExceeded(
            f"this sweep ({len(plan['trials'])} trials, estimated {money_text(plan['cost'])}) "
            f"would bring this month's spend to {money_text(decision['projected'])}, over your "
            f"{money_text(decision['budget'])} budget",
            hint="confirm with --allow-over-budget to start it anyway")
    decision["confirmed_over_budget"] = bool(decision["over_budget"] and allow_over_budget)
    local = local_cluster()
    with session_scope() as s:
        ds_name = getattr(s.get(Dataset, dataset_id), "name", None)
        sweep = Sweep(user_id=actor.id, dataset_id=dataset_id, preset_id=preset_id,
                      name=name or f"{ds_name or 'dataset'} · sweep · {preset_id}"[:200],
                      grid=plan["grid"], overrides=plan["overrides"], samples=plan["samples"],
                      max_concurrent=plan["max_concurrent"], scheduler=plan["scheduler"],
                      metric="validation_loss", status="queued", trial_count=len(plan["trials"]),
                      estimate={"total": plan["cost"], "evaluations": plan["evaluations"],
                                "trials": [t["estimate"]["cost"]["total"]
                                           for t in plan["trials"]]},
                      budget_decision=decision, estimated_total_cost=plan["cost"])
        s.add(sweep)
        s.flush()
        for index, trial in enumerate(plan["trials"]):
            s.add(_trial_row(actor, sweep, index, trial, local))
        sweep_id = sweep.id
    if submit:
        submit_sweep(sweep_id)
    return get_sweep(actor, sweep_id)


def _trial_row(actor: UserInfo, sweep: Sweep, index: int, trial: dict, local: bool) -> TrainingJob:
    est, config = trial["estimate"], trial["config"]
    hw = est["hardware"]
    params = trial["params"]
    return TrainingJob(
        user_id=actor.id, dataset_id=sweep.dataset_id, preset_id=sweep.preset_id,
        name=f"{sweep.name} · trial {index + 1}: {sweep_grid.params_text(params)}"[:200],
        hyperparameters=config.model_dump(mode="json"),
        gpu_config={"gpu_type": hw["id"], "num_gpus": 0, "num_workers": 1,
                    "gpu_memory_gb": hw["memory_gb"], "cost_per_gpu_hour": hw["cost_per_gpu_hour"],
                    "use_gpu": False, "gradient_checkpointing": est["vram"]["gradient_checkpointing"],
                    "local_cluster": local},
        estimate=est, budget_decision=est["budget"], total_epochs=config.num_epochs,
        total_steps=est.get("total_steps"), estimated_total_cost=est["cost"]["total"],
        sweep_id=sweep.id,
        sweep_trial={"index": index, "params": params, "stopped_early": False, "best": False})


def submit_sweep(sweep_id: str) -> str | None:
    """Submit the sweep's Ray job; a failed submission fails the sweep and its trials."""
    from backend.cluster.gateway import get_gateway

    try:
        sub = get_gateway().submit("ray_jobs.sweep", ["--sweep-id", sweep_id], kind="sweep",
                                   object_id=sweep_id, entrypoint_num_cpus=0)
    except BrightRunError as exc:
        fail_sweep(sweep_id, f"could not submit the sweep to Ray: {exc}")
        return None
    with session_scope() as s:
        s.get(Sweep, sweep_id).external_job_id = sub
        for job in s.scalars(select(TrainingJob).where(TrainingJob.sweep_id == sweep_id)):
            s.add(JobLog(job_id=job.id, level="INFO", message=f"trial of sweep {sweep_id}, "
                         f"submitted to Ray as {sub}",
                         metadata_={"phase": "submitted", "at": round(time.time(), 3)}))
    return sub


def get_sweep(actor: UserInfo, sweep_id: str) -> SweepInfo:
    """The sweep with its trials (in grid order). Raises NotFound."""
    with session_scope() as s:
        return _info(s, _row(s, actor, sweep_id))


def list_sweeps(actor: UserInfo, *, status: str | None = None, page: int = 1,
                per_page: int = 20) -> Page[SweepInfo]:
    """The actor's sweeps (admins: all), newest first, with their trials."""
    page, per_page = clamp_page(page, per_page)
    stmt = scope(select(Sweep), Sweep, actor)
    if status:
        stmt = stmt.where(Sweep.status == status)
    with session_scope() as s:
        total = s.scalar(select(func.count()).select_from(stmt.subquery())) or 0
        rows = s.scalars(stmt.order_by(Sweep.created_at.desc(), Sweep.id)
                         .offset((page - 1) * per_page).limit(per_page)).all()
        return Page([_info(s, r) for r in rows], total, page, per_page)


def cancel_sweep(actor: UserInfo, sweep_id: str) -> SweepInfo:
    """Mark the sweep and every trial still active cancelled, then stop the sweep's Ray job (its
    Tune trials with it). Raises NotFound, InvalidTransition (already ended)."""

    with session_scope() as s:
        row = _row(s, actor, sweep_id)
        states.check("sweep", row.status, "cancelled")
        row.status, row.completed_at = "cancelled", utcnow()
        row.error_message = f"cancelled by {actor.email}"
        for job in s.scalars(select(TrainingJob).where(TrainingJob.sweep_id == sweep_id,
                                                       TrainingJob.status.in_(states.JOB_ACTIVE))):
            job.status, job.completed_at = "cancelled", utcnow()
            job.final_cost = job.current_cost
            job.error_message = f"sweep cancelled by {actor.email}"
            s.add(JobLog(job_id=job.id, level="WARNING",
                         message=f"sweep cancelled by {actor.email}"))
        sub = row.external_job_id
    stop_quietly(sub)
    return get_sweep(actor, sweep_id)


def sweep_curves(actor: UserInfo, sweep_id: str) -> dict[str, list[dict]]:
    """Each trial's validation losses for the overlaid chart: ``{job_id: [{step, validation_loss,
    training_loss}]}`` (validation points only, plus the training loss at those steps)."""
    from backend.db.models import MetricsPoint

    with session_scope() as s:
        _row(s, actor, sweep_id)
        rows = s.execute(select(MetricsPoint.job_id, MetricsPoint.step,
                                MetricsPoint.validation_loss, MetricsPoint.training_loss)
                         .join(TrainingJob, TrainingJob.id == MetricsPoint.job_id)
                         .where(TrainingJob.sweep_id == sweep_id,
                                MetricsPoint.validation_loss.is_not(None))
                         .order_by(MetricsPoint.job_id, MetricsPoint.step)).all()
    out: dict[str, list[dict]] = {}
    for job_id, step, val, train in rows:
        out.setdefault(job_id, []).append({"step": step, "validation_loss": val,
                                           "training_loss": train})
    return out


def reconcile_sweeps() -> int:
    """Active sweeps whose Ray job is not running them end ``failed`` with the reason, and so does
    every trial they left active (a sweep never submitted: after the jobs' grace). Returns how
    many sweeps changed."""
    from backend.cluster.ended import ended_info, ended_reason, never_submitted

    with session_scope() as s:
        active = [(r.id, r.external_job_id, r.updated_at, r.created_at) for r in s.scalars(
            select(Sweep).where(Sweep.status.in_(states.SWEEP_ACTIVE)))]
    changed = 0
    for sweep_id, sub, updated, created in active:
        if sub is None:
            if never_submitted(created):
                changed += fail_sweep(sweep_id, "the sweep was never submitted to Ray (the "
                                                "process creating it ended first)")
            continue
        info = ended_info(sub, updated)
        if info is not None:
            changed += fail_sweep(sweep_id, ended_reason(sub, info))
    return changed
