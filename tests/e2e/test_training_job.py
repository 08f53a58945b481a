"""Training jobs end to end on the session's real Ray head with the tiny model and 2 CPU workers:
complete (CLI --wait), cancel, driver killed (reconcile), worker lost (resume from checkpoint)."""
import json
import os
import signal
import time
from pathlib import Path

import psutil
import pytest
from sqlalchemy import func, select

from backend.accounts.users import ensure_local_user
from backend.cli import main
from backend.db.models import Checkpoint, JobLog, MetricsPoint
from backend.db.session import session_scope
from backend.jobs import service as jobs
from backend.notifications import list_notifications
from tests.fixtures.paths import SAMPLE_DATA

SHARED = SAMPLE_DATA
pytestmark = pytest.mark.ray
FAST = ["--set", "learning_rate=0.02", "--set", "batch_size=1", "--set", "max_seq_length=512",
        "--set", "warmup_steps=0", "--set", "lora_dropout=0", "--set", "validation_fraction=0.3"]


def _run(capsys, *argv):
    rc = main(list(argv))
    out = capsys.readouterr().out
    return rc, (json.loads(out) if out.strip().startswith(("{", "[")) else out)


def _dataset(capsys):
    rc, info = _run(capsys, "datasets", "upload", str(SHARED / "sample-v4.jsonl"), "--name",
                    "Elena", "--wait", "--timeout", "300", "--json")
    assert rc == 0 and info["status"] == "ready", info
    return info


def _count(model, job_id):
    with session_scope() as s:
        return s.scalar(select(func.count()).select_from(model).where(model.job_id == job_id))


def _val_loss(base: str, adapter: Path, max_seq_length: int) -> float:
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from backend.datasets.formats import load_split
    from backend.training.data import encode_conversation

    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base), str(adapter))
    model.eval()
    tok = AutoTokenizer.from_pretrained(str(adapter))
    _, val = load_split(str(SHARED / "sample-v4.jsonl"), 0.3, 0)
    total = count = 0.0
    with torch.no_grad():
        for conv in val:
            enc = encode_conversation(tok, conv.turns, max_seq_length)
            out = model(input_ids=torch.tensor([enc.input_ids]), labels=torch.tensor([enc.labels]))
            total += float(out.loss) * enc.trained_tokens
            count += enc.trained_tokens
    return total / count


def test_job_completes_from_cli(ray_env, capsys, tmp_path, brightrun_home):
    ds = _dataset(capsys)
    rc, job = _run(capsys, "jobs", "create", "--dataset", ds["id"], "--preset", "conservative",
                   "--workers", "2", "--set", "num_epochs=3", *FAST, "--wait", "--timeout", "600",
                   "--json")
    assert rc == 0 and job["status"] == "completed", (job.get("error_message"), job)
    job_id, model_id = job["id"], job["artifact_id"]
    assert _count(MetricsPoint, job_id) >= 3 and _count(JobLog, job_id) > 3
    assert _count(Checkpoint, job_id) >= 1
    me = ensure_local_user()
    steps = [p.step for p in jobs.job_metrics(me, job_id)]
    assert steps == sorted(set(steps))
    rc, model = _run(capsys, "models", "show", model_id, "--json")
    q = model["quality_metrics"]
    assert q["convergence_quality"] in ("excellent", "good", "fair", "poor")
    assert q["final_validation_loss"] is not None and q["perplexity"] > 1
    assert model["training_summary"]["total_tokens_processed"] > 0
    assert {n.type for n in list_notifications(me)} >= {"dataset_ready", "job_complete"}
    out = tmp_path / "adapter"
    assert main(["models", "download", model_id, "--out", str(out)]) == 0
    assert {"adapter_model.safetensors", "adapter_config.json"} <= {p.name for p in out.iterdir()}
    from backend.base_models.tiny_model import ensure_tiny_model
    reproduced = _val_loss(str(ensure_tiny_model(brightrun_home)), out, 512)
    assert reproduced == pytest.approx(q["final_validation_loss"], abs=1e-3)


def _start_long_job(capsys):
    ds = _dataset(capsys)
    rc, job = _run(capsys, "jobs", "create", "--dataset", ds["id"], "--preset", "conservative",
                   "--workers", "2", "--set", "num_epochs=100", *FAST, "--json")
    assert rc == 0, job
    me = ensure_local_user()
    deadline = time.monotonic() + 300
    while jobs.get_job(me, job["id"]).status != "running":
        assert time.monotonic() < deadline, jobs.get_job(me, job["id"])
        assert jobs.get_job(me, job["id"]).status in ("queued", "initializing")
        time.sleep(1)
    return me, job


def test_cancel_running_job(ray_env, capsys):
    me, job = _start_long_job(capsys)
    t0 = time.monotonic()
    rc, out = _run(capsys, "jobs", "cancel", job["id"], "--json")
    assert rc == 0 and out["status"] == "cancelled"
    assert ray_env.wait(job["external_job_id"], timeout_s=15) == "STOPPED"
    assert time.monotonic() - t0 < 15
    time.sleep(2)
    assert jobs.get_job(me, job["id"]).status == "cancelled"  # the dying driver changed nothing


def test_killed_driver_is_failed_by_reconcile(ray_env, capsys):
    me, job = _start_long_job(capsys)
    drivers = [p for p in psutil.process_iter(["cmdline"])
               if job["id"] in " ".join(p.info["cmdline"] or []) and
               "ray_jobs.train_lora" in " ".join(p.info["cmdline"] or [])]
    assert drivers
    for p in drivers:
        os.kill(p.pid, signal.SIGKILL)
    assert ray_env.wait(job["external_job_id"], timeout_s=60) == "FAILED"
    assert jobs.get_job(me, job["id"]).status == "running"  # nobody told the database yet
    assert jobs.reconcile() == 1
    failed = jobs.get_job(me, job["id"])
    assert failed.status == "failed" and "failed" in failed.error_message


@pytest.mark.slow
def test_lost_worker_resumes_without_duplicate_steps(ray_env, capsys):
    ds = _dataset(capsys)
    me = ensure_local_user()
    info = jobs.create_job(me, ds["id"], preset_id="conservative", workers=2, submit=False,
                           overrides=["num_epochs=3", *[a for a in FAST if a != "--set"]])
    sub = ray_env.submit("ray_jobs.train_lora", ["--job-id", info.id, "--fail-at-step", "3"],
                         kind="train", object_id=info.id)
    assert ray_env.wait(sub, timeout_s=600) == "SUCCEEDED", ray_env.logs(sub)[-3000:]
    job = jobs.get_job(me, info.id)
    assert job.status == "completed"
    with session_scope() as s:
        steps = s.scalars(select(MetricsPoint.step).where(MetricsPoint.job_id == info.id)
                          .order_by(MetricsPoint.step)).all()
    assert steps == list(range(0, job.total_steps + 1 if job.total_steps else len(steps)))
    assert any("resumed" in line.message for line in jobs.job_logs(me, info.id, limit=500))


def test_single_cpu_worker_job_trains_in_the_driver(ray_env, capsys):
    """One CPU worker: the recipe trains in the Ray job's driver (no worker group) and the job
    ends like any other: metrics, checkpoints, a model artifact."""
    ds = _dataset(capsys)
    rc, job = _run(capsys, "jobs", "create", "--dataset", ds["id"], "--preset", "conservative",
                   "--workers", "1", "--set", "num_epochs=2", "--set", "checkpoint_every_steps=2",
                   *FAST, "--wait", "--timeout", "600", "--json")
    assert rc == 0 and job["status"] == "completed", (job.get("error_message"), job)
    me = ensure_local_user()
    messages = [line.message for line in jobs.job_logs(me, job["id"], limit=500)]
    assert any("training in this process" in m for m in messages), messages
    steps = [p.step for p in jobs.job_metrics(me, job["id"])]
    assert steps == list(range(0, len(steps))) and len(steps) >= 5  # 0: the base model
    assert _count(Checkpoint, job["id"]) >= 2 and job["artifact_id"]
