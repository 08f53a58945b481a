"""What services return: plain pydantic models built from ORM rows (never the rows themselves)."""
from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import AliasChoices, BaseModel, ConfigDict, Field


class _Out(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


class UserInfo(_Out):
    id: str
    email: str
    name: str
    role: str
    monthly_budget: float | None = None
    organization: str | None = None
    is_local: bool = False
    created_at: datetime | None = None

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"

    @property
    def sees_all_costs(self) -> bool:
        return self.role in ("admin", "billing_admin")


class DatasetInfo(_Out):
    id: str
    user_id: str
    name: str
    description: str | None = None
    format: str | None = None
    status: str
    storage_bucket: str
    storage_path: str
    file_name: str
    file_size: int
    total_conversations: int | None = None
    total_training_pairs: int | None = None
    total_validation_pairs: int | None = None
    total_tokens: int | None = None
    assistant_tokens: int | None = None
    avg_turns_per_conversation: float | None = None
    avg_tokens_per_turn: float | None = None
    tokenizer_name: str | None = None
    statistics: dict | None = None
    training_ready: bool = False
    validated_at: datetime | None = None
    validation_errors: list | None = None
    error_count: int = 0
    warning_count: int = 0
    sample_data: list | None = None
    error_message: str | None = None
    external_job_id: str | None = None
    created_at: datetime
    updated_at: datetime


class JobInfo(_Out):
    id: str
    user_id: str
    dataset_id: str
    parent_model_id: str | None = None
    name: str | None = None
    preset_id: str
    hyperparameters: dict
    gpu_config: dict
    estimate: dict | None = None
    budget_decision: dict | None = None
    status: str
    current_stage: str
    progress: float
    current_epoch: int
    total_epochs: int
    current_step: int
    total_steps: int | None = None
    current_metrics: dict | None = None
    queued_at: datetime
    started_at: datetime | None = None
    completed_at: datetime | None = None
    estimated_completion_at: datetime | None = None
    current_cost: float
    estimated_total_cost: float
    final_cost: float | None = None
    error_message: str | None = None
    error_stack: str | None = None
    retry_count: int = 0
    external_job_id: str | None = None
    artifact_id: str | None = None
    sweep_id: str | None = None  # a trial of this sweep (backend/sweeps/)
    sweep_trial: dict | None = None  # {index, params, stopped_early, best}
    created_at: datetime
    updated_at: datetime
    dataset_name: str | None = None


class MetricsPointInfo(_Out):
    epoch: int
    step: int
    timestamp: datetime
    training_loss: float | None = None
    validation_loss: float | None = None
    learning_rate: float | None = None
    gradient_norm: float | None = None
    throughput: float | None = None
    gpu_utilization: float | None = None
    tokens_processed: int | None = None


class JobLogInfo(_Out):
    timestamp: datetime
    level: str
    message: str
    metadata: dict | None = Field(None, validation_alias=AliasChoices("metadata_", "metadata"))


class CheckpointInfo(_Out):
    id: str
    job_id: str
    step: int
    epoch: int
    loss: float | None = None
    storage_bucket: str
    storage_path: str
    file_size: int
    created_at: datetime


class ModelInfo(_Out):
    id: str
    user_id: str
    job_id: str
    dataset_id: str
    name: str
    version: str
    description: str | None = None
    status: str
    deployed_at: datetime | None = None
    base_model: str
    quality_metrics: dict
    training_summary: dict
    configuration: dict
    artifacts: dict
    parent_model_id: str | None = None
    created_at: datetime
    updated_at: datetime


class NotificationInfo(_Out):
    id: str
    user_id: str
    type: str
    title: str
    message: str
    priority: str
    read: bool
    action_url: str | None = None
    metadata: dict | None = Field(None, validation_alias=AliasChoices("metadata_", "metadata"))
    created_at: datetime
