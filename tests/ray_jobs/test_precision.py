"""Device and dtypes from the job's hardware (ray_jobs.worker.precision), gradient checkpointing giving the
same loss and gradients, and the per-worker GPU metrics (ray_jobs.worker.gpu_metrics). Tests marked
``gpu`` need CUDA and are skipped elsewhere (tests/conftest.py)."""
from __future__ import annotations

import re

import pytest

from ray_jobs.worker import precision
from ray_jobs.worker.gpu_metrics import GpuMonitor, pack, point_fields, unpack
from ray_jobs.worker.sinks import CollectingSink
from tests.fixtures.paths import REPO
from tests.ray_jobs.test_train_lora import FAST, SAMPLE_V4, _split_seed


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


# ----- the plan ----------------------------------------------------------------------------------
@pytest.mark.parametrize("use_gpu,cuda,device,base,trainable,tf32", [
    (False, False, "cpu", "float32", "float32", False),
    (False, True, "cpu", "float32", "float32", False),   # a CPU job on a GPU host: still fp32 CPU
    (True, True, "cuda", "bfloat16", "float32", True),
])
def test_plan_comes_from_the_jobs_hardware_not_the_host(use_gpu, cuda, device, base, trainable,
                                                         tf32):
    p = precision.plan(use_gpu, cuda, gradient_checkpointing=None)
    assert (p.device, p.base_dtype, p.trainable_dtype, p.tf32) == (device, base, trainable, tf32)
    assert p.attn_implementation == "sdpa" and p.gradient_checkpointing is False


def test_a_gpu_job_without_cuda_is_an_error_not_a_cpu_run():
    with pytest.raises(precision.PrecisionError) as err:
        precision.plan(True, False)
    assert err.value.code == "no_cuda_device" and "no CUDA device" in err.value.message
    with pytest.raises(ValueError):
        precision.plan(False, False, attn_implementation="magic")


def test_cuda_is_detected_in_one_place_only():
    hits = [str(p.relative_to(REPO)) for p in (REPO / "ray_jobs").rglob("*.py")
            if re.search(r"cuda\.is_available\(", p.read_text())]
    assert hits == ["ray_jobs/worker/precision.py"]


def test_a_cpu_job_on_a_host_that_reports_cuda_trains_fp32_on_cpu(tmp_path, monkeypatch,
                                                                   brightrun_home):
    import torch

    from ray_jobs.worker.loop import train_loop_per_worker
    from ray_jobs.worker.runtime import InProcessRuntime

    monkeypatch.setattr(precision, "cuda_available", lambda: True)  # the host "has" a GPU
    seen = {}
    real_prepare = precision.prepare

    def spy(p, model):
        real_prepare(p, model)
        seen["dtypes"] = {param.dtype for param in model.parameters()}
    monkeypatch.setattr(precision, "prepare", spy)
    sink = CollectingSink()
    loop = {"config": dict(FAST, validation_seed=_split_seed(), num_epochs=1),
            "dataset": SAMPLE_V4, "output": str(tmp_path / "adapter"), "sink": sink,
            "home": str(brightrun_home), "use_gpu": False}
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        result = train_loop_per_worker(loop, runtime=InProcessRuntime(str(tmp_path / "r"), "r"))
    finally:
        torch.set_num_threads(threads)
    assert result["total_steps"] >= 3 and result["device"] == "cpu"
    assert result["precision"]["device"] == "cpu"
    assert result["precision"]["base_dtype"] == result["precision"]["trainable_dtype"] == "float32"
    assert result["precision"]["attn_implementation"] == "sdpa"
    assert seen["dtypes"] == {torch.float32}  # base weights and LoRA weights alike
    assert result["gpu_peak_allocated_gb"] is None and result["gpu_workers"] is None
    assert all(p["gpu_utilization"] is None and "gpu_workers" not in p for p in sink.points)
    assert all(p["training_loss"] == p["training_loss"] for p in sink.points)  # no NaN


# ----- gradient checkpointing --------------------------------------------------------------------
def _loss_and_grads(model_dir, checkpointing: bool):
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from backend.datasets.formats import load_split
    from backend.training.data import collate, encode_all
    from ray_jobs.worker.losses import install_row_selection, trained_loss_sum

    tok = AutoTokenizer.from_pretrained(model_dir, local_files_only=True)
    convs, _ = load_split(SAMPLE_V4, 0.0, 0)
    examples, _ = encode_all(tok, convs, 512)
    p = precision.plan(False, False, gradient_checkpointing=checkpointing)
    base = AutoModelForCausalLM.from_pretrained(model_dir, local_files_only=True,
                                                **precision.load_kwargs(p))
    model = get_peft_model(base, LoraConfig(r=8, lora_alpha=16, lora_dropout=0.1,
                                            target_modules=["q_proj", "v_proj", "o_proj"],
                                            task_type="CAUSAL_LM"))
    precision.prepare(p, model)
    install_row_selection(model)
    torch.manual_seed(1)
    for param in model.parameters():  # LoRA B starts at 0: give A a gradient too
        if param.requires_grad:
            param.data.normal_(0.0, 0.05)
    model.train()
    batch = collate(examples[:3], tok.pad_token_id)
    torch.manual_seed(7)  # the same dropout masks (checkpointing replays the RNG state)
    loss = trained_loss_sum(model, model, batch)
    loss.backward()
    grads = {n: q.grad.detach().clone() for n, q in model.named_parameters() if q.requires_grad}
    return float(loss.detach()), grads, model


def test_gradient_checkpointing_gives_the_same_loss_and_gradients(tiny_model_dir):
    import torch

    loss_off, grads_off, _ = _loss_and_grads(tiny_model_dir, False)
    loss_on, grads_on, model = _loss_and_grads(tiny_model_dir, True)
    inner = model.base_model.model
    assert getattr(inner, "is_activation_checkpointing", None) \
        or inner.is_gradient_checkpointing  # it really was on
    assert loss_on == pytest.approx(loss_off, rel=1e-5)
    assert grads_on.keys() == grads_off.keys() and len(grads_on) > 0
    for name, g in grads_off.items():
        assert float(g.norm()) > 0, name
        assert float((grads_on[name] - g).norm() / g.norm()) < 1e-5, name
    assert all(gr.dtype == torch.float32 for gr in grads_on.values())


# ----- GPU metrics -------------------------------------------------------------------------------
def test_worker_samples_sum_into_every_workers_figures():
    samples = [{"utilization": 90.0, "memory_used_gb": 30.0, "peak_allocated_gb": 28.5},
               {"utilization": 70.0, "memory_used_gb": None, "peak_allocated_gb": 29.0}]
    vectors = [pack(s, rank, 2) for rank, s in enumerate(samples)]
    summed = [sum(v) for v in zip(*vectors)]  # what the all-reduce does
    workers = unpack(summed, 2)
    assert workers == [{"rank": 0, "utilization": 90.0, "memory_used_gb": 30.0,
                        "peak_allocated_gb": 28.5},
                       {"rank": 1, "utilization": 70.0, "memory_used_gb": None,
                        "peak_allocated_gb": 29.0}]
    fields = point_fields(workers)
    assert fields["gpu_utilization"] == 80.0 and fields["gpu_memory_used_gb"] == 30.0
    assert fields["gpu_peak_allocated_gb"] == 29.0 and fields["gpu_workers"] == workers
    assert point_fields(unpack(pack({}, 0, 1), 1))["gpu_utilization"] is None


def test_a_cpu_worker_samples_nothing_and_runs_no_collective():
    import torch

    def no_collective(values):
        raise AssertionError("a CPU worker must not all-reduce GPU samples")

    monitor = GpuMonitor(torch.device("cpu"), handle_for=lambda i: pytest.fail("no NVML on CPU"))
    assert not monitor.active and monitor.peak_allocated_gb() is None
    assert monitor.gather(0, 1, no_collective) == {}


# ----- on a GPU ----------------------------------------------------------------------------------
@pytest.mark.gpu
def test_a_gpu_plan_trains_bf16_base_with_fp32_lora_and_records_the_peak(tiny_model_dir):
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    p = precision.for_job(True, gradient_checkpointing=True)
    assert p.device == "cuda"
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir, local_files_only=True,
                                                **precision.load_kwargs(p))
    model = get_peft_model(base, LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj"],
                                            task_type="CAUSAL_LM"))
    precision.prepare(p, model)
    model.to("cuda").train()
    assert {q.dtype for q in model.parameters() if q.requires_grad} == {torch.float32}
    assert {q.dtype for q in model.parameters() if not q.requires_grad} == {torch.bfloat16}
    assert torch.backends.cuda.matmul.allow_tf32
    ids = torch.randint(0, 2000, (2, 128), device="cuda")
    model(input_ids=ids, labels=ids).loss.backward()
    monitor = GpuMonitor(torch.device("cuda", 0))
    fields = monitor.gather(0, 1, lambda v: v)
    assert fields["gpu_peak_allocated_gb"] > 0
