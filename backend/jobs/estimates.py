"""Glue for the Configure page and `jobs estimate`: build a config from a preset and overrides, read
the dataset statistics, calibrate from finished jobs, estimate and apply the budget rule."""
from __future__ import annotations

from typing import Any

from sqlalchemy import select

from backend.access import check_owner
from backend.training.catalogs import get_hardware, resolve_model
from backend.training.catalogs import storage_price_per_gb_month  # noqa: F401 (re-exported)
from backend.costs import spend_this_month
from backend.db.models import Dataset, ModelArtifact, TrainingJob, User
from backend.db.session import session_scope
from backend.errors import InvalidInput, NotFound
from backend.training.estimation import (CalibrationSample, DatasetStatsInput, LengthPercentiles,
                                budget_check, estimate)
from backend.training.memory_check import last_memory_check
from backend.schemas import UserInfo
from backend.training.catalogs import from_preset
from backend.training.config import TrainingConfig, apply_overrides


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
        from backend.training.base_models import resolve_base_model
        from backend.config import get_settings

        return resolve_model(base_model, model_dir=resolve_base_model(base_model,
                                                                      get_settings().home))


def calibration_samples(s, user_id: str) -> list[CalibrationSample]:
    """Measured throughput of the user's own finished jobs (from their model's training summary);
    another user's jobs never shape (or show up in) this user's estimate. The estimate keeps only
    those on the same hardware."""
    rows = s.execute(select(ModelArtifact.training_summary, TrainingJob.gpu_config)
                     .join(TrainingJob, TrainingJob.id == ModelArtifact.job_id)
                     .where(TrainingJob.status == "completed", TrainingJob.user_id == user_id)
                     .order_by(ModelArtifact.created_at.desc()).limit(200)).all()
    out = []
    for summary, gpu in rows:
        tps, params = (summary or {}).get("avg_throughput"), (summary or {}).get("model_params")
        if tps and params:
            out.append(CalibrationSample(hardware_id=gpu.get("gpu_type"), model_params=int(params),
                                         workers=int(gpu.get("num_workers") or 1),
                                         tokens_per_s=float(tps)))
    return out


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


def estimate_for_dataset(actor: UserInfo, dataset_id: str, config: TrainingConfig,
                         hardware_id: str, workers: int) -> dict:
    """Estimate + hardware + budget decision as one JSON-able dict.

    Raises NotFound (dataset, hardware, model size), InvalidInput (dataset not ready, workers).
    """
    from backend.config import get_settings
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
        est = estimate(stats_input(row), config, hw, workers, spec,
                       calibration_samples(s, actor.id))
        check = memory_check_for(s, hw.id, actor.id) if hw.kind == "gpu" else None
        user = s.get(User, actor.id)
        spend = spend_this_month(s, actor.id)
        decision = budget_check(spend, est.cost.total, user.monthly_budget if user else None)
    out = est.to_dict()
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
