"""Which runtime a training job trains with, decided before it is submitted (the service reserves
the driver's CPUs with it) and again by the job itself (``ray_jobs.worker.runtime``): pure logic.

- ``in_driver``: one CPU worker, trained by the job's driver itself;
- ``local_group``: N CPU ranks forked by the driver on a local cluster (one machine);
- ``ray_train``: a Ray Train worker group (GPU jobs, remote clusters, the two-node test hook).
"""
from __future__ import annotations

import os

RUNTIME_KINDS = ("in_driver", "local_group", "ray_train")
TEST_WORKER_RESOURCE_VAR = "BRIGHTRUN_TEST_WORKER_RESOURCE"


def runtime_kind(workers: int, use_gpu: bool, local_cluster: bool,
                 environ: dict[str, str] | None = None) -> str:
    """Which runtime a job trains with (one of :data:`RUNTIME_KINDS`; see the module docstring).
    GPU jobs always use Ray Train (the driver may run on a node without a GPU); one CPU worker
    trains in the driver; N CPU workers are the driver's own processes on a ``local_cluster``
    (one machine) unless the test hook :data:`TEST_WORKER_RESOURCE_VAR` (in ``environ``, default
    this process's environment) asks for the workers on another node. Raises nothing."""
    if use_gpu:
        return "ray_train"
    if int(workers) == 1:
        return "in_driver"
    extra = (os.environ if environ is None else environ).get(TEST_WORKER_RESOURCE_VAR, "").strip()
    return "local_group" if local_cluster and not extra else "ray_train"


def driver_cpus(kind: str, workers: int) -> int:
    """CPUs the Ray job's driver is scheduled with (``entrypoint_num_cpus``): the CPUs it trains
    on itself — 1 in the driver, one per rank for a local group, none when Ray Train's workers
    reserve their own."""
    return {"in_driver": 1, "local_group": int(workers)}.get(kind, 0)
