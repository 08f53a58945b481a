"""One artifact per job, uploaded once (issue 12): a job run end to end by its entry point
(``ray_jobs.driver.train_job.run_job``, one CPU worker: trains in this process) leaves exactly one
``models/{id}/`` prefix in the object store, the model row's, under the id chosen once per job."""
from __future__ import annotations

import io

import pytest
from sqlalchemy import select

from backend.accounts.users import ensure_local_user
from backend.datasets import service as datasets
from backend.db.models import ModelArtifact
from backend.db.session import session_scope
from backend.jobs import service as jobs
from backend.jobs.progress import artifact_id_for
from backend.storage import get_object_store
from ray_jobs.driver.train_job import run_job
from tests.fixtures.paths import SAMPLE_DATA

FAST = ["num_epochs=1", "learning_rate=0.02", "batch_size=1", "max_seq_length=256",
        "warmup_steps=0", "lora_dropout=0", "validation_fraction=0.3"]


def model_prefixes(store) -> set[str]:
    """The distinct ``models/{id}/`` folders in the store."""
    return {"/".join(key.split("/")[:2]) + "/" for key in store.list("models/")}


def _ready_dataset(me):
    data = (SAMPLE_DATA / "sample-v4.jsonl").read_bytes()
    info = datasets.upload_dataset(me, io.BytesIO(data), "d.jsonl", "d", size=len(data),
                                   submit=False)
    return datasets.run_validation(info.id)


def test_artifact_id_is_fixed_per_job():
    assert artifact_id_for("job-1") == artifact_id_for("job-1") != artifact_id_for("job-2")


@pytest.mark.parametrize("runs", [2])
def test_a_job_uploads_its_adapter_once(db, monkeypatch, runs):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    me = ensure_local_user()
    ds = _ready_dataset(me)
    store = get_object_store()
    for _ in range(runs):
        job = jobs.create_job(me, ds.id, preset_id="conservative", workers=1, overrides=FAST,
                              submit=False)
        assert run_job(job.id) == 0
        assert jobs.get_job(me, job.id).status == "completed"
    with session_scope() as s:
        rows = s.scalars(select(ModelArtifact)).all()
        expected = {r.artifacts["prefix"] for r in rows}
        assert {r.id for r in rows} == {artifact_id_for(r.job_id) for r in rows}
    assert len(rows) == runs
    assert model_prefixes(store) == expected  # one prefix per model row, no orphan
    for prefix in expected:
        keys = store.list(prefix)
        assert {k[len(prefix):] for k in keys} >= {"adapter_model.safetensors",
                                                   "adapter_config.json"}
