"""Write a llama-family Hugging Face folder (a merged export) as one GGUF file with the ``gguf``
package (llama.cpp's own Python writer): hyperparameters, the BPE tokenizer (tokens, types,
merges, special tokens, add-BOS) and the chat template in its metadata; tensors named through
``gguf.get_tensor_name_map`` and Q/K rows permuted as llama.cpp's ``convert_hf_to_gguf.py`` does.

Quantisations: ``f16`` (2-D weights f16, norms f32) and ``q8_0`` (2-D weights Q8_0). Anything
the writer does not support (another architecture, biases, rope scaling, a non-BPE tokenizer) is
refused by :func:`check_supported` before any work."""
from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Callable

from backend.core.errors import InvalidInput

QUANTS = ("f16", "q8_0")
SUPPORTED_ARCHITECTURES = ("llama",)
_GENERATION_TAG = re.compile(r"\{%-?\s*(end)?generation\s*-?%\}")
Progress = Callable[[float, str], None]


def _fail(message: str, code: str = "unsupported_architecture") -> InvalidInput:
    return InvalidInput(message, code=code)


def read_config(model_dir: str | os.PathLike) -> dict:
    """The folder's ``config.json``. Raises InvalidInput when there is none."""
    path = Path(model_dir) / "config.json"
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise _fail(f"{path} is not a readable model config: {exc}", "invalid_model") from None


def check_supported(config: dict, quant: str = "f16") -> None:
    """Refuse what :func:`write_gguf` cannot write faithfully. Raises InvalidInput (code
    ``unsupported_architecture`` or ``invalid_quant``) with a one-line reason."""
    if quant not in QUANTS:
        raise _fail(f"unknown GGUF quantisation {quant!r}; use one of {', '.join(QUANTS)}",
                    "invalid_quant")
    arch = config.get("model_type")
    if arch not in SUPPORTED_ARCHITECTURES:
        raise _fail(f"GGUF export supports the {', '.join(SUPPORTED_ARCHITECTURES)} family "
                    f"(SmolLM2, tiny-llama), not model type {arch!r}; export it as 'merged' instead")
    rope = config.get("rope_parameters") or config.get("rope_scaling") or {}
    if (rope.get("rope_type") or rope.get("type") or "default") != "default":
        raise _fail(f"GGUF export does not support rope scaling {rope.get('rope_type')!r}")
    if config.get("attention_bias") or config.get("mlp_bias"):
        raise _fail("GGUF export does not support llama models with attention or MLP biases")


def clean_chat_template(template: str | None) -> str | None:
    """The chat template without ``{% generation %}`` markers (a transformers training extension
    that llama.cpp's and Jinja's renderers do not know; the text rendered is the same)."""
    return _GENERATION_TAG.sub("", template) if template else template


def _pre_tokenizer_name(tokenizer_json: dict) -> str:
    """llama.cpp's ``tokenizer.ggml.pre`` for the tokenizer's pre-tokenizer."""
    pre = tokenizer_json.get("pre_tokenizer") or {}
    steps = pre.get("pretokenizers") if pre.get("type") == "Sequence" else [pre]
    kinds = [(s.get("type"), s.get("individual_digits"), s.get("use_regex")) for s in steps]
    if kinds == [("ByteLevel", None, True)]:
        return "gpt-2"
    if kinds == [("Digits", True, None), ("ByteLevel", None, True)]:
        return "smollm"
    raise _fail(f"GGUF export does not know the pre-tokenizer {pre!r}", "unsupported_tokenizer")


def _vocab(model_dir: Path, vocab_size: int):
    """(tokens, token types) as convert_hf_to_gguf's ``get_vocab_base`` builds them."""
    import gguf
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir, local_files_only=True)
    reverse = {i: t for t, i in tok.get_vocab().items()}
    added = tok.added_tokens_decoder
    tokens, types = [], []
    for i in range(vocab_size):
        if i not in reverse:
            tokens.append(f"[PAD{i}]")
            types.append(gguf.TokenType.UNUSED)
        elif i in added:
            tokens.append(reverse[i])
            types.append(gguf.TokenType.CONTROL if added[i].special else
                         gguf.TokenType.USER_DEFINED)
        else:
            tokens.append(reverse[i])
            types.append(gguf.TokenType.NORMAL)
    adds_bos = tok.bos_token_id is not None and \
        tok("a")["input_ids"][:1] == [tok.bos_token_id]
    return tokens, types, adds_bos


def _permute(w, n_head: int):
    """HF → GGUF row order of a Q or K projection (llama.cpp's ``LlamaModel.permute``)."""
    return (w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:])
            .swapaxes(1, 2).reshape(w.shape))


def _add_metadata(writer, config: dict, name: str, file_type: int) -> None:
    heads = config["num_attention_heads"]
    head_dim = config.get("head_dim") or config["hidden_size"] // heads
    rope = config.get("rope_parameters") or {}
    writer.add_name(name)
    writer.add_context_length(config["max_position_embeddings"])
    writer.add_embedding_length(config["hidden_size"])
    writer.add_block_count(config["num_hidden_layers"])
    writer.add_feed_forward_length(config["intermediate_size"])
    writer.add_head_count(heads)
    writer.add_head_count_kv(config.get("num_key_value_heads") or heads)
    writer.add_rope_dimension_count(head_dim)
    if head_dim != config["hidden_size"] // heads:
        writer.add_key_length(head_dim)
        writer.add_value_length(head_dim)
    writer.add_layer_norm_rms_eps(float(config["rms_norm_eps"]))
    writer.add_rope_freq_base(float(rope.get("rope_theta") or config.get("rope_theta") or 10000.0))
    writer.add_vocab_size(config["vocab_size"])
    writer.add_file_type(file_type)


def _add_tokenizer(writer, model_dir: Path, config: dict) -> None:
    import gguf

    tokenizer_json = json.loads((model_dir / "tokenizer.json").read_text(encoding="utf-8"))
    if (tokenizer_json.get("model") or {}).get("type") != "BPE":
        raise _fail("GGUF export supports byte-level BPE tokenizers only", "unsupported_tokenizer")
    tokens, types, adds_bos = _vocab(model_dir, config["vocab_size"])
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre(_pre_tokenizer_name(tokenizer_json))
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    special = gguf.SpecialVocab(model_dir, load_merges=True, n_vocab=len(tokens))
    special.chat_template = clean_chat_template(special.chat_template)
    special.add_special_token["bos"] = adds_bos
    special.add_to_gguf(writer, quiet=True)


def _tensors(model_dir: Path, config: dict):
    """(GGUF name, fp32 numpy array) of every weight, Q/K permuted, tied lm_head left out."""
    import gguf
    from safetensors import safe_open

    name_map = gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, config["num_hidden_layers"])
    heads = config["num_attention_heads"]
    kv_heads = config.get("num_key_value_heads") or heads
    files = sorted(model_dir.glob("*.safetensors"))
    if not files:
        raise _fail(f"{model_dir} holds no safetensors weights", "invalid_model")
    for file in files:
        with safe_open(str(file), framework="pt") as fh:
            for key in fh.keys():
                if key == "lm_head.weight" and config.get("tie_word_embeddings"):
                    continue
                if key.endswith("rotary_emb.inv_freq"):
                    continue
                name = name_map.get_name(key, try_suffixes=(".weight", ".bias"))
                if name is None:
                    raise _fail(f"GGUF export cannot map tensor {key!r}")
                data = fh.get_tensor(key).float().numpy()
                if key.endswith("q_proj.weight"):
                    data = _permute(data, heads)
                elif key.endswith("k_proj.weight"):
                    data = _permute(data, kv_heads)
                yield name, data


def write_gguf(model_dir: str | os.PathLike, out_path: str | os.PathLike, quant: str = "f16",
               name: str | None = None, progress: Progress | None = None) -> int:
    """Write the llama-family folder ``model_dir`` (safetensors + config + tokenizer) to
    ``out_path`` as GGUF; returns the file's size. Written to a temporary name beside it and renamed,
    so a failure leaves no file. Raises InvalidInput (unsupported model, see
    :func:`check_supported`), OSError."""
    import gguf
    from gguf.quants import quantize

    model_dir, out_path = Path(model_dir), Path(out_path)
    config = read_config(model_dir)
    check_supported(config, quant)
    qtype, ftype = {"f16": (gguf.GGMLQuantizationType.F16, gguf.LlamaFileType.MOSTLY_F16),
                    "q8_0": (gguf.GGMLQuantizationType.Q8_0, gguf.LlamaFileType.MOSTLY_Q8_0)}[quant]
    tmp = out_path.with_name(f".{out_path.name}.partial")
    writer = gguf.GGUFWriter(str(tmp), gguf.MODEL_ARCH_NAMES[gguf.MODEL_ARCH.LLAMA])
    try:
        _add_metadata(writer, config, name or model_dir.name, int(ftype))
        _add_tokenizer(writer, model_dir, config)
        for i, (tensor_name, data) in enumerate(_tensors(model_dir, config)):
            if data.ndim == 1 or (qtype == gguf.GGMLQuantizationType.Q8_0
                                  and data.shape[-1] % 32):
                writer.add_tensor(tensor_name, data.astype("float32"))
            else:
                writer.add_tensor(tensor_name, quantize(data, qtype), raw_dtype=qtype)
            if progress and i % 16 == 0:
                progress(0.0, f"converted {i + 1} tensors")
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
        os.replace(tmp, out_path)
    finally:
        tmp.unlink(missing_ok=True)
    return out_path.stat().st_size
