"""Job mode of the training recipe: ``python -m ray_jobs.train_lora --job-id ID``.

Reads the job's configuration and dataset from the database, runs the same recipe as the manual
mode (``ray_jobs.train_lora``) with a database progress sink, and guarantees the job ends in a final
state: completed (adapter stored as a model artifact) or failed with the error and stack.
"""
from __future__ import annotations

import traceback

from backend.core.errors import BrightRunError
from ray_jobs.worker.startup import phase


def recipe_for_job(job_id: str, fail_at_step: int | None = None, sink_kind: str = "db"):
    """Build the Recipe of a queued job from its inputs (:func:`backend.jobs.inputs.job_inputs`);
    ``sink_kind`` "tune" for a sweep's trial. Raises NotFound / InvalidInput."""
    from backend.jobs.inputs import job_inputs
    from ray_jobs.driver.recipe import Recipe
    from ray_jobs.worker.loop import TrainConfig

    inputs = job_inputs(job_id)
    gpu = inputs.gpu_config
    return Recipe(
        config=TrainConfig(**inputs.hyperparameters), dataset=inputs.dataset,
        output="",  # rank 0: a folder of its node
        name="run", storage_path=inputs.storage_path, storage_filesystem=inputs.storage_filesystem,
        workers=int(gpu.get("num_workers") or 1), use_gpu=bool(gpu.get("use_gpu")),
        local_cluster=bool(gpu.get("local_cluster")),  # the service's word (runtime_kind)
        sink_spec={"kind": sink_kind, "job_id": job_id, "artifact_id": inputs.artifact_id},
        home=inputs.home, fail_at_step=fail_at_step,
        upload_prefix=inputs.upload_prefix, card=inputs.card)


def run_job(job_id: str, fail_at_step: int | None = None, sink_kind: str = "db") -> int:
    """Train job ``job_id`` end to end (``sink_kind`` "tune": a sweep's trial, in its Tune trial
    process). Returns 0 on success, 1 on failure (recorded on the job)."""
    from backend.jobs.db_sink import DbSink
    from backend.jobs.progress import artifact_id_for, fail_job, is_cancelled, set_stage
    from ray_jobs.driver.recipe import failure_message

    sink = DbSink(job_id, artifact_id=artifact_id_for(job_id))
    recipe = None
    try:
        if is_cancelled(job_id):
            return 0
        set_stage(job_id, "initializing")
        phase(sink, "driver")
        sink.log("info", "preparing: reading the dataset and configuration")
        sink.flush_logs()  # written now, not with a later batch after newer lines
        recipe = recipe_for_job(job_id, fail_at_step, sink_kind)  # setup
        recipe.save(recipe.train(), sink)
        return 0
    except BrightRunError as exc:
        fail_job(job_id, str(exc), traceback.format_exc())
        return 1
    except BaseException as exc:  # noqa: BLE001 - any failure ends the job as failed
        fail_job(job_id, failure_message(exc), traceback.format_exc())
        if isinstance(exc, KeyboardInterrupt):
            raise
        return 1
    finally:
        if recipe is not None:
            recipe.cleanup()
