"""A job that needs resources the cluster does not have (a GPU job on the CPU-only session head):
refused up front when the cluster's resources are known; when it got through anyway (resources not
known at creation), the reconciler fails it with that reason after BRIGHTRUN_MISSING_RESOURCE_WAIT_S
and stops its Ray job — which Ray itself would report RUNNING forever."""
from __future__ import annotations

import json
import time

import pytest

from backend.cli import main
from backend.core.config import reset_settings
from backend.core.errors import InvalidInput
from tests.fixtures.paths import SAMPLE_DATA

pytestmark = [pytest.mark.ray]


def _dataset(capsys) -> str:
    rc = main(["datasets", "upload", str(SAMPLE_DATA / "sample-v4.jsonl"), "--name", "gpu",
               "--wait", "--timeout", "300", "--json"])
    info = json.loads(capsys.readouterr().out)
    assert rc == 0 and info["status"] == "ready", info
    return info["id"]


def test_gpu_job_on_cpu_cluster(ray_env, capsys, monkeypatch):
    from backend.accounts.users import ensure_local_user
    from backend.jobs import service as jobs

    monkeypatch.setenv("BRIGHTRUN_MISSING_RESOURCE_WAIT_S", "5")
    reset_settings()
    me, ds = ensure_local_user(), _dataset(capsys)
    with pytest.raises(InvalidInput) as err:
        jobs.create_job(me, ds, preset_id="conservative", hardware_id="A100-80GB", workers=2)
    assert err.value.code == "hardware_unavailable"
    assert "needs 2 GPU; it has no GPU" in str(err.value), str(err.value)
    assert jobs.list_jobs(me).total == 0  # nothing half written

    # resources unknown at creation (e.g. the cluster was down): it reaches Ray and waits there
    job = jobs.create_job(me, ds, preset_id="conservative", hardware_id="A100-80GB", workers=1,
                          submit=False)
    sub = jobs.submit_job(job.id)
    deadline = time.monotonic() + 300
    while jobs.get_job(me, job.id).status != "initializing":
        assert time.monotonic() < deadline, jobs.get_job(me, job.id)
        assert jobs.get_job(me, job.id).status == "queued"
        time.sleep(1)
    time.sleep(3)
    assert ray_env.status(sub) == "RUNNING"  # Ray's view: running, while the driver waits for a GPU
    assert jobs.reconcile() == 1
    failed = jobs.get_job(me, job.id)
    assert failed.status == "failed"
    assert "can never run this job: it needs 1 GPU; it has no GPU" in failed.error_message
    assert "BRIGHTRUN_MISSING_RESOURCE_WAIT_S" in failed.error_message
    assert ray_env.wait(sub, timeout_s=60) == "STOPPED"
    assert jobs.reconcile() == 0 and jobs.get_job(me, job.id).status == "failed"
