"""Job mode of the training recipe: ``python -m ray_jobs.train_lora --job-id ID``.

Reads the job's configuration and dataset from the database, runs the same recipe as the manual
mode (``ray_jobs.train_lora``) with a database progress sink, and guarantees the job ends in a final
state: completed (adapter stored as a model artifact) or failed with the error and stack.
"""
from __future__ import annotations

import tempfile
import traceback
from pathlib import Path

from backend.core.errors import BrightRunError
from ray_jobs.driver.startup import phase


def recipe_for_job(job_id: str, workdir: Path, fail_at_step: int | None = None):
    """Build the Recipe of a queued job. Raises NotFound / InvalidInput."""
    from backend.core.config import get_settings
    from backend.core.errors import NotFound
    from backend.db.models import Dataset, TrainingJob
    from backend.db.session import session_scope
    from backend.storage import get_object_store
    from ray_jobs.driver.recipe import Recipe
    from ray_jobs.worker.loop import TrainConfig

    settings = get_settings()
    with session_scope() as s:
        job = s.get(TrainingJob, job_id)
        if job is None:
            raise NotFound(f"training job {job_id} not found", code="job_not_found")
        ds = s.get(Dataset, job.dataset_id)
        hyper, gpu, key = dict(job.hyperparameters), dict(job.gpu_config), ds.storage_path
        card = {"job_name": job.name, "dataset_name": ds.name, "dataset_id": ds.id,
                "preset_id": job.preset_id}
    from backend.base_models.registry import resolve_base_model

    if hyper.get("gradient_checkpointing") is None:  # auto: what the estimate decided
        hyper["gradient_checkpointing"] = bool(gpu.get("gradient_checkpointing"))
    resolve_base_model(hyper["base_model"], settings.home)  # fail fast, before any worker starts
    from backend.jobs.progress import artifact_id_for

    store = get_object_store()
    uri = store.uri(key)
    # every worker reads the dataset itself: a local file, or streamed from the object store on
    # whichever node the worker runs ("store:KEY"); rank 0 uploads the adapter the same way
    dataset = uri if uri.startswith("file://") else f"store:{key}"
    artifact_id = artifact_id_for(job_id)  # one per job: rank 0 uploads there, the driver records
    storage_path, filesystem = store.ray_storage(f"checkpoints/{job_id}")
    return Recipe(
        config=TrainConfig(**hyper), dataset=dataset, output="",  # rank 0: a folder of its node
        name="run", storage_path=storage_path, storage_filesystem=filesystem,
        workers=int(gpu.get("num_workers") or 1), use_gpu=bool(gpu.get("use_gpu")),
        local_cluster=bool(gpu.get("local_cluster")),  # the service's word (runtime_kind)
        sink_spec={"kind": "db", "job_id": job_id, "artifact_id": artifact_id},
        home=str(settings.home), fail_at_step=fail_at_step,
        upload_prefix=f"models/{artifact_id}/", card=card)


def run_job(job_id: str, fail_at_step: int | None = None) -> int:
    """Train job ``job_id`` end to end. Returns 0 on success, 1 on failure (recorded on the job)."""
    from backend.jobs.db_sink import DbSink
    from backend.jobs.progress import artifact_id_for, fail_job, is_cancelled, set_stage
    from ray_jobs.driver.recipe import cleanup, save, train

    sink = DbSink(job_id, artifact_id=artifact_id_for(job_id))
    recipe = None
    with tempfile.TemporaryDirectory(prefix=f"brightrun-job-{job_id[:8]}-") as tmp:
        try:
            if is_cancelled(job_id):
                return 0
            set_stage(job_id, "initializing")
            phase(sink, "driver")
            sink.log("info", "preparing: reading the dataset and configuration")
            sink.flush_logs()  # written now, not with a later batch after newer lines
            recipe = recipe_for_job(job_id, Path(tmp), fail_at_step)
            result = train(recipe)
            save(recipe, result, sink)
            return 0
        except BrightRunError as exc:
            fail_job(job_id, str(exc), traceback.format_exc())
            return 1
        except BaseException as exc:  # noqa: BLE001 - any failure ends the job as failed
            from ray_jobs.driver.recipe import _failure_message

            fail_job(job_id, _failure_message(exc), traceback.format_exc())
            if isinstance(exc, KeyboardInterrupt):
                raise
            return 1
        finally:
            if recipe is not None:
                cleanup(recipe)
