"""The export core on the tiny model: merged logits equal PEFT's, the GGUF holds exactly the merged
weights (as f16 / q8_0) and its tokenizer and template, unsupported models are refused before any
work, the Modelfile renders conversations as the chat template does, vLLM's adapter rules."""
from __future__ import annotations

import json
import re
import shutil

import pytest
import torch

from backend.core.errors import InvalidInput
from backend.datasets.formats import Conversation
from backend.exports.build import build_export, check_request
from backend.exports.modelfile import TEMPLATES, render_modelfile, template_family, training_system_prompt
from backend.exports.vllm import serve_command, vllm_problems
from tests.backend.exports.helpers import greedy, logits, make_adapter, peft_model, prompt_ids

INFO = {"name": "Trip adapter", "version": "v1", "base_model": "brightrun/tiny-llama",
        "dataset": "trips", "preset": "quick", "lora_rank": 8,
        "quality": {"final_validation_loss": 1.5, "convergence_quality": "good"}}


@pytest.fixture(scope="module")
def tiny_export(tiny_model_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny-export")
    adapter = make_adapter(tiny_model_dir, root / "adapter", scale=0.2)
    out = {fmt: root / fmt for fmt in ("merged", "gguf", "q8", "ollama")}
    build_export("merged", None, tiny_model_dir, adapter, out["merged"], INFO)
    build_export("gguf", "f16", tiny_model_dir, adapter, out["gguf"], INFO)
    build_export("gguf", "q8_0", tiny_model_dir, adapter, out["q8"], INFO)
    build_export("ollama", None, tiny_model_dir, adapter, out["ollama"], INFO,
                 system_prompt="You plan trips.")
    return tiny_model_dir, adapter, out


def test_merged_logits_equal_peft_and_greedy_answers_identical(tiny_export):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    base, adapter, out = tiny_export
    names = {p.name for p in out["merged"].iterdir()}
    assert {"model.safetensors", "config.json", "generation_config.json", "tokenizer.json",
            "chat_template.jinja", "README.md"} <= names
    assert not any(n.startswith("adapter_") for n in names)
    card = (out["merged"] / "README.md").read_text()
    assert "brightrun/tiny-llama" in card and "trips" in card and "1.5000" in card
    assert "vllm serve brightrun/tiny-llama --enable-lora --lora-modules trip-adapter=" in card
    peft = peft_model(base, adapter)
    merged = AutoModelForCausalLM.from_pretrained(out["merged"], local_files_only=True).eval()
    plain = AutoModelForCausalLM.from_pretrained(base, local_files_only=True).eval()
    tok = AutoTokenizer.from_pretrained(out["merged"])
    for ids in prompt_ids(tok):
        ref = logits(peft, ids)
        assert (logits(merged, ids) - ref).abs().max().item() <= 1e-4
        assert (logits(plain, ids) - ref).abs().max().item() > 1e-2  # the adapter matters
        assert greedy(merged, ids, 16) == greedy(peft, ids, 16)


@pytest.mark.parametrize("folder,qtype", [("gguf", "F16"), ("q8", "Q8_0")])
def test_gguf_holds_the_merged_weights_tokenizer_and_template(tiny_export, folder, qtype):
    import gguf
    from gguf.quants import quantize
    from transformers import AutoModelForCausalLM, AutoTokenizer

    _, _, out = tiny_export
    (path,) = out[folder].glob("*.gguf")
    assert path.name == f"trip-adapter-v1-{'f16' if folder == 'gguf' else 'q8_0'}.gguf"
    reader = gguf.GGUFReader(str(path))
    fields = {k: reader.fields[k].contents() for k in (
        "general.architecture", "tokenizer.ggml.model", "tokenizer.ggml.pre",
        "tokenizer.chat_template", "tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id",
        "tokenizer.ggml.add_bos_token", "llama.block_count")}
    tok = AutoTokenizer.from_pretrained(out["merged"])
    assert fields["general.architecture"] == "llama" and fields["llama.block_count"] == 2
    assert fields["tokenizer.ggml.model"] == "gpt2" and fields["tokenizer.ggml.pre"] == "gpt-2"
    assert fields["tokenizer.ggml.bos_token_id"] == tok.bos_token_id
    assert fields["tokenizer.ggml.eos_token_id"] == tok.eos_token_id
    assert fields["tokenizer.ggml.add_bos_token"] is True
    assert "{%- generation" not in fields["tokenizer.chat_template"]
    assert "<|start_header_id|>" in fields["tokenizer.chat_template"]
    tensors = {t.name: t for t in reader.tensors}
    assert tensors["blk.0.attn_q.weight"].tensor_type.name == qtype
    assert tensors["blk.0.attn_norm.weight"].tensor_type.name == "F32"
    assert "output.weight" not in tensors  # tied embeddings: llama.cpp reuses token_embd
    # transformers' GGUF loader gives back exactly the merged weights as stored (f16 / q8_0)
    merged = AutoModelForCausalLM.from_pretrained(out["merged"], local_files_only=True).eval()
    reloaded = AutoModelForCausalLM.from_pretrained(out[folder], gguf_file=path.name,
                                                    dtype=torch.float32).eval()
    q = gguf.GGMLQuantizationType[qtype]
    with torch.no_grad():
        for name, p in merged.named_parameters():
            if p.ndim == 2:
                p.copy_(torch.from_numpy(gguf.quants.dequantize(quantize(p.numpy(), q), q)))
    for ids in prompt_ids(tok):
        assert (logits(reloaded, ids) - logits(merged, ids)).abs().max().item() <= 1e-4


def test_ollama_modelfile_renders_conversations_as_the_chat_template(tiny_export):
    _, _, out = tiny_export
    assert sorted(p.name for p in out["ollama"].iterdir()) == [
        "Modelfile", "README.md", "trip-adapter-v1-f16.gguf"]
    text = (out["ollama"] / "Modelfile").read_text()
    assert text.startswith("FROM ./trip-adapter-v1-f16.gguf\n")
    assert 'PARAMETER stop "<|eot_id|>"' in text and 'SYSTEM """You plan trips."""' in text
    assert "ollama create trip-adapter-v1 -f Modelfile" in (out["ollama"] / "README.md").read_text()


def _go_render(template: str, messages: list[dict]) -> str:
    """The subset of Go templates the Modelfile uses: one ``range .Messages`` block."""
    body = re.search(r"\{\{- range \.Messages \}\}(.*?)\{\{ end \}\}", template, re.S)
    parts = [body.group(1).replace("{{ .Role }}", m["role"]).replace("{{ .Content }}",
                                                                     m["content"])
             for m in messages]
    return "".join(parts) + template[body.end():]


@pytest.mark.parametrize("family", ["llama3", "chatml"])
def test_modelfile_template_matches_the_hf_template(tiny_model_dir, smollm_tokenizer_dir, family):
    from transformers import AutoTokenizer

    folder = tiny_model_dir if family == "llama3" else smollm_tokenizer_dir
    tok = AutoTokenizer.from_pretrained(folder)
    assert template_family(tok.chat_template) == family
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
                {"role": "assistant", "content": "Hello."}, {"role": "user", "content": "Bye"}]
    hf = tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    hf = hf.removeprefix(tok.bos_token or "") if family == "llama3" else hf
    assert _go_render(TEMPLATES[family][0], messages) == hf


@pytest.fixture(scope="module")
def smollm_tokenizer_dir(tmp_path_factory):
    """A ChatML tokenizer folder: SmolLM2's template on the tiny tokenizer (no real model)."""
    from backend.base_models.tiny_model import ensure_tiny_model

    folder = tmp_path_factory.mktemp("chatml")
    src = ensure_tiny_model(tmp_path_factory.mktemp("home"))
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(src / name, folder / name)
    (folder / "chat_template.jinja").write_text(
        "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + "
        "message['content'] + '<|im_end|>' + '\n'}}{% endfor %}"
        "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")
    return folder


def test_unknown_template_refused():
    with pytest.raises(InvalidInput, match="ChatML and Llama-3"):
        render_modelfile("m.gguf", "{{ messages }}")


def test_unsupported_architecture_refused_before_any_work(tiny_model_dir, tmp_path):
    base = tmp_path / "gpt2-like"
    shutil.copytree(tiny_model_dir, base)
    cfg = json.loads((base / "config.json").read_text())
    (base / "config.json").write_text(json.dumps({**cfg, "model_type": "gpt2"}))
    for fmt in ("gguf", "ollama"):
        with pytest.raises(InvalidInput) as err:
            build_export(fmt, "f16", base, tmp_path / "no-adapter", tmp_path / fmt, INFO)
        assert err.value.code == "unsupported_architecture" and "\n" not in str(err.value)
        assert not (tmp_path / fmt).exists()
    with pytest.raises(InvalidInput, match="unknown GGUF quantisation"):
        check_request("gguf", "q4_k", tiny_model_dir)
    with pytest.raises(InvalidInput, match="unknown export format"):
        check_request("onnx", None, tiny_model_dir)
    assert check_request("ollama", None, tiny_model_dir) == "f16"


def test_vllm_rules(tiny_export, tmp_path):
    _, adapter, _ = tiny_export
    assert vllm_problems(adapter) == []
    bad = tmp_path / "bad"
    shutil.copytree(adapter, bad)
    cfg = json.loads((bad / "adapter_config.json").read_text())
    (bad / "adapter_config.json").write_text(json.dumps(
        {**cfg, "use_dora": True, "bias": "all", "modules_to_save": ["lm_head"],
         "target_modules": ["q_proj", "embed_tokens"]}))
    assert len(vllm_problems(bad)) == 4
    assert vllm_problems(tmp_path) == ["missing adapter_config.json",
                                       "missing adapter_model.safetensors"]
    assert serve_command("B", "a", 8) == "vllm serve B --enable-lora --lora-modules a=path/to/adapter"
    assert serve_command("B", "a", 24).endswith("--max-lora-rank 32")


def _conv(*turns: tuple[str, str]) -> Conversation:
    return Conversation("c", [{"role": r, "content": c} for r, c in turns])


def test_training_system_prompt_is_the_most_common_first_system_turn():
    plan, brief = ("system", "You plan trips."), ("system", "Be brief.")
    ask, say = ("user", "Hi"), ("assistant", "Hello")
    assert training_system_prompt([_conv(brief, ask, say), _conv(plan, ask, say),
                                   _conv(plan, ask, say), _conv(ask, say)]) == "You plan trips."
    assert training_system_prompt([_conv(brief, ask), _conv(plan, ask)]) == "Be brief."  # first
    assert training_system_prompt([_conv(ask, say), _conv(("user", "x"), brief)]) is None
    assert training_system_prompt([_conv(("system", 'say """'), ask)]) is None  # not quotable
    assert training_system_prompt([]) is None
