"""Cancel ends everything a training job started on Ray (issue 12, "smaller" list): a GPU job on a
cluster without GPUs waits for resources with Ray Train's controller and its detached
``PlacementGroupCleaner`` actor alive; after ``cancel`` no actor of the job is left alive, and the
job stays cancelled."""
from __future__ import annotations

import time

import pytest
import requests

from backend.jobs import service as jobs
from backend.users import ensure_local_user
from tests.e2e.test_training_job import _dataset

pytestmark = pytest.mark.ray
TRAIN_ACTORS = ("TrainController", "PlacementGroupCleaner", "RayTrainWorker")


def _alive_train_actors(dashboard: str) -> list[dict]:
    reply = requests.get(f"{dashboard}/api/v0/actors", timeout=10, params={
        "filter_keys": "state", "filter_predicates": "=", "filter_values": "ALIVE",
        "limit": 1000})
    reply.raise_for_status()
    return [a for a in reply.json()["data"]["result"]["result"]
            if a.get("class_name") in TRAIN_ACTORS]


def test_cancel_leaves_no_train_actor_alive(ray_env, ray_cluster, capsys):
    assert not _alive_train_actors(ray_cluster), "another run's actors are alive"
    ds = _dataset(capsys)
    me = ensure_local_user()
    info = jobs.create_job(me, ds["id"], preset_id="conservative", hardware_id="A100-80GB",
                           workers=1, submit=False, overrides=["num_epochs=1"])
    assert info.gpu_config.get("use_gpu"), info.gpu_config
    sub = ray_env.submit("ray_jobs.train_lora", ["--job-id", info.id], kind="train",
                         object_id=info.id)
    from backend.db.models import TrainingJob
    from backend.db.session import session_scope

    with session_scope() as s:
        s.get(TrainingJob, info.id).external_job_id = sub
    deadline = time.monotonic() + 300
    while not any(a["class_name"] == "PlacementGroupCleaner"
                  for a in _alive_train_actors(ray_cluster)):
        assert time.monotonic() < deadline, ray_env.logs(sub)[-3000:]
        assert ray_env.status(sub) in ("PENDING", "RUNNING"), ray_env.logs(sub)[-3000:]
        time.sleep(1)
    t0 = time.monotonic()
    assert jobs.cancel_job(me, info.id).status == "cancelled"
    assert ray_env.wait(sub, timeout_s=30) == "STOPPED"
    deadline = time.monotonic() + 30
    while (left := _alive_train_actors(ray_cluster)) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not left, [(a["class_name"], a.get("pid")) for a in left]
    print(f"CANCEL: no train actor alive {time.monotonic() - t0:.1f} s after cancel")
    assert jobs.get_job(me, info.id).status == "cancelled"
