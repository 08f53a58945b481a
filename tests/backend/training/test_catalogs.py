"""Catalog data files (presets, hardware, models): they load, every entry validates, the reference
values are kept, lookups fail with the valid ids, broken files are refused."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from backend.base_models.specs import (
    get_model,
    list_models,
    load_models,
    model_spec_from_hf_config,
    resolve_model,
)
from backend.core.catalog_files import CatalogError
from backend.core.errors import InvalidInput, NotFound
from backend.training import catalogs
from backend.training.catalogs import (
    get_hardware,
    get_preset,
    list_hardware,
    list_presets,
    load_hardware,
    load_presets,
)
from backend.training.config import TrainingConfig

# Tuned for LoRA on real instruct models (SmolLM2-135M-Instruct + the demo data; docs/training-config.md)
ATTENTION = ["q_proj", "k_proj", "v_proj", "o_proj"]
ALL_LINEAR = ATTENTION + ["gate_proj", "up_proj", "down_proj"]
TUNED_PRESETS = {
    "conservative": dict(learning_rate=0.0005, batch_size=8, num_epochs=3, lora_rank=8, lora_alpha=16,
                         lora_dropout=0.05, warmup_ratio=0.1, weight_decay=0.0, target_modules=ALL_LINEAR),
    "balanced": dict(learning_rate=0.001, batch_size=8, num_epochs=5, lora_rank=16, lora_alpha=32,
                     lora_dropout=0.05, warmup_ratio=0.1, weight_decay=0.0, target_modules=ALL_LINEAR),
    "aggressive": dict(learning_rate=0.001, batch_size=8, num_epochs=8, lora_rank=32, lora_alpha=64,
                       lora_dropout=0.05, warmup_ratio=0.1, weight_decay=0.0, target_modules=ALL_LINEAR),
    "custom": dict(learning_rate=0.001, batch_size=8, num_epochs=5, lora_rank=16, lora_alpha=32,
                   lora_dropout=0.05, target_modules=ALL_LINEAR),
}
# reference GPU_OPTIONS
REFERENCE_GPUS = [("A6000-48GB", 48, 1.50), ("A100-80GB", 80, 3.00), ("H100-80GB", 80, 5.00)]


def test_all_catalog_files_load():
    assert len(load_presets().presets) == 4
    assert len(load_hardware().hardware) >= 7
    assert len(load_models().models) >= 6


@pytest.mark.parametrize("preset_id,values", list(TUNED_PRESETS.items()))
def test_presets_keep_their_tuned_values(preset_id, values):
    preset = get_preset(preset_id)
    stored = dict(preset.values)
    assert stored.pop("base_model", "missing") is None  # null = configured default
    assert stored == values
    assert len(preset.description) > 20
    config = TrainingConfig(base_model="x", **values)
    assert all(getattr(config, k) == v for k, v in values.items())


@pytest.mark.parametrize("preset_id", list(TUNED_PRESETS))
@pytest.mark.parametrize("conversations", [1, 4, 9, 40, 1000, 100_000])
def test_no_preset_warns_or_warms_up_longer_than_the_run(preset_id, conversations):
    config = TrainingConfig(base_model="x", **TUNED_PRESETS[preset_id])
    total = config.total_steps(conversations)
    assert config.warnings(total_steps=total, model_max_length=8192) == []
    assert config.warmup_for(total) < total or total == 1 and config.warmup_for(total) == 0


def test_preset_catalog_names_the_reference_base_model():
    assert load_presets().reference_base_model == "smollm2-135m-instruct"
    assert [p.id for p in list_presets()] == ["conservative", "balanced", "aggressive", "custom"]


@pytest.mark.parametrize("hw_id,memory,price", REFERENCE_GPUS)
def test_reference_gpus_keep_their_prices(hw_id, memory, price):
    entry = get_hardware(hw_id)
    assert (entry.kind, entry.memory_gb, entry.cost_per_gpu_hour) == ("gpu", memory, price)
    assert "original specification" in entry.price_source


@pytest.mark.parametrize("hw_id,memory", [("L4-24GB", 24), ("A10G-24GB", 24), ("L40S-48GB", 48)])
def test_extra_gpus_state_their_price_assumption(hw_id, memory):
    entry = get_hardware(hw_id)
    assert entry.memory_gb == memory and entry.cost_per_gpu_hour > 0
    assert "assumption" in entry.price_source


@pytest.mark.parametrize("entry", list_hardware(), ids=lambda e: e.id)
def test_every_hardware_entry_is_complete(entry):
    assert entry.throughput_source.startswith(("assumption", "measured"))
    assert entry.pricing.source
    assert 0 < entry.scaling_efficiency_per_doubling <= 1
    assert entry.dtype_bytes == (4 if entry.compute_dtype == "fp32" else 2)


def test_cpu_local_is_free_including_storage_and_transfer():
    cpu = get_hardware("cpu-local")
    assert (cpu.kind, cpu.cost_per_gpu_hour) == ("cpu", 0.0)
    assert (cpu.pricing.storage_per_gb_month, cpu.pricing.data_transfer_per_gb) == (0.0, 0.0)
    assert get_hardware("A100-80GB").pricing == load_hardware().pricing  # inherited from the file


def test_catalog_wide_prices():
    assert catalogs.storage_price_per_gb_month() == load_hardware().pricing.storage_per_gb_month > 0
    assert catalogs.data_transfer_price_per_gb() > 0


@pytest.mark.parametrize("lookup,bad,valid", [
    (get_hardware, "B200-192GB", "A100-80GB, H100-80GB"),
    (get_preset, "turbo", "conservative, balanced, aggressive, custom"),
    (get_model, "acme/unknown-13B", "mistralai/Mistral-7B-v0.1"),
])
def test_unknown_ids_list_the_valid_ones(lookup, bad, valid):
    with pytest.raises(NotFound) as info:
        lookup(bad)
    assert bad in info.value.message and valid in info.value.message


@pytest.mark.parametrize("spec", list_models(), ids=lambda m: m.id)
def test_model_params_match_their_architecture(spec):
    # biases (Qwen2 has q/k/v biases) are not in the shape formula: allow 0.1 %
    assert spec.architecture_params() == pytest.approx(spec.params, rel=1e-3)
    assert spec.max_context >= 2048


@pytest.mark.parametrize("model_id,params", [
    ("mistralai/Mistral-7B-v0.1", 7.24e9), ("meta-llama/Llama-3.1-8B", 8.03e9),
    ("Qwen/Qwen2.5-0.5B", 0.494e9), ("Qwen/Qwen2.5-1.5B", 1.54e9), ("Qwen/Qwen2.5-7B", 7.62e9),
    ("brightrun/tiny-llama", 264_768),
])
def test_known_model_sizes(model_id, params):
    assert get_model(model_id).params == pytest.approx(params, rel=5e-3)


def test_tiny_model_entry_matches_its_builder():
    from backend.base_models.tiny_model import MODEL_SHAPE

    spec = get_model("brightrun/tiny-llama")
    assert (spec.hidden_size, spec.intermediate_size, spec.num_layers, spec.num_attention_heads,
            spec.num_key_value_heads, spec.max_context, spec.tie_word_embeddings) == (
        MODEL_SHAPE["hidden_size"], MODEL_SHAPE["intermediate_size"],
        MODEL_SHAPE["num_hidden_layers"], MODEL_SHAPE["num_attention_heads"],
        MODEL_SHAPE["num_key_value_heads"], MODEL_SHAPE["max_position_embeddings"],
        MODEL_SHAPE["tie_word_embeddings"])


def test_tiny_model_entry_matches_the_built_model(tiny_model_dir):
    built = resolve_model("brightrun/tiny-llama", tiny_model_dir)
    entry = get_model("brightrun/tiny-llama")
    assert (built.params, built.vocab_size, built.hidden_size) == (
        entry.params, entry.vocab_size, entry.hidden_size)


LLAMA_CONFIG = {"hidden_size": 4096, "num_hidden_layers": 32, "num_attention_heads": 32,
                "num_key_value_heads": 8, "intermediate_size": 14336, "vocab_size": 32000,
                "max_position_embeddings": 32768}


@pytest.mark.parametrize("config,params,max_context", [
    (LLAMA_CONFIG, 7_241_732_096, 32768),
    ({**LLAMA_CONFIG, "vocab_size": 128256, "max_position_embeddings": 131072}, 8_030_261_248, 131072),
    ({k: v for k, v in LLAMA_CONFIG.items() if k != "num_key_value_heads"}, 7_241_732_096
     + 2 * 32 * 4096 * 3072, 32768),  # no GQA: k/v as wide as q
    ({k: v for k, v in LLAMA_CONFIG.items() if k != "max_position_embeddings"}, 7_241_732_096, 2048),
])
def test_model_spec_from_config(config, params, max_context):
    spec = model_spec_from_hf_config("local/model", config)
    assert (spec.params, spec.max_context) == (params, max_context)


def test_model_spec_from_config_names_missing_keys():
    with pytest.raises(InvalidInput, match="hidden_size, vocab_size"):
        model_spec_from_hf_config("m", {"num_hidden_layers": 2, "num_attention_heads": 2,
                                        "intermediate_size": 8})


def test_resolve_model(tmp_path):
    model_dir = tmp_path / "my-model"
    model_dir.mkdir()
    (model_dir / "config.json").write_text(json.dumps(LLAMA_CONFIG))
    assert resolve_model("mistralai/Mistral-7B-v0.1").source.startswith("config.json")
    assert resolve_model("acme/x", model_dir).params == 7_241_732_096
    assert resolve_model(str(model_dir)).params == 7_241_732_096  # the id is a local folder
    with pytest.raises(NotFound, match="unknown model size"):
        resolve_model("acme/unknown-13B")
    (model_dir / "config.json").write_text("{not json")
    with pytest.raises(InvalidInput, match="cannot read model config"):
        resolve_model("acme/x", model_dir)


def _write(tmp_path: Path, name: str, data) -> Path:
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return path


def _data(name: str) -> dict:
    return json.loads((catalogs.DATA_DIR / name).read_text())


def _broken_preset() -> dict:
    data = _data("presets.json")
    data["presets"][0]["values"]["lora_dropout"] = 1.5
    return data


def _duplicate_hardware() -> dict:
    data = _data("hardware.json")
    data["hardware"].append(data["hardware"][0])
    return data


def _hardware_without_price() -> dict:
    data = _data("hardware.json")
    del data["hardware"][0]["cost_per_gpu_hour"]
    return data


def _missing_preset() -> dict:
    data = _data("presets.json")
    data["presets"].pop()
    return data


@pytest.mark.parametrize("loader,name,make,fragment", [
    (load_presets, "p.json", lambda: "{not json", "cannot read"),
    (load_presets, "p.json", _broken_preset, "lora_dropout"),
    (load_presets, "p.json", _missing_preset, "presets must be exactly"),
    (load_hardware, "h.json", _duplicate_hardware, "duplicate hardware ids A6000-48GB"),
    (load_hardware, "h.json", _hardware_without_price, "cost_per_gpu_hour"),
    (load_models, "m.json", lambda: {"notes": "", "models": [{"id": "x"}]}, "params"),
])
def test_broken_catalogs_are_refused(tmp_path, loader, name, make, fragment):
    with pytest.raises(CatalogError, match=fragment):
        loader(_write(tmp_path, name, make()))


def test_storage_charge_has_one_definition_per_hardware():
    """The estimate and a completed job charge storage with the same price and unit (GiB)."""
    assert catalogs.storage_price_for("cpu-local") == 0.0  # local disk: free, as estimated
    assert catalogs.storage_price_for("A100-80GB") == get_hardware("A100-80GB").pricing \
        .storage_per_gb_month
    assert catalogs.storage_price_for("no-such-gpu") == catalogs.storage_price_per_gb_month()
    assert catalogs.storage_price_for(None) == catalogs.storage_price_per_gb_month()
    assert catalogs.storage_cost(2**30, 0.023) == pytest.approx(0.023)
    assert catalogs.storage_cost(2**30, 0.023, months=2) == pytest.approx(0.046)
    assert catalogs.storage_cost(-5, 0.023) == 0.0
