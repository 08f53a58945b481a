"""The pure estimator: tokens, time, cost, memory, calibration and the budget rule, as tables."""
from __future__ import annotations

import json
import math
import re
from decimal import Decimal

import pytest

from backend.base_models.specs import get_model
from backend.core.errors import InvalidInput
from backend.training.catalogs import HardwareEntry, Pricing, get_hardware
from backend.training.config import TrainingConfig
from backend.training.estimation import (
    GIB,
    BudgetDecision,
    CalibrationSample,
    DatasetStatsInput,
    LengthPercentiles,
    budget_check,
    estimate,
    kept_fraction,
    lora_parameter_count,
    scaling_factor,
    size_factor,
    throughput,
    vram,
)
from tests.fixtures.paths import REPO

MISTRAL = "mistralai/Mistral-7B-v0.1"
TINY = "brightrun/tiny-llama"
DOC = REPO / "docs" / "estimation.md"


def stats(conversations=2000, total_tokens=1_200_000, p=(180, 520, 1100, 1536), file_size=6_000_000):
    return DatasetStatsInput(conversations=conversations, total_tokens=total_tokens,
                             assistant_tokens=total_tokens // 2, training_pairs=conversations * 2,
                             validation_pairs=conversations // 5,
                             length_percentiles=LengthPercentiles(*p), file_size_bytes=file_size)


def cfg(model=MISTRAL, **kw) -> TrainingConfig:
    return TrainingConfig(base_model=model, **kw)


def fake_gpu(**kw) -> HardwareEntry:
    values = dict(id="test-gpu", name="Test GPU", kind="gpu", memory_gb=80, cost_per_gpu_hour=2.0,
                  price_source="test", throughput_tokens_per_s=1000, throughput_reference_params=7e9,
                  max_speedup=10, throughput_source="assumption: test", scaling_efficiency_per_doubling=0.9,
                  max_workers=8, compute_dtype="bf16", runtime_overhead_gb=1.5, startup_overhead_s=100,
                  pricing=Pricing(storage_per_gb_month=0.5, data_transfer_per_gb=0.25, source="test"))
    return HardwareEntry(**{**values, **kw})


def run(config=None, hw="A100-80GB", workers=1, model=MISTRAL, data=None, calibration=None):
    hardware = get_hardware(hw) if isinstance(hw, str) else hw
    return estimate(data or stats(), config or cfg(model), hardware, workers, get_model(model),
                    calibration)


# ----- cost and time ---------------------------------------------------------------------------------
@pytest.mark.parametrize("hw,workers", [("A100-80GB", 1), ("A100-80GB", 4), ("H100-80GB", 2),
                                        ("A6000-48GB", 8), ("L4-24GB", 1), ("cpu-local", 2)])
def test_compute_cost_is_hours_times_workers_times_rate(hw, workers):
    est = run(hw=hw, workers=workers)
    rate = get_hardware(hw).cost_per_gpu_hour
    hours = est.duration_s / 3600
    assert est.worker_hours == pytest.approx(hours * workers)
    assert est.cost.compute == pytest.approx(hours * workers * rate)
    assert est.cost.total == pytest.approx(est.cost.compute + est.cost.storage
                                           + est.cost.data_transfer)


@pytest.mark.parametrize("epochs", [1, 2, 3, 5])
def test_doubling_epochs_doubles_the_training_part(epochs):
    one, two = run(cfg(num_epochs=epochs)), run(cfg(num_epochs=2 * epochs))
    assert two.tokens_to_train == pytest.approx(2 * one.tokens_to_train, abs=2)
    assert two.breakdown_s["training"] == pytest.approx(2 * one.breakdown_s["training"], rel=1e-6)
    assert two.breakdown_s["startup"] == one.breakdown_s["startup"]
    assert two.duration_s - two.breakdown_s["startup"] == pytest.approx(
        2 * (one.duration_s - one.breakdown_s["startup"]), rel=1e-6)


@pytest.mark.parametrize("workers,speedup", [(1, 1.0), (2, 1.8), (4, 3.24), (8, 5.832)])
def test_more_workers_are_faster_by_the_scaling_efficiency(workers, speedup):
    single, many = run(hw=fake_gpu()), run(hw=fake_gpu(), workers=workers)
    assert many.tokens_to_train == single.tokens_to_train
    busy = lambda e: e.duration_s - e.breakdown_s["startup"]  # noqa: E731
    assert busy(many) == pytest.approx(busy(single) / speedup)
    assert many.throughput_tokens_per_s == pytest.approx(single.throughput_tokens_per_s * speedup)


@pytest.mark.parametrize("workers,eff,factor", [
    (1, 0.9, 1.0), (2, 0.9, 1.8), (4, 0.9, 3.24), (8, 0.9, 5.832), (2, 1.0, 2.0), (3, 0.9, 2.541),
    (2, 0.6, 1.2)])
def test_scaling_factor(workers, eff, factor):
    assert scaling_factor(workers, eff) == pytest.approx(factor, rel=1e-3)


@pytest.mark.parametrize("params,factor", [(7e9, 1.0), (14e9, 0.5), (3.5e9, 2.0), (0.5e9, 10.0),
                                           (70e9, 0.1)])
def test_size_factor_is_inverse_to_size_and_capped(params, factor):
    assert size_factor(fake_gpu(), int(params)) == pytest.approx(factor)


def test_duration_formula_on_a_synthetic_gpu():
    # 7B model on a 1000 tokens/s reference GPU: size factor 7e9/7.2417e9
    est = run(cfg(num_epochs=2, validation_fraction=0.0), hw=fake_gpu())
    tps = 1000 * 7e9 / get_model(MISTRAL).params
    assert est.tokens_to_train == 2 * 1_200_000  # no truncation: max 1536 < 2048
    assert est.eval_tokens == 0 and est.evaluations == 0
    assert est.duration_s == pytest.approx(2_400_000 / tps + 100)


# as the trainer evaluates: at every epoch's end and every N steps (675 steps, epochs end at
# 225/450/675: every 10 → 67 multiples + 225 + 675; every 1000 → the 3 epoch ends)
@pytest.mark.parametrize("vf,every,evaluations", [(0.1, None, 3), (0.2, None, 3), (0.0, None, 0),
                                                  (0.1, 10, 69), (0.1, 1000, 3)])
def test_evaluation_tokens(vf, every, evaluations):
    # 2000 conversations, batch 8: 225 steps/epoch at vf 0.1 (1800 train), 200 at vf 0.2
    est = run(cfg(num_epochs=3, validation_fraction=vf, eval_every_steps=every))
    assert est.evaluations == evaluations
    assert est.eval_tokens == round(1_200_000 * vf * evaluations)
    assert est.tokens_to_train == round(1_200_000 * (1 - vf) * 3)
    assert est.breakdown_s["evaluation"] == pytest.approx(
        est.eval_tokens / (3 * est.throughput_tokens_per_s))


@pytest.mark.parametrize("every,checkpoints", [(None, 3), (100, 7), (675, 1), (10_000, 1)])
def test_checkpoints_and_storage(every, checkpoints):
    est = run(cfg(num_epochs=3, checkpoint_every_steps=every), hw=fake_gpu())
    assert est.total_steps == 675 and est.checkpoints == checkpoints
    stored = est.adapter_bytes + checkpoints * est.lora_params * 12
    assert est.cost.storage == pytest.approx(stored / GIB * 0.5)
    # fp32 LoRA weights (PEFT's default) + a safetensors header entry per tensor
    assert est.lora_params * 4 < est.adapter_bytes < est.lora_params * 4 * 1.01


@pytest.mark.parametrize("workers,file_size", [(1, 6_000_000), (4, 6_000_000), (2, None)])
def test_data_transfer(workers, file_size):
    est = run(hw=fake_gpu(), workers=workers, data=stats(file_size=file_size))
    dataset_bytes = file_size or 1_200_000 * 5
    assert est.cost.data_transfer == pytest.approx(
        (dataset_bytes * workers + est.adapter_bytes) / GIB * 0.25)
    assert any("bytes per token" in a for a in est.assumptions) == (file_size is None)


def test_cpu_local_costs_nothing():
    est = run(cfg(TINY), hw="cpu-local", model=TINY, workers=2)
    assert (est.cost.compute, est.cost.storage, est.cost.data_transfer, est.cost.total) == (0, 0, 0, 0)
    assert est.worker_hours > 0


# ----- truncation ------------------------------------------------------------------------------------
@pytest.mark.parametrize("p,cap,fraction", [
    ((100, 200, 300, 400), 400, 1.0),
    ((100, 200, 300, 400), 5000, 1.0),
    ((100, 200, 300, 400), 250, 190 / 205),
    ((100, 100, 100, 100), 50, 0.5),
    ((0, 0, 0, 100), 50, 0.75),
    ((0, 0, 0, 0), 50, 1.0),
])
def test_kept_fraction(p, cap, fraction):
    assert kept_fraction(LengthPercentiles(*p), cap) == pytest.approx(fraction)


def test_truncation_reduces_tokens_and_warns():
    full = run(cfg(max_seq_length=2048), data=stats(p=(100, 200, 300, 400)))
    cut = run(cfg(max_seq_length=250), data=stats(p=(100, 200, 300, 400)))
    assert cut.tokens_to_train == pytest.approx(full.tokens_to_train * 190 / 205, abs=3)
    assert any("will be truncated" in w for w in cut.warnings)
    assert not any("will be truncated" in w for w in full.warnings)


# ----- memory ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("model,hw,batch,seq,fits", [
    (MISTRAL, "A6000-48GB", 16, 4096, False),
    (MISTRAL, "A100-80GB", 16, 4096, False),
    (MISTRAL, "A100-80GB", 1, 4096, True),
    (MISTRAL, "H100-80GB", 1, 4096, True),
    (MISTRAL, "A6000-48GB", 1, 4096, True),
    (MISTRAL, "L4-24GB", 1, 4096, False),
    ("meta-llama/Llama-3.1-8B", "A10G-24GB", 2, 2048, False),
    ("Qwen/Qwen2.5-0.5B", "L4-24GB", 4, 2048, True),
    ("Qwen/Qwen2.5-7B", "A100-80GB", 4, 1024, True),
    (TINY, "cpu-local", 8, 2048, True),
    (TINY, "cpu-local", 16, 2048, True),
])
def test_fits_in_memory(model, hw, batch, seq, fits):  # without gradient checkpointing
    est = run(cfg(model, batch_size=batch, max_seq_length=seq, gradient_checkpointing=False),
              hw=hw, model=model,
              data=stats(p=(500, 1500, 3500, 8000)))
    assert est.vram.sequence_length == seq
    assert est.vram.fits is fits
    assert est.vram.headroom_gb == pytest.approx(est.vram.available_gb - est.vram.total_gb)
    assert any("needs ~" in w for w in est.warnings) is (not fits)


def test_vram_components():
    spec, hw = get_model(MISTRAL), get_hardware("A100-80GB")
    mem = vram(cfg(batch_size=2), spec, hw, lora_params=1_000_000, sequence_length=1000)
    assert mem.base_weights_gb == pytest.approx(spec.params * 2 / GIB)
    assert mem.lora_and_optimizer_gb == pytest.approx(16_000_000 / GIB)
    act = 2 * 1000 * 4096 * 32 * 34 + 2 * 32 * 1000**2 * 2 + 2 * 1000 * 32000 * 4
    assert mem.activations_gb == pytest.approx(act / GIB)
    assert mem.overhead_gb == 1.5
    assert mem.total_gb == pytest.approx(mem.base_weights_gb + mem.lora_and_optimizer_gb
                                         + mem.activations_gb + 1.5)
    cpu = vram(cfg(batch_size=2), spec, get_hardware("cpu-local"), 1_000_000, 1000)
    assert cpu.base_weights_gb == pytest.approx(2 * mem.base_weights_gb)  # fp32 on CPU


@pytest.mark.parametrize("max_seq,longest,used", [(2048, 1536, 1536), (1024, 1536, 1024),
                                                  (4096, 4096, 4096)])
def test_vram_uses_the_longest_padded_batch(max_seq, longest, used):
    est = run(cfg(max_seq_length=max_seq), data=stats(p=(100, 500, 1000, longest)))
    assert est.vram.sequence_length == used


def test_unknown_lengths_assume_full_sequences():
    est = run(cfg(max_seq_length=1024), data=stats(p=(0, 0, 0, 0)))
    assert est.vram.sequence_length == 1024
    assert any("lengths unknown" in a for a in est.assumptions)


@pytest.mark.parametrize("model,modules,rank,params", [
    (MISTRAL, ["q_proj", "k_proj", "v_proj", "o_proj"], 16, 32 * 16 * (8192 + 5120 + 5120 + 8192)),
    (MISTRAL, ["q_proj", "v_proj"], 8, 32 * 8 * (8192 + 5120)),
    (MISTRAL, ["gate_proj", "up_proj", "down_proj"], 1, 32 * 3 * (4096 + 14336)),
    (MISTRAL, ["all-linear"], 1, 32 * (8192 + 5120 + 5120 + 8192 + 3 * (4096 + 14336))),
    (TINY, ["q_proj", "k_proj", "v_proj", "o_proj"], 16, 2 * 16 * 4 * 128),
    (TINY, ["c_attn"], 4, 2 * 4 * 128),
])
def test_lora_parameter_count(model, modules, rank, params):
    count, notes = lora_parameter_count(get_model(model), modules, rank)
    assert count == params
    assert bool(notes) is (modules == ["c_attn"])


# ----- calibration -----------------------------------------------------------------------------------
P7 = 7_241_732_096


@pytest.mark.parametrize("samples,used,per_worker", [
    ([], 0, None),
    ([CalibrationSample("A100-80GB", P7, 1, 1000), CalibrationSample("A100-80GB", P7, 1, 2000),
      CalibrationSample("A100-80GB", P7, 2, 3600)], 3, 2000),
    ([CalibrationSample("A100-80GB", P7 * 2, 1, 500)], 1, 1000),  # 2x bigger model: 2x faster here
    ([CalibrationSample("H100-80GB", P7, 1, 9999)], 0, None),  # other hardware
    ([CalibrationSample("A100-80GB", 494_032_768, 1, 9999)], 0, None),  # far smaller model
    ([CalibrationSample("A100-80GB", P7, 1, 0)], 0, None),  # a job that measured nothing
])
def test_calibration(samples, used, per_worker):
    est = run(cfg(), workers=2, calibration=samples)
    assert est.calibrated_from == used
    catalog = run(cfg(), workers=2)
    if per_worker is None:
        assert est.throughput_tokens_per_s == catalog.throughput_tokens_per_s
    else:
        assert est.throughput_tokens_per_s == pytest.approx(per_worker * 1.8)
        assert est.throughput_tokens_per_s != catalog.throughput_tokens_per_s
        assert any("calibrated from" in a for a in est.assumptions)


def test_throughput_reports_its_source():
    tps, used, notes = throughput(get_hardware("H100-80GB"), get_model(MISTRAL), 1)
    assert used == 0 and tps == pytest.approx(6000 * 7e9 / P7)
    assert "H100-80GB" in notes[0] and "assumption" in notes[0]


# ----- inputs, warnings, output ----------------------------------------------------------------------
@pytest.mark.parametrize("hw,workers", [("A100-80GB", 0), ("A100-80GB", 9), ("cpu-local", 5),
                                        ("A100-80GB", 1.5)])
def test_workers_out_of_range(hw, workers):
    with pytest.raises(InvalidInput, match="workers must be between 1 and"):
        run(hw=hw, workers=workers)


@pytest.mark.parametrize("kwargs,fragment", [
    (dict(conversations=0), "no conversations"),
    (dict(total_tokens=0), "no tokens"),
    (dict(total_tokens=-5), "cannot be negative: total_tokens"),
    (dict(p=(300, 200, 100, 50)), "p10 <= p50"),
    (dict(file_size=-1), "file_size_bytes"),
])
def test_bad_dataset_statistics(kwargs, fragment):
    with pytest.raises(InvalidInput, match=fragment):
        stats(**kwargs)


@pytest.mark.parametrize("config,fragment", [
    (dict(warmup_steps=5000), "warmup_steps 5000 is not below"),
    (dict(max_seq_length=65536), "above the model's context"),
    (dict(batch_size=512, gradient_accumulation_steps=8), "one optimizer step per epoch"),
    (dict(learning_rate=5e-3), "often diverges"),
])
def test_estimate_warnings(config, fragment):
    est = run(cfg(**config), data=stats(p=(100, 200, 400, 800)))
    assert any(fragment in w for w in est.warnings), est.warnings


def test_to_dict_has_every_figure_and_is_json():
    d = run().to_dict()
    for key in ("tokens_to_train", "eval_tokens", "throughput_tokens_per_s", "duration_s", "worker_hours",
                "calibrated_from", "assumptions", "warnings"):
        assert key in d
    assert set(d["cost"]) == {"compute", "storage", "data_transfer", "total"}
    assert {"base_weights_gb", "lora_and_optimizer_gb", "activations_gb", "overhead_gb", "total_gb",
            "available_gb", "fits"} <= set(d["vram"])
    assert json.loads(json.dumps(d)) == d
    assert len(d["assumptions"]) >= 6


# ----- budget ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("spend,est,budget,allowed,level,percent", [
    (0, 10, None, True, "no_budget", None),
    (0, 10, 100, True, "ok", 10.0),
    (70, 10, 100, True, "high", 80.0),
    (90, 10, 100, True, "critical", 100.0),
    (90, 10.01, 100, False, "critical", 100.01),
    (150, 0, 100, False, "critical", 150.0),
])
def test_budget_check(spend, est, budget, allowed, level, percent):
    decision = budget_check(spend, est, budget)
    assert isinstance(decision, BudgetDecision)
    assert decision.allowed_without_confirmation is allowed
    assert decision.projected == pytest.approx(spend + est) and decision.level == level
    assert decision.percent == (None if percent is None else pytest.approx(percent))


def test_budget_check_accepts_decimals_from_the_database():
    decision = budget_check(Decimal("79.50"), 0.5, Decimal("100.00"))
    assert (decision.projected, decision.percent, decision.level) == (80.0, 80.0, "high")
    assert isinstance(decision.budget, float)


@pytest.mark.parametrize("spend,est,budget", [(-1, 1, 10), (1, -1, 10), (1, 1, 0), (1, 1, -5)])
def test_budget_check_rejects_bad_amounts(spend, est, budget):
    with pytest.raises(InvalidInput):
        budget_check(spend, est, budget)


# ----- the worked example in docs/estimation.md ------------------------------------------------------
def test_worked_example_in_the_doc_is_current():
    """docs/estimation.md walks through this estimate; its figures must match the code."""
    # the original specification's balanced values (the presets are now tuned for small models)
    config = TrainingConfig(base_model=MISTRAL, learning_rate=2e-4, batch_size=8, num_epochs=5,
                            lora_rank=16, lora_alpha=32, lora_dropout=0.1, warmup_steps=200,
                            weight_decay=0.01)
    est = run(config, data=stats())
    text = DOC.read_text(encoding="utf-8")
    figures = {
        "tokens_to_train": f"{est.tokens_to_train:,}",
        "eval_tokens": f"{est.eval_tokens:,}",
        "throughput": f"{est.throughput_tokens_per_s:,.0f} tokens/s",
        "duration": f"{est.duration_s:,.0f} s",
        "worker_hours": f"{est.worker_hours:.4f} GPU-hours",
        "compute": f"${est.cost.compute:.4f}",
        "storage": f"${est.cost.storage:.4f}",
        "transfer": f"${est.cost.data_transfer:.4f}",
        "total": f"${est.cost.total:.4f}",
        "vram": f"{est.vram.total_gb:.1f} GB",
        "lora": f"{est.lora_params:,}",
    }
    missing = {k: v for k, v in figures.items() if v not in text}
    assert not missing, f"update the worked example in docs/estimation.md: {missing}"
    assert est.vram.fits and math.isclose(est.kept_fraction, 1.0)
    assert re.search(r"fits: \*\*yes\*\*", text)


def test_startup_is_calibrated_from_jobs_started_the_same_way():
    from backend.training.estimation import CalibrationSample, startup_seconds

    hw = get_hardware("cpu-local")
    samples = [CalibrationSample("cpu-local", 10**6, 1, 1000.0, startup_s=5.0),
               CalibrationSample("cpu-local", 10**6, 1, 1000.0, startup_s=7.0),
               CalibrationSample("cpu-local", 10**6, 2, 1000.0, startup_s=30.0),
               CalibrationSample("A100-80GB", 10**6, 2, 1000.0, startup_s=99.0)]
    assert startup_seconds(hw, samples, 1)[0] == 6.0
    assert startup_seconds(hw, samples, 2)[0] == 30.0
    assert startup_seconds(hw, samples[:2], 2)[0] == 6.0  # none alike: every job on this hardware
    assert startup_seconds(hw, [], 1)[0] == hw.startup_overhead_s


def test_time_per_step_is_fitted_from_finished_jobs():
    from backend.training.calibration import step_overhead

    hw, model = get_hardware("cpu-local"), get_model(MISTRAL)
    # jobs that took 1 ms per token and 0.5 s per step (one worker, this model)
    samples = [CalibrationSample("cpu-local", model.params, 1, 0.0, tokens=t, steps=n,
                                 training_s=t / 1000 + 0.5 * n)
               for t, n in ((10_000, 10), (3_000, 40), (20_000, 5))]
    per_step, tps, notes = step_overhead(hw, model, 1, samples)
    assert per_step == pytest.approx(0.5) and tps == pytest.approx(1000)
    assert "0.500 s per step" in notes[0]
    assert step_overhead(hw, model, 1, samples[:2]) == (0.0, None, [])  # too few jobs
    est = run(cfg(num_epochs=1), hw=hw, calibration=samples)
    assert est.breakdown_s["training"] == pytest.approx(est.tokens_to_train / 1000
                                                         + 0.5 * est.total_steps)


def test_dpo_estimate_adds_the_reference_passes():
    from backend.training.estimation import DPO_EVAL_FACTOR, DPO_TRAIN_FACTOR

    sft, dpo = run(cfg()), run(cfg(method="dpo"))
    assert dpo.tokens_to_train == sft.tokens_to_train  # chosen + rejected are in the token counts
    assert dpo.breakdown_s["training"] == pytest.approx(sft.breakdown_s["training"] * DPO_TRAIN_FACTOR)
    assert dpo.breakdown_s["evaluation"] == pytest.approx(sft.breakdown_s["evaluation"] * DPO_EVAL_FACTOR)
    assert any(a.startswith("DPO:") for a in dpo.assumptions)
    assert not any(a.startswith("DPO:") for a in sft.assumptions)
