"""Jobs service: estimate, budget admission, creation rules, progress writes, completion, failure."""
import io

import pytest
from sqlalchemy import func, select

from backend.accounts.users import create_user, ensure_local_user, set_budget
from backend.core.errors import BudgetExceeded, InvalidInput, InvalidTransition, NotFound
from backend.costs import summary
from backend.datasets import service as ds
from backend.db.models import CostRecord, MetricsPoint, TrainingJob
from backend.db.session import session_scope
from backend.jobs import progress as jp
from backend.jobs import service as jobs
from backend.notifications import list_notifications
from tests.fixtures.paths import SAMPLE_DATA

SHARED = SAMPLE_DATA


def ready_dataset(user, sample="sample-v4.jsonl"):
    data = (SHARED / sample).read_bytes()
    info = ds.upload_dataset(user, io.BytesIO(data), sample, "d", size=len(data), submit=False)
    return ds.run_validation(info.id)


@pytest.fixture
def me(db):
    return ensure_local_user()


def test_estimate_changes_with_epochs_and_hardware(me):
    d = ready_dataset(me)
    one = jobs.estimate_for_dataset(me, d.id, jobs.build_config("balanced", overrides=[
        "num_epochs=1"]), "A100-80GB", 1)
    two = jobs.estimate_for_dataset(me, d.id, jobs.build_config("balanced", overrides=[
        "num_epochs=2"]), "A100-80GB", 1)
    assert two["tokens_to_train"] == pytest.approx(2 * one["tokens_to_train"], abs=2)
    assert two["cost"]["total"] > one["cost"]["total"] > 0
    local = jobs.estimate_for_dataset(me, d.id, jobs.build_config("balanced"), "cpu-local", 1)
    assert local["cost"]["compute"] == 0 and local["vram"]["fits"]


def test_create_job_stores_config_and_estimate(me):
    d = ready_dataset(me)
    job = jobs.create_job(me, d.id, preset_id="conservative", overrides=["num_epochs=3"],
                          submit=False)
    assert job.status == "queued" and job.total_epochs == 3
    assert job.hyperparameters["learning_rate"] == pytest.approx(5e-4)
    assert job.estimate["cost"]["total"] == job.estimated_total_cost
    assert job.gpu_config["gpu_type"] == "cpu-local" and job.dataset_name == "d"


def test_not_ready_dataset_refused(me):
    d = ready_dataset(me, "invalid-v4.jsonl")
    with pytest.raises(InvalidInput) as err:
        jobs.create_job(me, d.id, submit=False)
    assert err.value.code == "dataset_not_ready"
    with session_scope() as s:
        assert s.scalar(select(func.count()).select_from(TrainingJob)) == 0


def test_someone_elses_dataset_refused(me):
    d = ready_dataset(me)
    other = create_user("b@x.io", "B", "password-b")
    with pytest.raises(NotFound):
        jobs.create_job(other, d.id, submit=False)


def test_unknown_base_model_refused_clearly(me):
    d = ready_dataset(me)
    with pytest.raises(InvalidInput) as err:
        jobs.create_job(me, d.id, base_model="nobody/not-on-this-machine", submit=False)
    assert "not" in str(err.value) and err.value.code == "base_model_unavailable"


def test_budget_admission(me):
    d = ready_dataset(me)
    set_budget(me, me.id, 0.01)
    with pytest.raises(BudgetExceeded) as err:
        jobs.create_job(me, d.id, hardware_id="H100-80GB", submit=False)
    assert "budget" in str(err.value) and "allow-over-budget" in str(err.value)
    job = jobs.create_job(me, d.id, hardware_id="H100-80GB", allow_over_budget=True, submit=False)
    assert job.budget_decision["over_budget"] and job.budget_decision["confirmed_over_budget"]
    free = jobs.create_job(me, d.id, hardware_id="cpu-local", submit=False)
    assert not free.budget_decision["over_budget"]


def test_progress_writes_are_idempotent_and_complete(me, tmp_path):
    from backend.jobs.db_sink import DbSink

    d = ready_dataset(me)
    job = jobs.create_job(me, d.id, hardware_id="A100-80GB", submit=False)
    sink = DbSink(job.id)
    sink.stage("initializing")
    sink.stage("training")
    pts = [{"epoch": 0, "step": i, "training_loss": 3.0 - i * 0.1, "learning_rate": 1e-4}
           for i in range(1, 6)]
    sink.metrics(pts)
    sink.metrics(pts[2:])  # resent after a retry: no duplicates
    sink.progress(0, 5, 10, 50.0, {"training_loss": 2.5}, 30.0)
    sink.checkpoint(5, 0, 2.5, "file:///tmp/ckpt", 123)
    sink.resumed(3, 0)  # a worker died: steps after 3 will be sent again
    sink.metrics([{"epoch": 0, "step": 4, "training_loss": 2.61, "learning_rate": 1e-4}])
    with session_scope() as s:
        steps = s.scalars(select(MetricsPoint.step).where(MetricsPoint.job_id == job.id)
                          .order_by(MetricsPoint.step)).all()
    assert steps == [1, 2, 3, 4]
    mid = jobs.get_job(me, job.id)
    assert mid.status == "running" and mid.progress == 50.0 and mid.estimated_completion_at
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_model.safetensors").write_bytes(b"x" * 100)
    (adapter / "adapter_config.json").write_text("{}")
    (adapter / "tokenizer.json").write_text("{}")
    sink.completed({"adapter_dir": str(adapter), "first_train_loss": 3.0, "final_train_loss": 1.4,
                    "final_val_loss": 1.5, "best_val_loss": 1.45, "best_epoch": 1,
                    "tokens_processed": 1000, "avg_throughput": 50.0, "model_params": 1_000_000})
    done = jobs.get_job(me, job.id)
    assert done.status == "completed" and done.current_stage == "completed" and done.artifact_id
    assert done.final_cost is not None
    from backend.adapters import get_model, model_files
    m = get_model(me, done.artifact_id)
    assert m.quality_metrics["convergence_quality"] == "excellent"
    assert {f["name"] for f in model_files(me, m.id)} >= {"adapter_model.safetensors",
                                                          "adapter_config.json"}
    assert any(n.type == "job_complete" for n in list_notifications(me))
    with session_scope() as s:
        storage = s.scalars(select(CostRecord).where(CostRecord.job_id == job.id,
                                                     CostRecord.cost_type == "storage")).all()
    # the estimate's definition: the job's hardware price per GiB-month, the stored files' size
    from backend.training.catalogs import storage_cost, storage_price_for
    size = sum(f.stat().st_size for f in adapter.iterdir())
    assert [r.amount for r in storage] == [pytest.approx(storage_cost(size, storage_price_for(
        "A100-80GB")))]
    # calibration from the finished job now feeds the estimator
    est = jobs.estimate_for_dataset(me, d.id, jobs.build_config("balanced"), "A100-80GB", 1)
    assert est["calibrated_from"] >= 0
    with pytest.raises(InvalidTransition):
        jobs.cancel_job(me, job.id)


def test_failure_and_cancel(me):
    d = ready_dataset(me)
    a = jobs.create_job(me, d.id, submit=False)
    assert jp.fail_job(a.id, "CUDA out of memory", "Traceback ...")
    failed = jobs.get_job(me, a.id)
    assert failed.status == "failed" and failed.error_stack.startswith("Traceback")
    assert not jp.fail_job(a.id, "again")  # already ended: unchanged
    b = jobs.create_job(me, d.id, submit=False)
    assert jobs.cancel_job(me, b.id).status == "cancelled"
    assert any(n.type == "job_failed" for n in list_notifications(me))


def test_compute_cost_accrues_and_budget_alerts(me):
    d = ready_dataset(me)
    set_budget(me, me.id, 1.0)
    job = jobs.create_job(me, d.id, hardware_id="H100-80GB", allow_over_budget=True, submit=False)
    from datetime import timedelta

    from backend.db.models import utcnow
    jp.set_stage(job.id, "initializing")
    with session_scope() as s:  # pretend it started 30 minutes ago
        s.get(TrainingJob, job.id).started_at = utcnow() - timedelta(minutes=30)
    jp.set_stage(job.id, "training")
    jp.update_progress(job.id, epoch=0, step=1, total_steps=10, percent=10, current_metrics={},
                       eta_s=60)
    j = jobs.get_job(me, job.id)
    assert j.current_cost == pytest.approx(2.5, rel=0.05)  # 0.5 h × 1 × $5
    assert summary(me).by_type["compute"] == pytest.approx(j.current_cost, rel=1e-3)
    alerts = [n for n in list_notifications(me) if n.type == "cost_alert"]
    assert alerts and alerts[0].priority == "critical"
    jp.update_progress(job.id, epoch=0, step=2, total_steps=10, percent=20, current_metrics={},
                       eta_s=50)
    assert len([n for n in list_notifications(me) if n.type == "cost_alert"]) == 1  # once


def test_metrics_downsampled_keeps_peaks(me):
    d = ready_dataset(me)
    job = jobs.create_job(me, d.id, submit=False)
    pts = [{"epoch": 0, "step": i, "training_loss": 1.0, "learning_rate": 1e-4}
           for i in range(1, 5001)]
    pts[2500]["training_loss"] = 99.0  # a spike
    pts[4000]["validation_loss"] = 0.5
    jp.append_metrics(job.id, pts)
    series = jobs.job_metrics(me, job.id, max_points=1000)
    assert len(series) <= 1001
    assert max(p.training_loss for p in series) == 99.0
    assert any(p.validation_loss == 0.5 for p in series)


def test_completion_uses_the_adapter_rank_0_uploaded(me, tmp_path):
    """Rank 0 may run on another node than the driver: it uploads the adapter itself and the
    driver's sink only records it (the driver's folder does not exist here)."""
    from backend.jobs.db_sink import DbSink
    from backend.storage import get_object_store

    d = ready_dataset(me)
    job = jobs.create_job(me, d.id, hardware_id="A100-80GB", submit=False)
    sink = DbSink(job.id, artifact_id="a" * 8 + "-0000-4000-8000-" + "0" * 12)
    sink.stage("training")
    prefix = f"models/{sink.artifact_id}/"
    store = get_object_store()
    store.put_bytes(prefix + "adapter_model.safetensors", b"w" * 64)
    store.put_bytes(prefix + "adapter_config.json", b"{}")
    sink.completed({"adapter_dir": str(tmp_path / "on-another-node"), "final_val_loss": 1.5,
                    "first_train_loss": 3.0, "final_train_loss": 1.4,
                    "uploaded": {"prefix": prefix, "sizes": {"adapter_model.safetensors": 64,
                                                             "adapter_config.json": 2}}})
    done = jobs.get_job(me, job.id)
    assert done.status == "completed" and done.artifact_id == sink.artifact_id
    from backend.adapters import get_model
    m = get_model(me, done.artifact_id)
    assert m.artifacts["prefix"] == prefix and m.artifacts["file_sizes"]["adapter_model"] == 64
    assert "uploaded" not in m.training_summary
