"""Acceptance on the real SmolLM2-135M-Instruct (marker ``real_model``): the merged model's logits
equal PEFT's (≤ 1e-4, fp32) with identical greedy answers on 3 held-out prompts; the f16 GGUF,
run by llama.cpp itself (``llama-cpp-python``; skipped when it is not installed), gives the merged
model's first 32 greedy tokens on the same prompts; transformers' GGUF loader reloads it with logits
close to the merged model's (measured max abs diff 0.047 on logits of magnitude ~20: f16 weights)."""
from __future__ import annotations

import time

import pytest

from backend.exports.build import build_export
from tests.backend.exports.helpers import (
    greedy,
    llama_cpp_greedy,
    logits,
    make_adapter,
    peft_model,
    prompt_ids,
)

pytestmark = pytest.mark.real_model
INFO = {"name": "SmolLM2 trips", "version": "v1", "base_model": "HuggingFaceTB/SmolLM2-135M-Instruct",
        "lora_rank": 8, "quality": {}}
GGUF_RELOAD_TOLERANCE = 0.25  # f16 weights; measured 0.047 (see the module docstring)


@pytest.fixture(scope="module")
def smollm_export(smollm_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("smollm-export")
    adapter = make_adapter(smollm_dir, root / "adapter", scale=0.01)
    seconds = {}
    for fmt in ("merged", "gguf"):
        start = time.perf_counter()
        build_export(fmt, "f16" if fmt == "gguf" else None, smollm_dir, adapter, root / fmt, INFO)
        seconds[fmt] = time.perf_counter() - start
    print(f"\nexport seconds {seconds}")
    return smollm_dir, adapter, root, seconds


@pytest.fixture(scope="module")
def merged(smollm_export):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    _, _, root, _ = smollm_export
    model = AutoModelForCausalLM.from_pretrained(root / "merged", local_files_only=True).eval()
    return model, prompt_ids(AutoTokenizer.from_pretrained(root / "merged"))


def test_merged_equals_peft(smollm_export, merged):
    base, adapter, _, _ = smollm_export
    model, prompts = merged
    peft = peft_model(base, adapter)
    worst = 0.0
    for ids in prompts:
        diff = (logits(model, ids) - logits(peft, ids)).abs().max().item()
        worst = max(worst, diff)
        assert greedy(model, ids, 32) == greedy(peft, ids, 32)
    print(f"\nmerged vs PEFT max abs logit diff {worst:.2e}")
    assert worst <= 1e-4


def test_llama_cpp_runs_the_f16_gguf_like_the_merged_model(smollm_export, merged):
    llama_cpp = pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed")
    _, _, root, _ = smollm_export
    model, prompts = merged
    (path,) = (root / "gguf").glob("*.gguf")
    llm = llama_cpp.Llama(model_path=str(path), n_ctx=512, logits_all=True, verbose=False,
                          n_threads=2)
    try:
        for ids in prompts:
            assert llama_cpp_greedy(llm, ids, 32) == greedy(model, ids, 32)
    finally:
        llm.close()


def test_transformers_reloads_the_gguf(smollm_export, merged):
    import torch
    from transformers import AutoModelForCausalLM

    _, _, root, _ = smollm_export
    model, prompts = merged
    (path,) = (root / "gguf").glob("*.gguf")
    reloaded = AutoModelForCausalLM.from_pretrained(root / "gguf", gguf_file=path.name,
                                                    dtype=torch.float32).eval()
    worst = max((logits(reloaded, ids) - logits(model, ids)).abs().max().item() for ids in prompts)
    print(f"\nGGUF reload vs merged max abs logit diff {worst:.4f}")
    assert worst <= GGUF_RELOAD_TOLERANCE
