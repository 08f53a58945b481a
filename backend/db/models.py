"""SQLAlchemy 2 models for every table of the product (SPEC.md "Domain model").

Field names follow the original specification (snake_case). UUID ids are stored as 36-char strings so the
same schema works on SQLite and PostgreSQL; JSON columns become JSONB on PostgreSQL.
"""
from __future__ import annotations

import uuid
from datetime import datetime, timezone

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

JsonType = JSON().with_variant(JSONB(), "postgresql")


def new_id() -> str:
    return str(uuid.uuid4())


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class Base(DeclarativeBase):
    pass


def _id() -> Mapped[str]:
    return mapped_column(String(36), primary_key=True, default=new_id)


def _ts(nullable: bool = False, **kw) -> Mapped[datetime]:
    return mapped_column(DateTime(timezone=True), nullable=nullable, **kw)


class User(Base):
    __tablename__ = "users"
    id: Mapped[str] = _id()
    email: Mapped[str] = mapped_column(String(320), unique=True, index=True)
    name: Mapped[str] = mapped_column(String(100))
    password_hash: Mapped[str | None] = mapped_column(String(255))
    organization: Mapped[str | None] = mapped_column(String(200))
    role: Mapped[str] = mapped_column(String(20), default="user")  # user | admin | billing_admin
    monthly_budget: Mapped[float | None] = mapped_column(Float)
    is_local: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = _ts(default=utcnow)
    updated_at: Mapped[datetime] = _ts(default=utcnow, onupdate=utcnow)


class Dataset(Base):
    __tablename__ = "datasets"
    id: Mapped[str] = _id()
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str | None] = mapped_column(Text)
    format: Mapped[str | None] = mapped_column(String(40))
    status: Mapped[str] = mapped_column(String(20), default="uploading")
    storage_bucket: Mapped[str] = mapped_column(String(200))
    storage_path: Mapped[str] = mapped_column(String(1024), unique=True)
    file_name: Mapped[str] = mapped_column(String(255))
    file_size: Mapped[int] = mapped_column(BigInteger, default=0)
    total_conversations: Mapped[int | None] = mapped_column(Integer)
    total_training_pairs: Mapped[int | None] = mapped_column(Integer)
    total_validation_pairs: Mapped[int | None] = mapped_column(Integer)
    total_tokens: Mapped[int | None] = mapped_column(BigInteger)
    assistant_tokens: Mapped[int | None] = mapped_column(BigInteger)
    avg_turns_per_conversation: Mapped[float | None] = mapped_column(Float)
    avg_tokens_per_turn: Mapped[float | None] = mapped_column(Float)
    tokenizer_name: Mapped[str | None] = mapped_column(String(255))
    statistics: Mapped[dict | None] = mapped_column(JsonType)
    training_ready: Mapped[bool] = mapped_column(Boolean, default=False)
    validated_at: Mapped[datetime | None] = _ts(nullable=True)
    validation_errors: Mapped[list | None] = mapped_column(JsonType)
    error_count: Mapped[int] = mapped_column(Integer, default=0)
    warning_count: Mapped[int] = mapped_column(Integer, default=0)
    sample_data: Mapped[list | None] = mapped_column(JsonType)
    error_message: Mapped[str | None] = mapped_column(Text)
    external_job_id: Mapped[str | None] = mapped_column(String(120))
    uploaded_at: Mapped[datetime] = _ts(default=utcnow)
    processed_at: Mapped[datetime | None] = _ts(nullable=True)
    deleted_at: Mapped[datetime | None] = _ts(nullable=True)
    created_at: Mapped[datetime] = _ts(default=utcnow)
    updated_at: Mapped[datetime] = _ts(default=utcnow, onupdate=utcnow)
    __table_args__ = (Index("ix_datasets_user_status", "user_id", "status"),
                      Index("ix_datasets_user_created", "user_id", "created_at"))


class Sweep(Base):
    """A hyperparameter sweep: one Ray job (``ray_jobs.sweep``) whose Ray Tune ``Tuner`` runs one
    training job per grid point (``TrainingJob.sweep_id``), validation loss the metric."""
    __tablename__ = "sweeps"
    id: Mapped[str] = _id()
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    dataset_id: Mapped[str] = mapped_column(ForeignKey("datasets.id", ondelete="RESTRICT"))
    name: Mapped[str | None] = mapped_column(String(200))
    preset_id: Mapped[str] = mapped_column(String(20))
    grid: Mapped[dict] = mapped_column(JsonType)  # {field: [values]}
    overrides: Mapped[list | None] = mapped_column(JsonType)  # --set items shared by the trials
    samples: Mapped[int] = mapped_column(Integer, default=1)
    max_concurrent: Mapped[int] = mapped_column(Integer, default=1)
    scheduler: Mapped[str] = mapped_column(String(20), default="fifo")  # fifo | asha
    metric: Mapped[str] = mapped_column(String(40), default="validation_loss")
    status: Mapped[str] = mapped_column(String(20), default="queued")
    trial_count: Mapped[int] = mapped_column(Integer, default=0)
    best_job_id: Mapped[str | None] = mapped_column(String(36))
    estimate: Mapped[dict | None] = mapped_column(JsonType)
    budget_decision: Mapped[dict | None] = mapped_column(JsonType)
    estimated_total_cost: Mapped[float] = mapped_column(Float, default=0.0)
    external_job_id: Mapped[str | None] = mapped_column(String(120), unique=True)
    error_message: Mapped[str | None] = mapped_column(Text)
    started_at: Mapped[datetime | None] = _ts(nullable=True)
    completed_at: Mapped[datetime | None] = _ts(nullable=True)
    created_at: Mapped[datetime] = _ts(default=utcnow)
    updated_at: Mapped[datetime] = _ts(default=utcnow, onupdate=utcnow)


class TrainingJob(Base):
    __tablename__ = "training_jobs"
    id: Mapped[str] = _id()
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    dataset_id: Mapped[str] = mapped_column(ForeignKey("datasets.id", ondelete="RESTRICT"))
    parent_model_id: Mapped[str | None] = mapped_column(String(36))
    name: Mapped[str | None] = mapped_column(String(200))
    preset_id: Mapped[str] = mapped_column(String(20))
    hyperparameters: Mapped[dict] = mapped_column(JsonType)
    gpu_config: Mapped[dict] = mapped_column(JsonType)
    estimate: Mapped[dict | None] = mapped_column(JsonType)
    budget_decision: Mapped[dict | None] = mapped_column(JsonType)
    status: Mapped[str] = mapped_column(String(20), default="queued")
    current_stage: Mapped[str] = mapped_column(String(20), default="queued")
    progress: Mapped[float] = mapped_column(Float, default=0.0)
    current_epoch: Mapped[int] = mapped_column(Integer, default=0)
    total_epochs: Mapped[int] = mapped_column(Integer)
    current_step: Mapped[int] = mapped_column(Integer, default=0)
    total_steps: Mapped[int | None] = mapped_column(Integer)
    current_metrics: Mapped[dict | None] = mapped_column(JsonType)
    queued_at: Mapped[datetime] = _ts(default=utcnow)
    started_at: Mapped[datetime | None] = _ts(nullable=True)
    completed_at: Mapped[datetime | None] = _ts(nullable=True)
    estimated_completion_at: Mapped[datetime | None] = _ts(nullable=True)
    current_cost: Mapped[float] = mapped_column(Float, default=0.0)
    estimated_total_cost: Mapped[float] = mapped_column(Float, default=0.0)
    final_cost: Mapped[float | None] = mapped_column(Float)
    error_message: Mapped[str | None] = mapped_column(Text)
    error_stack: Mapped[str | None] = mapped_column(Text)
    retry_count: Mapped[int] = mapped_column(Integer, default=0)
    external_job_id: Mapped[str | None] = mapped_column(String(120), unique=True)
    artifact_id: Mapped[str | None] = mapped_column(String(36), unique=True)
    # a trial of a hyperparameter sweep (backend/sweeps/): its sweep, and {index, params,
    # stopped_early, best} (the Ray job that runs it is the sweep's: external_job_id is NULL)
    sweep_id: Mapped[str | None] = mapped_column(String(36), index=True)
    sweep_trial: Mapped[dict | None] = mapped_column(JsonType)
    created_at: Mapped[datetime] = _ts(default=utcnow)
    updated_at: Mapped[datetime] = _ts(default=utcnow, onupdate=utcnow)
    __table_args__ = (Index("ix_jobs_user_status", "user_id", "status"),
                      Index("ix_jobs_status_queued", "status", "queued_at"),
                      Index("ix_jobs_user_created", "user_id", "created_at"))


class MetricsPoint(Base):
    __tablename__ = "metrics_points"
    id: Mapped[str] = _id()
    job_id: Mapped[str] = mapped_column(ForeignKey("training_jobs.id", ondelete="CASCADE"))
    timestamp: Mapped[datetime] = _ts(default=utcnow)
    epoch: Mapped[int] = mapped_column(Integer)
    step: Mapped[int] = mapped_column(Integer)
    training_loss: Mapped[float | None] = mapped_column(Float)
    validation_loss: Mapped[float | None] = mapped_column(Float)
    learning_rate: Mapped[float | None] = mapped_column(Float)
    gradient_norm: Mapped[float | None] = mapped_column(Float)
    throughput: Mapped[float | None] = mapped_column(Float)
    gpu_utilization: Mapped[float | None] = mapped_column(Float)
    tokens_processed: Mapped[int | None] = mapped_column(BigInteger)
    # DPO jobs only: TRL-named metrics of the step ("rewards/margins", "eval_rewards/margins", …)
    preference: Mapped[dict | None] = mapped_column(JsonType)
    __table_args__ = (UniqueConstraint("job_id", "step", name="uq_metrics_job_step"),
                      Index("ix_metrics_job_timestamp", "job_id", "timestamp"),
                      # the validation points of a job (backend/jobs/metrics.py), few of many
                      Index("ix_metrics_job_val_step", "job_id", "step",
                            postgresql_where=text("validation_loss IS NOT NULL"),
                            sqlite_where=text("validation_loss IS NOT NULL")))


class MetricsRollup(Base):
    """Aggregates of a job's metric points in blocks of ``ROLLUP_STEPS`` steps (block = step //
    ROLLUP_STEPS), kept by ``job_progress`` in the same transaction as the points, so a chart of a
    long job reads one row per block instead of every point (``backend/jobs/metrics.py``)."""
    __tablename__ = "metrics_rollups"
    job_id: Mapped[str] = mapped_column(ForeignKey("training_jobs.id", ondelete="CASCADE"),
                                        primary_key=True)
    block: Mapped[int] = mapped_column(Integer, primary_key=True)
    points: Mapped[int] = mapped_column(Integer)
    step_min: Mapped[int] = mapped_column(Integer)
    step_max: Mapped[int] = mapped_column(Integer)
    loss_min: Mapped[float | None] = mapped_column(Float)
    loss_max: Mapped[float | None] = mapped_column(Float)
    lr_sum: Mapped[float | None] = mapped_column(Float)
    lr_n: Mapped[int] = mapped_column(Integer)
    thr_sum: Mapped[float | None] = mapped_column(Float)
    thr_n: Mapped[int] = mapped_column(Integer)
    gn_sum: Mapped[float | None] = mapped_column(Float)
    gn_n: Mapped[int] = mapped_column(Integer)
    gpu_sum: Mapped[float | None] = mapped_column(Float)
    gpu_n: Mapped[int] = mapped_column(Integer)
    epoch_max: Mapped[int | None] = mapped_column(Integer)
    ts_max: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    tokens_max: Mapped[int | None] = mapped_column(BigInteger)


ROLLUP_STEPS = 64  # steps per MetricsRollup block (a power of two: chart buckets nest on it)


class Checkpoint(Base):
    __tablename__ = "checkpoints"
    id: Mapped[str] = _id()
    job_id: Mapped[str] = mapped_column(ForeignKey("training_jobs.id", ondelete="CASCADE"))
    step: Mapped[int] = mapped_column(Integer)
    epoch: Mapped[int] = mapped_column(Integer)
    loss: Mapped[float | None] = mapped_column(Float)
    storage_bucket: Mapped[str] = mapped_column(String(200))
    storage_path: Mapped[str] = mapped_column(String(1024))
    file_size: Mapped[int] = mapped_column(BigInteger, default=0)
    created_at: Mapped[datetime] = _ts(default=utcnow)
    __table_args__ = (Index("ix_checkpoints_job_step", "job_id", "step"),)


class JobLog(Base):
    __tablename__ = "job_logs"
    id: Mapped[str] = _id()
    job_id: Mapped[str] = mapped_column(ForeignKey("training_jobs.id", ondelete="CASCADE"))
    timestamp: Mapped[datetime] = _ts(default=utcnow)
    level: Mapped[str] = mapped_column(String(10))  # INFO | WARNING | ERROR
    message: Mapped[str] = mapped_column(Text)
    metadata_: Mapped[dict | None] = mapped_column("metadata", JsonType)
    __table_args__ = (Index("ix_job_logs_job_timestamp", "job_id", "timestamp"),)


class ModelArtifact(Base):
    __tablename__ = "model_artifacts"
    id: Mapped[str] = _id()
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    job_id: Mapped[str] = mapped_column(String(36), unique=True)
    dataset_id: Mapped[str] = mapped_column(String(36))
    name: Mapped[str] = mapped_column(String(200))
    version: Mapped[str] = mapped_column(String(40))
    description: Mapped[str | None] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(20), default="stored")
    deployed_at: Mapped[datetime | None] = _ts(nullable=True)
    base_model: Mapped[str] = mapped_column(String(255))
    quality_metrics: Mapped[dict] = mapped_column(JsonType)
    training_summary: Mapped[dict] = mapped_column(JsonType)
    configuration: Mapped[dict] = mapped_column(JsonType)
    artifacts: Mapped[dict] = mapped_column(JsonType)
    parent_model_id: Mapped[str | None] = mapped_column(ForeignKey("model_artifacts.id"))
    deleted_at: Mapped[datetime | None] = _ts(nullable=True)
    created_at: Mapped[datetime] = _ts(default=utcnow)
    updated_at: Mapped[datetime] = _ts(default=utcnow, onupdate=utcnow)
    __table_args__ = (Index("ix_models_user_status", "user_id", "status"),
                      Index("ix_models_user_created", "user_id", "created_at"))


class CostRecord(Base):
    __tablename__ = "cost_records"
    id: Mapped[str] = _id()
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    job_id: Mapped[str | None] = mapped_column(ForeignKey("training_jobs.id", ondelete="SET NULL"))
    cost_type: Mapped[str] = mapped_column(String(20))  # compute | storage | data_transfer
    amount: Mapped[float] = mapped_column(Float)
    details: Mapped[dict | None] = mapped_column(JsonType)
    billing_period: Mapped[datetime] = _ts()
    recorded_at: Mapped[datetime] = _ts(default=utcnow)
    __table_args__ = (Index("ix_costs_user_period", "user_id", "billing_period"),
                      Index("ix_costs_job", "job_id"))


class Notification(Base):
    __tablename__ = "notifications"
    id: Mapped[str] = _id()
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    type: Mapped[str] = mapped_column(String(30))
    title: Mapped[str] = mapped_column(String(300))
    message: Mapped[str] = mapped_column(Text)
    priority: Mapped[str] = mapped_column(String(10), default="medium")
    read: Mapped[bool] = mapped_column(Boolean, default=False)
    action_url: Mapped[str | None] = mapped_column(String(500))
    metadata_: Mapped[dict | None] = mapped_column("metadata", JsonType)
    created_at: Mapped[datetime] = _ts(default=utcnow)
    __table_args__ = (Index("ix_notifications_user_read_created", "user_id", "read", "created_at"),)


class EvalSample(Base):
    """A greedy answer to one of a job's fixed validation prompts at one evaluation (step 0: the
    base model's answer), with the reference answer (``ray_jobs/worker/samples.py``)."""
    __tablename__ = "eval_samples"
    id: Mapped[str] = _id()
    job_id: Mapped[str] = mapped_column(ForeignKey("training_jobs.id", ondelete="CASCADE"))
    step: Mapped[int] = mapped_column(Integer)
    prompt_index: Mapped[int] = mapped_column(Integer)
    question: Mapped[str] = mapped_column(Text)  # the prompt's last user turn (what pages show)
    prompt: Mapped[str] = mapped_column(Text)  # the rendered prompt the model was given
    reference: Mapped[str] = mapped_column(Text)
    answer: Mapped[str] = mapped_column(Text)
    # the reference's key fact(s), JSON list text, from the conversation's metadata.key_fact
    key_fact: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = _ts(default=utcnow)
    __table_args__ = (UniqueConstraint("job_id", "step", "prompt_index",
                                       name="uq_eval_samples_job_step_prompt"),)


class ModelExport(Base):
    """One export of a trained adapter (merged folder, GGUF, Ollama); files under ``prefix``."""
    __tablename__ = "model_exports"
    id: Mapped[str] = _id()
    model_id: Mapped[str] = mapped_column(ForeignKey("model_artifacts.id", ondelete="CASCADE"))
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    format: Mapped[str] = mapped_column(String(20))  # merged | gguf | ollama
    quant: Mapped[str] = mapped_column(String(20), default="")  # "" (merged) | f16 | q8_0
    status: Mapped[str] = mapped_column(String(20), default="queued")  # queued|running|completed|failed
    progress: Mapped[float] = mapped_column(Float, default=0.0)
    stage: Mapped[str | None] = mapped_column(String(200))
    error: Mapped[str | None] = mapped_column(Text)
    prefix: Mapped[str | None] = mapped_column(String(1024))
    files: Mapped[dict | None] = mapped_column(JsonType)  # {name: size}
    ray_submission_id: Mapped[str | None] = mapped_column(String(128))
    seconds: Mapped[float | None] = mapped_column(Float)
    created_at: Mapped[datetime] = _ts(default=utcnow)
    completed_at: Mapped[datetime | None] = _ts(nullable=True)
    __table_args__ = (Index("ix_exports_model", "model_id", "format", "quant"),)


class Evaluation(Base):
    """A trained adapter scored on a ready dataset by the Ray job ``ray_jobs.evaluate_model``
    (``backend/evaluations/service.py``): mean assistant-token loss of the base model (adapter disabled)
    and of the adapter, and greedy answers of both to each conversation up to ``max_answers``,
    scored against the reference. ``answers`` and the figures are written once, at completion."""
    __tablename__ = "evaluations"
    id: Mapped[str] = _id()
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    model_id: Mapped[str] = mapped_column(ForeignKey("model_artifacts.id", ondelete="CASCADE"))
    dataset_id: Mapped[str] = mapped_column(String(36))
    status: Mapped[str] = mapped_column(String(20), default="queued")  # JOB states, no stages
    max_answers: Mapped[int] = mapped_column(Integer, default=64)
    external_job_id: Mapped[str | None] = mapped_column(String(120))
    error_message: Mapped[str | None] = mapped_column(Text)
    base_loss: Mapped[float | None] = mapped_column(Float)
    adapter_loss: Mapped[float | None] = mapped_column(Float)
    conversations: Mapped[int | None] = mapped_column(Integer)  # encoded for the loss
    scores: Mapped[dict | None] = mapped_column(JsonType)  # backend.jobs.samples.scores
    answers: Mapped[list | None] = mapped_column(JsonType)  # raw answers, one dict per prompt
    timings: Mapped[dict | None] = mapped_column(JsonType)
    created_at: Mapped[datetime] = _ts(default=utcnow)
    started_at: Mapped[datetime | None] = _ts(nullable=True)
    completed_at: Mapped[datetime | None] = _ts(nullable=True)
    updated_at: Mapped[datetime] = _ts(default=utcnow, onupdate=utcnow)
    __table_args__ = (Index("ix_evaluations_model_created", "model_id", "created_at"),
                      Index("ix_evaluations_dataset", "dataset_id"),
                      Index("ix_evaluations_user_status", "user_id", "status"))
