"""The tiny offline base model (backend/base_models/tiny_model.py) and base-model resolution
(backend/base_models/registry.py)."""
from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

from backend.base_models.registry import available_base_models, model_param_count, resolve_base_model
from backend.base_models.tiny_model import (
    MARKER_FILE,
    TINY_MODEL_ID,
    build_tiny_model,
    ensure_tiny_model,
    tiny_model_path,
)
from backend.core.errors import InvalidInput
from tests.fixtures.paths import REPO

ROOT = REPO
TURNS = [
    {"role": "system", "content": "You are a patient assistant."},
    {"role": "user", "content": "How long should I boil an egg?"},
    {"role": "assistant", "content": "About six minutes for a soft yolk."},
    {"role": "user", "content": "And a firm one?"},
    {"role": "assistant", "content": "Ten to twelve minutes."},
]


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory) -> Path:
    return ensure_tiny_model(tmp_path_factory.mktemp("home"))


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_builds_offline_and_loads_with_auto_classes(tiny_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_dir, local_files_only=True)
    model = AutoModelForCausalLM.from_pretrained(tiny_dir, local_files_only=True)
    assert 2000 <= len(tokenizer) <= 4000
    assert model.config.model_type == "llama"
    assert model.config.num_hidden_layers == 2 and model.config.num_attention_heads == 4
    assert 64 <= model.config.hidden_size <= 128
    assert model.config.max_position_embeddings == 2048
    assert model.config.vocab_size == len(tokenizer)
    assert (tiny_dir / "model.safetensors").is_file()
    marker = json.loads((tiny_dir / MARKER_FILE).read_text())
    assert marker["name"] == TINY_MODEL_ID
    assert marker["parameters"] == sum(p.numel() for p in model.parameters())
    for token in ("<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>",
                  "<|end_header_id|>", "<|eot_id|>", "<|pad|>"):
        assert token in tokenizer.all_special_tokens or token in tokenizer.get_vocab()
        assert len(tokenizer.encode(token, add_special_tokens=False)) == 1
    assert tokenizer.pad_token == "<|pad|>" and tokenizer.eos_token == "<|eot_id|>"


def test_generates_from_a_generation_prompt(tiny_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_dir)
    prompt = tokenizer.apply_chat_template(TURNS[:2], tokenize=False, add_generation_prompt=True)
    assert prompt.endswith("<|start_header_id|>assistant<|end_header_id|>\n\n")
    assert prompt.startswith("<|begin_of_text|><|start_header_id|>system<|end_header_id|>")
    ids = tokenizer.apply_chat_template(TURNS[:2], add_generation_prompt=True,
                                        return_tensors="pt", return_dict=True)
    out = model.generate(**ids, max_new_tokens=5, do_sample=False)
    assert out.shape[1] > ids["input_ids"].shape[1]


def test_chat_template_masks_exactly_assistant_content_and_eot(tiny_dir):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_dir)
    out = tokenizer.apply_chat_template(TURNS, tokenize=True, return_dict=True,
                                        return_assistant_tokens_mask=True)
    ids, mask = out["input_ids"], out["assistant_masks"]
    assert len(ids) == len(mask)
    trained = tokenizer.decode([t for t, m in zip(ids, mask) if m])
    assert trained == ("About six minutes for a soft yolk.<|eot_id|>"
                       "Ten to twelve minutes.<|eot_id|>")
    context = tokenizer.decode([t for t, m in zip(ids, mask) if not m])
    assert "assistant<|end_header_id|>" in context and "boil an egg" in context
    # every masked run ends with <|eot_id|> and starts right after an assistant header
    eot = tokenizer.convert_tokens_to_ids("<|eot_id|>")
    ends = [i for i in range(len(ids)) if mask[i] and (i + 1 == len(ids) or not mask[i + 1])]
    assert [ids[i] for i in ends] == [eot, eot]


def test_build_is_deterministic(tmp_path):
    a = build_tiny_model(tmp_path / "a", seed=3)
    b = build_tiny_model(tmp_path / "b", seed=3)
    c = build_tiny_model(tmp_path / "c", seed=4)
    for name in ("tokenizer.json", "model.safetensors", "config.json", "chat_template.jinja"):
        assert _digest(a / name) == _digest(b / name), name
    assert _digest(a / "tokenizer.json") == _digest(c / "tokenizer.json")
    assert _digest(a / "model.safetensors") != _digest(c / "model.safetensors")


def test_ensure_builds_once_and_repairs_incomplete_builds(tmp_path):
    path = ensure_tiny_model(tmp_path)
    assert path == tiny_model_path(tmp_path) == tmp_path / "models" / "tiny-llama"
    stamp = (path / "model.safetensors").stat().st_mtime_ns
    assert ensure_tiny_model(tmp_path) == path
    assert (path / "model.safetensors").stat().st_mtime_ns == stamp  # not rebuilt
    (path / "model.safetensors").unlink()  # a marker without weights is not a model
    assert ensure_tiny_model(tmp_path) == path
    assert (path / "model.safetensors").is_file()
    assert [p.name for p in path.parent.iterdir()] == ["tiny-llama"]  # no temp leftovers


@pytest.mark.slow
def test_two_processes_racing_both_get_a_complete_model(tmp_path):
    code = ("import sys; from backend.base_models.tiny_model import ensure_tiny_model; "
            "print(ensure_tiny_model(sys.argv[1]))")
    procs = [subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], cwd=ROOT,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    outs = [p.communicate(timeout=180) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [err[-2000:] for _, err in outs]
    assert {out.strip() for out, _ in outs} == {str(tiny_model_path(tmp_path))}
    path = tiny_model_path(tmp_path)
    assert {"config.json", "model.safetensors", "tokenizer.json", MARKER_FILE} <= {
        p.name for p in path.iterdir()}
    assert [p.name for p in path.parent.iterdir()] == ["tiny-llama"]


# ----- base models -------------------------------------------------------------------------------
def test_resolve_tiny_model_builds_it_under_home(tmp_path):
    resolved = resolve_base_model(TINY_MODEL_ID, tmp_path)
    assert resolved == str(tiny_model_path(tmp_path))
    assert (Path(resolved) / "config.json").is_file()


def test_resolve_local_folder_is_itself(tiny_dir, tmp_path):
    assert resolve_base_model(str(tiny_dir), tmp_path) == str(tiny_dir.resolve())
    empty = tmp_path / "not-a-model"
    empty.mkdir()
    with pytest.raises(InvalidInput) as err:
        resolve_base_model(str(empty), tmp_path)
    assert err.value.code == "base_model_unavailable"
    assert "config.json" in err.value.message


def test_unknown_model_is_refused_without_download(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))  # an empty Hugging Face cache
    with pytest.raises(InvalidInput) as err:
        resolve_base_model("mistralai/Mistral-7B-v0.1", tmp_path)
    assert err.value.code == "base_model_unavailable"
    assert "not on this machine" in err.value.message
    assert "never downloads" in err.value.message
    assert TINY_MODEL_ID in err.value.message
    assert available_base_models()[0] == TINY_MODEL_ID


def test_model_param_count_matches_the_loaded_model(tiny_dir):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_dir)
    assert model_param_count(str(tiny_dir)) == sum(p.numel() for p in model.parameters())
    with pytest.raises(InvalidInput):
        model_param_count(str(tiny_dir / "missing"))
