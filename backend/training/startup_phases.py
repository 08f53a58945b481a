"""The start-up phases of a training job, in order: logged by the job (``ray_jobs.worker.startup``),
read back for the Monitor's timeline (``backend.jobs.startup``)."""
from __future__ import annotations

# phase -> what it means; in the order a job goes through them
PHASES: dict[str, str] = {
    "submitted": "submitted to Ray",
    "driver": "job driver started",
    "worker_group": "worker group requested (Ray Train starts the workers, or the driver forks "
                    "them)",
    "worker_up": "training loop started on the worker",
    "imports": "torch / transformers imported",
    "data": "dataset read and tokenised",
    "model": "base model loaded, LoRA attached, optimizer ready",
    "first_step": "first optimizer step done",
}
