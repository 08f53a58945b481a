"""Isolation: user B can neither read nor change user A's rows through any service function."""
import io

import pytest

from backend import adapters as models
from backend import costs, notifications
from backend.accounts import users
from backend.core.errors import AccessDenied, NotFound
from backend.datasets import service as datasets
from backend.jobs import service as jobs
from backend.jobs.db_sink import DbSink
from tests.fixtures.paths import SAMPLE_DATA

SHARED = SAMPLE_DATA


@pytest.fixture
def world(db, tmp_path, monkeypatch):
    monkeypatch.setenv("BRIGHTRUN_AUTH", "password")
    from backend.core.config import reset_settings
    reset_settings()
    a = users.create_user("a@x.io", "Alice", "password-a", monthly_budget=100)
    b = users.create_user("b@x.io", "Bob", "password-b")
    data = (SHARED / "sample-v4.jsonl").read_bytes()
    d = datasets.upload_dataset(a, io.BytesIO(data), "s.jsonl", "A's data", size=len(data),
                                submit=False)
    datasets.run_validation(d.id)
    job = jobs.create_job(a, d.id, hardware_id="A100-80GB", submit=False)
    sink = DbSink(job.id)
    sink.stage("training")
    sink.metrics([{"epoch": 0, "step": 1, "training_loss": 2.0}])
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_model.safetensors").write_bytes(b"w")
    (adapter / "adapter_config.json").write_text("{}")
    sink.completed({"adapter_dir": str(adapter), "final_val_loss": 1.0, "final_train_loss": 1.0,
                    "first_train_loss": 2.0})
    job2 = jobs.create_job(a, d.id, submit=False)  # still queued, cancellable
    model_id = jobs.get_job(a, job.id).artifact_id
    note = notifications.list_notifications(a)[0]
    return a, b, d.id, job2.id, model_id, note.id


CALLS = [
    ("get dataset", lambda b, d, j, m, n: datasets.get_dataset(b, d)),
    ("rename dataset", lambda b, d, j, m, n: datasets.update_dataset(b, d, name="mine")),
    ("delete dataset", lambda b, d, j, m, n: datasets.delete_dataset(b, d)),
    ("revalidate", lambda b, d, j, m, n: datasets.revalidate(b, d, submit=False)),
    ("estimate", lambda b, d, j, m, n: jobs.estimate_for_dataset(
        b, d, jobs.build_config("balanced"), "cpu-local", 1)),
    ("create job", lambda b, d, j, m, n: jobs.create_job(b, d, submit=False)),
    ("get job", lambda b, d, j, m, n: jobs.get_job(b, j)),
    ("cancel job", lambda b, d, j, m, n: jobs.cancel_job(b, j)),
    ("job metrics", lambda b, d, j, m, n: jobs.job_metrics(b, j)),
    ("job logs", lambda b, d, j, m, n: jobs.job_logs(b, j)),
    ("job checkpoints", lambda b, d, j, m, n: jobs.job_checkpoints(b, j)),
    ("get model", lambda b, d, j, m, n: models.get_model(b, m)),
    ("model lineage", lambda b, d, j, m, n: models.lineage(b, m)),
    ("edit model", lambda b, d, j, m, n: models.update_model(b, m, name="x")),
    ("delete model", lambda b, d, j, m, n: models.delete_model(b, m)),
    ("model files", lambda b, d, j, m, n: models.model_files(b, m)),
    ("download urls", lambda b, d, j, m, n: models.download_urls(b, m)),
    ("open file", lambda b, d, j, m, n: models.open_file(b, m, "adapter_config.json")),
    ("archive", lambda b, d, j, m, n: models.archive_bytes(b, m)),
    ("train from model", lambda b, d, j, m, n: jobs.create_job(b, d, parent_model_id=m,
                                                               submit=False)),
    ("mark notification read", lambda b, d, j, m, n: notifications.mark_read(b, n)),
]


def test_b_cannot_touch_a(world):
    a, b, d, j, m, n = world
    for what, call in CALLS:
        with pytest.raises(NotFound):
            call(b, d, j, m, n)
            pytest.fail(f"B could {what}")
        # and nothing changed for A
        assert datasets.get_dataset(a, d).name == "A's data", what
        assert jobs.get_job(a, j).status == "queued", what
        assert models.get_model(a, m).name.endswith("adapter"), what
        assert not [x for x in notifications.list_notifications(a) if x.id == n][0].read, what


def test_lists_and_summaries_are_empty_for_b(world):
    a, b, *_ = world
    assert datasets.list_datasets(b).total == 0 and datasets.dataset_counts(b)["total"] == 0
    assert jobs.list_jobs(b).total == 0 and jobs.job_counts(b)["total"] == 0
    assert models.list_models(b).total == 0
    assert notifications.list_notifications(b) == [] and notifications.unread_count(b) == 0
    assert costs.summary(b).total == 0 and costs.summary(b, everyone=True).total == 0
    assert [u.email for u in users.list_users(b)] == ["b@x.io"]
    with pytest.raises(AccessDenied):
        users.set_budget(b, a.id, 1.0)


def test_admins_see_all_and_billing_admins_see_costs(world):
    a, b, d, j, m, n = world
    admin = users.create_user("root@x.io", "Root", "password-r", role="admin")
    billing = users.create_user("bill@x.io", "Bill", "password-l", role="billing_admin")
    assert datasets.get_dataset(admin, d).id == d
    assert costs.summary(billing, everyone=True).total == costs.summary(a).total > 0
    with pytest.raises(NotFound):
        datasets.get_dataset(billing, d)
