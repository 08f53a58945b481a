"""Gradient checkpointing in the memory model, the decision to turn it on, and the memory
prediction held against a measured peak (synthetic peaks: no GPU in CI)."""
from __future__ import annotations

import pytest

from backend.base_models.specs import get_model
from backend.training.catalogs import get_hardware
from backend.training.estimation import GIB, checkpointing_decision, estimate, vram
from backend.training.memory_check import last_memory_check, memory_check
from tests.backend.training.test_estimation import MISTRAL, TINY, cfg, stats

LORA = 1_000_000


@pytest.mark.parametrize("hw", ["A100-80GB", "cpu-local"])
def test_checkpointing_keeps_one_hidden_state_per_layer_boundary(hw):
    spec, hardware = get_model(MISTRAL), get_hardware(hw)
    off = vram(cfg(batch_size=2), spec, hardware, LORA, 1000, False)
    on = vram(cfg(batch_size=2), spec, hardware, LORA, 1000, True)
    d = hardware.dtype_bytes
    b, s, h, layers, k = 2, 1000, 4096, 32, 17 * d
    shared = b * 32 * s * s * d + b * s * 32000 * 4  # attention scores + logits: unchanged
    assert off.activations_gb == pytest.approx((b * s * h * layers * k + shared) / GIB)
    assert on.activations_gb == pytest.approx((b * s * h * (layers * d + k) + shared) / GIB)
    assert on.activations_gb < off.activations_gb / 5
    assert (on.gradient_checkpointing, off.gradient_checkpointing) == (True, False)
    for mem in (on, off):
        assert mem.base_weights_gb == off.base_weights_gb
        assert mem.allocated_gb == pytest.approx(mem.base_weights_gb + mem.lora_and_optimizer_gb
                                                 + mem.activations_gb)
        assert mem.total_gb == pytest.approx(mem.allocated_gb + mem.overhead_gb)


def test_the_config_value_is_what_vram_uses_when_not_told():
    spec, hw = get_model(MISTRAL), get_hardware("A100-80GB")
    assert vram(cfg(gradient_checkpointing=True), spec, hw, LORA, 1000).gradient_checkpointing
    assert not vram(cfg(), spec, hw, LORA, 1000).gradient_checkpointing  # none = off here


# (model, hardware, batch, seq, setting) → decided
@pytest.mark.parametrize("model,hw,batch,seq,setting,decided", [
    (MISTRAL, "A100-80GB", 1, 1024, None, False),     # fits without it: off
    (MISTRAL, "A100-80GB", 16, 4096, None, True),     # would not fit: on
    (MISTRAL, "A6000-48GB", 8, 2048, None, True),
    (MISTRAL, "A100-80GB", 16, 4096, False, False),   # the config's value wins
    (MISTRAL, "A100-80GB", 1, 1024, True, True),
    (TINY, "cpu-local", 512, 8192, None, False),      # never on by itself on CPU
])
def test_checkpointing_turns_on_for_gpu_runs_that_would_not_fit(model, hw, batch, seq, setting,
                                                                 decided):
    config = cfg(model, batch_size=batch, max_seq_length=seq, gradient_checkpointing=setting)
    spec, hardware = get_model(model), get_hardware(hw)
    assert checkpointing_decision(config, spec, hardware, LORA, seq) is decided
    est = estimate(stats(p=(500, 1500, 3500, 8192)), config, hardware, 1, spec)
    assert est.vram.gradient_checkpointing is decided
    assert any(f"gradient checkpointing {'on' if decided else 'off'}" in a
               for a in est.assumptions)


def test_the_estimates_memory_figure_changes_with_checkpointing():
    spec, hw = get_model(MISTRAL), get_hardware("A100-80GB")
    on = estimate(stats(), cfg(gradient_checkpointing=True), hw, 1, spec)
    off = estimate(stats(), cfg(gradient_checkpointing=False), hw, 1, spec)
    assert on.vram.total_gb < off.vram.total_gb
    assert on.to_dict()["vram"]["gradient_checkpointing"] is True


@pytest.mark.parametrize("predicted,measured,error", [
    (30.0, 33.0, -9.0909), (20.0, 16.0, 25.0), (10.0, 10.0, 0.0)])
def test_memory_check_is_signed_percent_off_the_measured_peak(predicted, measured, error):
    check = memory_check("A100-80GB", predicted, measured)
    assert check.error_percent == pytest.approx(error, abs=1e-3)
    assert check.to_dict()["measured_gb"] == measured


@pytest.mark.parametrize("predicted,measured", [(None, 10.0), (10.0, None), (10.0, 0.0)])
def test_no_memory_check_without_both_figures(predicted, measured):
    assert memory_check("A100-80GB", predicted, measured) is None


def test_last_memory_check_takes_the_newest_job_on_that_hardware_with_a_peak():
    summaries = [  # newest first, as backend.jobs.estimates reads them
        {"hardware": "H100-80GB", "predicted_allocated_gb": 40.0, "gpu_peak_allocated_gb": 38.0},
        {"hardware": "A100-80GB", "predicted_allocated_gb": 30.0},  # CPU-era job: no peak
        {"hardware": "A100-80GB", "predicted_allocated_gb": 30.0, "gpu_peak_allocated_gb": 33.0},
        {"hardware": "A100-80GB", "predicted_allocated_gb": 20.0, "gpu_peak_allocated_gb": 10.0},
        None,
    ]
    check = last_memory_check("A100-80GB", summaries)
    assert (check.predicted_gb, check.measured_gb) == (30.0, 33.0)
    assert last_memory_check("L4-24GB", summaries) is None


def test_a_run_that_does_not_fit_says_what_would_help():
    spec, hw = get_model(MISTRAL), get_hardware("A100-80GB")
    off = estimate(stats(p=(500, 1500, 3500, 8192)),
                   cfg(batch_size=16, max_seq_length=4096, gradient_checkpointing=False), hw, 1,
                   spec)
    assert any("turn on gradient_checkpointing" in w for w in off.warnings)
    huge = estimate(stats(p=(500, 1500, 3500, 8192)),
                    cfg(batch_size=512, max_seq_length=8192), hw, 1, spec)
    assert huge.vram.gradient_checkpointing and not huge.vram.fits  # auto: on, still too big
    assert not any("turn on gradient_checkpointing" in w for w in huge.warnings)
    assert any("needs ~" in w for w in huge.warnings)


@pytest.mark.parametrize("item,value", [("gradient_checkpointing=true", True),
                                        ("gradient_checkpointing=false", False),
                                        ("gradient_checkpointing=none", None)])
def test_the_setting_from_the_command_line(item, value):
    from backend.training.config import apply_overrides

    assert apply_overrides(cfg(), [item]).gradient_checkpointing is value
