"""What a queued training job's driver needs from the product, read in one place: the job's
hyperparameters and hardware, where its dataset is read from, where checkpoints and the adapter go.
``ray_jobs.driver.train_job`` turns it into a Recipe; the driver itself never reads database rows."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class JobInputs:
    job_id: str
    hyperparameters: dict[str, Any]
    gpu_config: dict[str, Any]
    dataset: str  # "file://…" on this machine, else "store:KEY" (each worker streams it)
    artifact_id: str  # the model artifact rank 0 uploads to and the driver records
    storage_path: str
    storage_filesystem: Any = None
    home: str = ""
    card: dict[str, Any] = field(default_factory=dict)  # job/dataset/preset named in the README

    @property
    def upload_prefix(self) -> str:
        return f"models/{self.artifact_id}/"


def job_inputs(job_id: str) -> JobInputs:
    """Read job ``job_id``'s inputs and check its base model is installed (fail fast, before any
    worker starts). Raises NotFound / InvalidInput."""
    from backend.base_models.registry import resolve_base_model
    from backend.core.config import get_settings
    from backend.core.errors import NotFound
    from backend.db.models import Dataset, TrainingJob
    from backend.db.session import session_scope
    from backend.jobs.progress import artifact_id_for
    from backend.storage import get_object_store

    settings = get_settings()
    with session_scope() as s:
        job = s.get(TrainingJob, job_id)
        if job is None:
            raise NotFound(f"training job {job_id} not found", code="job_not_found")
        ds = s.get(Dataset, job.dataset_id)
        hyper, gpu, key = dict(job.hyperparameters), dict(job.gpu_config), ds.storage_path
        card = {"job_name": job.name, "dataset_name": ds.name, "dataset_id": ds.id,
                "preset_id": job.preset_id}
    if hyper.get("gradient_checkpointing") is None:  # auto: what the estimate decided
        hyper["gradient_checkpointing"] = bool(gpu.get("gradient_checkpointing"))
    resolve_base_model(hyper["base_model"], settings.home)
    store = get_object_store()
    uri = store.uri(key)
    storage_path, filesystem = store.ray_storage(f"checkpoints/{job_id}")
    return JobInputs(job_id=job_id, hyperparameters=hyper, gpu_config=gpu,
                     dataset=uri if uri.startswith("file://") else f"store:{key}",
                     artifact_id=artifact_id_for(job_id), storage_path=storage_path,
                     storage_filesystem=filesystem, home=str(settings.home), card=card)
