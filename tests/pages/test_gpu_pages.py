"""The GPU path on the pages: gradient checkpointing on Configure (and the memory prediction's last
check), the peak GPU memory next to the prediction on the Monitor, how a job ran on the Models
page. Metric points and results are synthetic (written through the progress sink): no GPU in CI."""
from __future__ import annotations

import pytest

from app.ui.widgets import literal
from backend.jobs import service as jobs
from tests.pages.conftest import TIMEOUT, make_dataset, open_app, texts
from tests.pages.job_helpers import fake_adapter, new_job, run_job

GPU_POINT = {"epoch": 1, "step": 7, "training_loss": 1.2, "gpu_utilization": 88.0,
             "gpu_memory_used_gb": 14.0, "gpu_peak_allocated_gb": 12.345,
             "gpu_workers": [{"rank": 0, "utilization": 90.0, "memory_used_gb": 14.0,
                              "peak_allocated_gb": 12.345},
                             {"rank": 1, "utilization": 86.0, "memory_used_gb": 13.5,
                              "peak_allocated_gb": 12.0}]}
PRECISION = {"device": "cuda", "base_dtype": "bfloat16", "trainable_dtype": "float32",
             "tf32": True, "attn_implementation": "sdpa", "gradient_checkpointing": True}


@pytest.fixture
def submitted(monkeypatch):
    calls: list[str] = []
    monkeypatch.setattr(jobs, "submit_job", lambda job_id: calls.append(job_id) or "raysub-1")
    return calls


def _metrics(at) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


def test_configure_offers_checkpointing_and_says_the_prediction_is_unchecked(actor, submitted):
    make_dataset(actor, "d", n=40)
    at = open_app("configure")
    box = at.selectbox(key="configure_gradient_checkpointing")
    assert box.value == "auto" and "~30 %" in box.help  # the preset's none, the field's help
    at.selectbox(key="configure_hardware").select("A100-80GB").run(timeout=TIMEOUT)
    assert not at.exception, at.exception
    page = texts(at)
    assert "gradient checkpointing off" in page  # the tiny model fits: auto stays off
    assert "not been checked against a measured peak" in page
    at.selectbox(key="configure_gradient_checkpointing").select("on").run(timeout=TIMEOUT)
    assert "gradient checkpointing on" in texts(at) and "(modified)" in texts(at)
    at.button(key="configure_start").click().run(timeout=TIMEOUT)
    assert not at.exception, at.exception
    (job,) = jobs.list_jobs(actor).items
    assert job.hyperparameters["gradient_checkpointing"] is True
    assert job.gpu_config["gradient_checkpointing"] is True


def test_monitor_shows_the_peak_next_to_the_prediction(actor):
    d = make_dataset(actor, "d")
    job = new_job(actor, d.id, hardware_id="A100-80GB", workers=2)
    sink = run_job(job.id)
    sink.progress(1, 7, 12, 58.0, GPU_POINT, 60.0)
    at = open_app("monitor", {"job_id": job.id})
    assert not at.exception, at.exception
    m = _metrics(at)
    predicted = job.estimate["vram"]["allocated_gb"]
    assert m["Peak GPU memory"] == "12.3 GB" and m["Predicted"] == f"{predicted:,.1f} GB"
    assert m["GPU utilisation"] == "88 %" and m["GPU memory used"] == "14.0 GB"
    assert "worker 1: 86.0 % · 13.5 GB used · 12.0 GB peak" in texts(at)
    cpu = new_job(actor, d.id, hardware_id="cpu-local")
    run_job(cpu.id)
    assert "Peak GPU memory" not in _metrics(open_app("monitor", {"job_id": cpu.id}))
    sink.failed("done", "")


def test_models_page_says_how_the_job_ran(actor, tmp_path):
    d = make_dataset(actor, "d")
    job = new_job(actor, d.id, hardware_id="A100-80GB")
    sink = run_job(job.id)
    sink.completed({"adapter_dir": str(fake_adapter(tmp_path / "a")), "first_train_loss": 3.0,
                    "final_train_loss": 1.4, "final_val_loss": 1.5, "best_val_loss": 1.45,
                    "best_epoch": 1, "tokens_processed": 3000, "avg_throughput": 950.0,
                    "model_params": 264768, "duration_s": 95.0, "total_steps": 12,
                    "precision": PRECISION, "gpu_peak_allocated_gb": 12.0})
    model_id = jobs.get_job(actor, job.id).artifact_id
    at = open_app("models", {"id": model_id})
    assert not at.exception, at.exception
    page = texts(at)
    assert literal("cuda · base weights bfloat16, LoRA float32 · TF32 on · attention sdpa · "
                   "gradient checkpointing on") in page  # recorded by the worker: escaped
    assert "peak 12.00 GB allocated per worker (predicted" in page
