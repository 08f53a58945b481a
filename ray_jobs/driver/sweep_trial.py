"""One trial of a sweep, in its Ray Tune trial process: the trial's training job run like any job
(``ray_jobs.driver.train_job.run_job``, one CPU worker in this process) with the sink kind
``tune`` (:class:`ray_jobs.worker.tune_sink.TuneSink`)."""
from __future__ import annotations

from typing import Any

from ray_jobs.worker.tune_sink import METRIC  # noqa: F401 (the sweep's metric)


def run_trial(config: dict[str, Any]) -> None:
    """Tune's function trainable: train the trial's job ``config["job_id"]`` (its end always
    recorded on the job: completed, failed, or left to the driver when the scheduler stops it)."""
    from ray_jobs.driver.train_job import run_job

    run_job(config["job_id"], sink_kind="tune")
