"""Cancel ends everything a training job started on Ray (issue 12, "smaller" list): a GPU job on a
cluster without GPUs waits for resources with Ray Train's controller and its detached
``PlacementGroupCleaner`` actor alive; after ``cancel`` no actor of the job is left alive, and the
job stays cancelled."""
from __future__ import annotations

import time

import pytest
import requests

from backend.accounts.users import ensure_local_user
from backend.jobs import service as jobs
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


def test_cancel_stops_a_local_group_and_leaves_no_rank_running(ray_env, capsys):
    """A 2-worker CPU job on this local head trains on ranks forked by its driver
    (ray_jobs.driver.local_group): cancel stops the Ray job, every rank process is gone, the job stays
    cancelled."""
    import psutil

    from tests.e2e.test_integrity_resume import _train_worker_pids

    ds = _dataset(capsys)
    me = ensure_local_user()
    info = jobs.create_job(me, ds["id"], preset_id="conservative", workers=2, overrides=[
        "num_epochs=100", "learning_rate=0.02", "batch_size=1", "max_seq_length=256",
        "warmup_steps=0", "validation_fraction=0.3"])  # submitted by the service
    assert info.gpu_config["local_cluster"] and info.external_job_id, info.gpu_config
    deadline = time.monotonic() + 300
    while len(pids := _train_worker_pids(info.id)) < 2 \
            or jobs.get_job(me, info.id).current_step < 1:
        assert time.monotonic() < deadline, ray_env.logs(info.external_job_id)[-3000:]
        assert jobs.get_job(me, info.id).status not in ("failed", "completed")
        time.sleep(0.5)
    t0 = time.monotonic()
    assert jobs.cancel_job(me, info.id).status == "cancelled"
    assert ray_env.wait(info.external_job_id, timeout_s=30) == "STOPPED"
    while (left := [p for p in pids if psutil.pid_exists(p)
                    and psutil.Process(p).status() != psutil.STATUS_ZOMBIE]) \
            and time.monotonic() - t0 < 15:
        time.sleep(0.2)
    assert not left, left
    print(f"CANCEL: both ranks gone {time.monotonic() - t0:.1f} s after cancel")
    assert jobs.get_job(me, info.id).status == "cancelled"
