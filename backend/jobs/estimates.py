"""Glue for the Configure page and `jobs estimate`: build a config from a preset and overrides, read
the dataset statistics, calibrate from finished jobs, estimate and apply the budget rule."""
from __future__ import annotations

from typing import Any

from sqlalchemy import select

from backend.base_models.specs import resolve_model
from backend.core.access import check_owner
from backend.core.errors import BrightRunError, InvalidInput, NotFound
from backend.core.schemas import UserInfo
from backend.costs import spend_this_month
from backend.db.models import Dataset, ModelArtifact, TrainingJob, User
from backend.db.session import session_scope
from backend.training.catalogs import (
    from_preset,
    get_hardware,
    storage_price_per_gb_month,  # noqa: F401 (re-exported)
)
from backend.training.config import TrainingConfig, apply_overrides
from backend.training.estimation import (
    EVAL_SPEEDUP,
    CalibrationSample,
    DatasetStatsInput,
    LengthPercentiles,
    budget_check,
    estimate,
)
from backend.training.memory_check import last_memory_check


def build_config(preset_id: str, *, base_model: str | None = None,
                 overrides: list[str] | dict[str, Any] | None = None) -> TrainingConfig:
    """Preset values, then ``base_model``, then overrides (``key=value`` strings or a dict).
    Raises NotFound (preset) or InvalidInput (bad values)."""
    extra: dict[str, Any] = dict(overrides) if isinstance(overrides, dict) else {}
    if base_model:
        extra["base_model"] = base_model
    config = from_preset(preset_id, **extra)
    if isinstance(overrides, list) and overrides:
        config = apply_overrides(config, overrides)
    return config


def stats_input(row: Dataset) -> DatasetStatsInput:
    st = row.statistics or {}
    pct = st.get("length_percentiles") or {}
    return DatasetStatsInput(
        conversations=row.total_conversations or 0, total_tokens=row.total_tokens or 0,
        assistant_tokens=row.assistant_tokens or 0, training_pairs=row.total_training_pairs or 0,
        validation_pairs=row.total_validation_pairs or 0,
        length_percentiles=LengthPercentiles(int(pct.get("p10", 0)), int(pct.get("p50", 0)),
                                             int(pct.get("p90", 0)), int(pct.get("max", 0))),
        file_size_bytes=row.file_size)


def model_spec(base_model: str):
    """Size of a base model: catalog entry, else the local directory's config.json."""
    try:
        return resolve_model(base_model)
    except NotFound:
        from backend.base_models.registry import resolve_base_model
        from backend.core.config import get_settings

        return resolve_model(base_model, model_dir=resolve_base_model(base_model,
                                                                      get_settings().home))


def calibration_samples(s, user_id: str) -> list[CalibrationSample]:
    """Measured throughput of the user's own finished jobs (from their model's training summary);
    another user's jobs never shape (or show up in) this user's estimate. The estimate keeps only
    those on the same hardware. Throughput is tokens processed per second of training wall time
    (first step to end), and the rest of the job's wall time is its start-up
    (``backend/jobs/figures.py`` defines both durations)."""
    from backend.jobs.figures import durations

    rows = s.execute(select(ModelArtifact.training_summary, TrainingJob.gpu_config,
                            TrainingJob.started_at, TrainingJob.completed_at)
                     .join(TrainingJob, TrainingJob.id == ModelArtifact.job_id)
                     .where(TrainingJob.status == "completed", TrainingJob.user_id == user_id)
                     .order_by(ModelArtifact.created_at.desc()).limit(200)).all()
    out = []
    for summary, gpu, started, completed in rows:
        summary = summary or {}
        params, tokens = summary.get("model_params"), summary.get("total_tokens_processed")
        training_s, total_s = durations(summary, started, completed)
        tps = tokens / training_s if tokens and training_s else summary.get("avg_throughput")
        if tps and params:
            startup = total_s - training_s if total_s and training_s else None
            plan = summary.get("plan") or {}
            evaluated = (plan.get("eval_tokens") or 0) / EVAL_SPEEDUP
            out.append(CalibrationSample(hardware_id=gpu.get("gpu_type"), model_params=int(params),
                                         workers=int(gpu.get("num_workers") or 1),
                                         tokens_per_s=float(tps), startup_s=startup,
                                         tokens=round(tokens + evaluated) if tokens else None,
                                         steps=summary.get("total_steps"),
                                         training_s=training_s))
    return out


def exact_plan(row: Dataset, config: TrainingConfig, workers: int):
    """(plan, why not): the trainer's plan for ``row`` from its templated token counts (read once
    per file, base model and max_seq_length per process), or (None, the reason in words) when the
    file is too large to read here, the base model is not on this machine or the template cannot
    encode a conversation. Raises InvalidInput (code ``empty_dataset``) when nothing is left to
    train on."""
    from backend.datasets.templated import EXACT_PLAN_MAX_BYTES, dataset_tokens
    from backend.training.plan import plan_for_config

    try:
        tokens = dataset_tokens(row.storage_path, config.base_model, config.max_seq_length)
    except (BrightRunError, OSError) as exc:
        return None, (f"token counts approximated from the dataset statistics: the base model's "
                      f"tokenizer could not encode the dataset here ({exc})")
    if tokens is None:
        return None, (f"token counts approximated from the dataset statistics: the file is larger "
                      f"than {EXACT_PLAN_MAX_BYTES // 2**20} MB")
    return plan_for_config(tokens.conversations, tokens.ids, config, workers), None


def memory_check_for(s, hardware_id: str, user_id: str) -> dict | None:
    """The user's newest finished job on ``hardware_id`` whose measured peak memory can be held
    against its prediction (``backend.training.memory_check``), as a dict; None when there is
    none. Like the throughput calibration, another user's jobs never show up here."""
    rows = s.scalars(select(ModelArtifact.training_summary)
                     .join(TrainingJob, TrainingJob.id == ModelArtifact.job_id)
                     .where(TrainingJob.status == "completed", TrainingJob.user_id == user_id)
                     .order_by(ModelArtifact.created_at.desc()).limit(200)).all()
    check = last_memory_check(hardware_id, list(rows))
    return check.to_dict() if check else None


def check_method(method: str, dataset_format: str | None, name: str) -> None:
    """DPO trains on preference pairs only, SFT on conversations only. Raises InvalidInput."""
    if (method == "dpo") != (dataset_format == "preference"):
        raise InvalidInput(f"method {method} cannot train on dataset “{name}” ({dataset_format})",
                           code="method_dataset_mismatch",
                           hint="DPO needs a prompt/chosen/rejected dataset; SFT needs conversations")


def estimate_for_dataset(actor: UserInfo, dataset_id: str, config: TrainingConfig,
                         hardware_id: str, workers: int) -> dict:
    """Estimate + hardware + budget decision as one JSON-able dict.

    Raises NotFound (dataset, hardware, model size), InvalidInput (dataset not ready, workers).
    """
    from backend.core.config import get_settings
    from backend.training.target_modules import check_base_model_targets

    hw = get_hardware(hardware_id)
    check_base_model_targets(config.base_model, config.target_modules, get_settings().home)
    spec = model_spec(config.base_model)
    with session_scope() as s:
        row = s.get(Dataset, dataset_id)
        check_owner(actor, row, "Dataset", dataset_id)
        if row.status != "ready" or not row.training_ready:
            raise InvalidInput(f"dataset “{row.name}” is {row.status}, not ready for training",
                               code="dataset_not_ready",
                               hint="wait for validation, or fix the errors and upload again")
        check_method(config.method, row.format, row.name)
        plan, why_not = (None, "preference pairs: plan approximated from the pair and token "
                         "counts") if row.format == "preference" else exact_plan(row, config, workers)
        est = estimate(stats_input(row), config, hw, workers, spec,
                       calibration_samples(s, actor.id), plan=plan)
        check = memory_check_for(s, hw.id, actor.id) if hw.kind == "gpu" else None
        user = s.get(User, actor.id)
        spend = spend_this_month(s, actor.id)
        decision = budget_check(spend, est.cost.total, user.monthly_budget if user else None)
    out = est.to_dict()
    if why_not:
        out["assumptions"].insert(0, why_not)
    out["hardware"] = {"id": hw.id, "name": hw.name, "is_gpu": hw.kind == "gpu",
                       "memory_gb": hw.memory_gb, "cost_per_gpu_hour": hw.cost_per_gpu_hour}
    out["model_params"] = spec.params
    out["memory_check"] = check
    out["budget"] = {**decision.to_dict(), "month_spend": spend,
                     "over_budget": not decision.allowed_without_confirmation}
    return out


def inputs_version(actor: UserInfo, dataset_id: str) -> tuple:
    """What an estimate of ``dataset_id`` for ``actor`` depends on besides the config, hardware
    and workers, as one cheap read: the dataset's ``updated_at`` (its statistics), the finished
    jobs the calibration learns from (count, latest), this month's spend and the budget. A cache
    keyed by this and the form's values never serves an estimate its inputs have left behind."""
    from sqlalchemy import func

    with session_scope() as s:
        row = s.get(Dataset, dataset_id)
        check_owner(actor, row, "Dataset", dataset_id)
        done = s.execute(select(func.count(TrainingJob.id), func.max(TrainingJob.completed_at))
                         .where(TrainingJob.status == "completed")).one()
        user = s.get(User, actor.id)
        return (str(row.updated_at), row.status, int(done[0] or 0), str(done[1]),
                spend_this_month(s, actor.id), user.monthly_budget if user else None)
