"""What one training worker holds while it trains (:class:`Run`), the recipe's config
(:class:`TrainConfig`) and the cross-worker sum; shared by ``lora_worker`` and its helpers."""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import Field

from backend.training.config import TrainingConfig
from ray_jobs.worker.runtime import RayTrainRuntime
from ray_jobs.worker.sinks import MetricBuffer, ProgressSink


class TrainConfig(TrainingConfig):
    """The job's :class:`~backend.training.config.TrainingConfig` plus two recipe-only knobs.

    Raises InvalidTrainingConfig (an InvalidInput) listing every bad value."""

    lr_scheduler: Literal["linear", "cosine"] = Field(
        "linear", description="Learning-rate decay after warmup, down to 0 at the last step.")
    validation_seed: int = Field(
        0, ge=0, description="Seed of the held-out split (plan.held_out_indices); 0 matches the "
                             "split the dataset statistics report.")


@dataclass
class Run:
    """Everything one worker needs while training."""

    cfg: TrainConfig
    loop: dict[str, Any]
    rank: int
    world: int
    sink: ProgressSink
    tokenizer: Any = None
    inner: Any = None  # the PEFT model
    model: Any = None  # what prepare_model returned (DDP wrapper when world > 1)
    optimizer: Any = None
    scheduler: Any = None
    device: Any = None
    train: list = field(default_factory=list)
    val: list = field(default_factory=list)
    prompts: list = field(default_factory=list)  # evaluation sample prompts (rank 0; eval_samples)
    counts: dict[str, Any] = field(default_factory=dict)
    steps_per_epoch: int = 0
    total_steps: int = 0
    state: dict[str, Any] = field(default_factory=dict)
    buffer: MetricBuffer | None = None
    started: float = field(default_factory=time.monotonic)
    cpu_started: float = field(default_factory=time.process_time)  # this process's CPU clock
    train_started: float = 0.0
    elapsed_before: float = 0.0  # seconds spent by earlier attempts (restored from a checkpoint)
    start_step: int = 0
    rt: Any = field(default_factory=RayTrainRuntime)  # or ray_jobs.worker.runtime.InProcessRuntime
    precision: Any = None  # ray_jobs.worker.precision.Precision: device, dtypes, checkpointing
    gpu: Any = None  # ray_jobs.worker.gpu_metrics.GpuMonitor (inactive on CPU)
    gpu_final: dict[str, Any] = field(default_factory=dict)  # every worker's GPU figures at the end


def allreduce(values: list[float]) -> list[float]:
    """Sum ``values`` across workers (identity on one worker)."""
    import torch
    import torch.distributed as dist

    if not values or not (dist.is_available() and dist.is_initialized()) \
            or dist.get_world_size() == 1:
        return list(values)
    backend = dist.get_backend()
    device = "cuda" if backend == "nccl" else "cpu"
    tensor = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(tensor)
    return tensor.tolist()
