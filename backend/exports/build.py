"""One export, as files in a folder (pure file work, no database or object store): the request
check that runs before any work (:func:`check_request`) and the build (:func:`build_export`)."""
from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path
from typing import Any, Callable

from backend.core.errors import InvalidInput
from backend.exports.card import render_card
from backend.exports.gguf_file import check_supported, read_config, write_gguf
from backend.exports.merge import merge_adapter
from backend.exports.modelfile import default_system_prompt, render_modelfile, template_family
from backend.exports.vllm import serve_command, vllm_problems

FORMATS = ("merged", "gguf", "ollama")
Progress = Callable[[float, str], None]


def slug(text: str) -> str:
    """A file-name-safe, lower-case form of a model name (Ollama model names are lower case)."""
    return re.sub(r"[^a-z0-9._-]+", "-", text.lower()).strip("-.") or "model"


def check_request(fmt: str, quant: str | None, base_dir: str | os.PathLike) -> str | None:
    """The quantisation to use (None for merged; f16 by default for gguf/ollama) after refusing
    what cannot be exported. Raises InvalidInput (codes invalid_format, invalid_quant,
    unsupported_architecture, unsupported_template) before any work."""
    if fmt not in FORMATS:
        raise InvalidInput(f"unknown export format {fmt!r}; use one of {', '.join(FORMATS)}",
                           code="invalid_format")
    if fmt == "merged":
        if quant not in (None, "", "fp32"):
            raise InvalidInput("the merged export is fp32 safetensors; --quant is for gguf and "
                               "ollama", code="invalid_quant")
        return None
    quant = quant or "f16"
    check_supported(read_config(base_dir), quant)
    if fmt == "ollama":
        template = (Path(base_dir) / "chat_template.jinja")
        template_family(template.read_text(encoding="utf-8") if template.is_file() else None)
    return quant


def _step(progress: Progress | None, fraction: float, text: str) -> None:
    if progress:
        progress(fraction, text)


def build_export(fmt: str, quant: str | None, base_dir: str | os.PathLike,
                 adapter_dir: str | os.PathLike, out_dir: str | os.PathLike,
                 info: dict[str, Any], system_prompt: str | None = None,
                 progress: Progress | None = None) -> dict[str, int]:
    """Write the export into the new folder ``out_dir``; returns {file name: size}. ``info``: what
    the model card shows (see :func:`backend.exports.card.render_card`). Raises InvalidInput (see
    :func:`check_request`), OSError."""
    quant = check_request(fmt, quant, base_dir)
    out_dir, adapter_dir = Path(out_dir), Path(adapter_dir)
    problems = vllm_problems(adapter_dir)
    vllm = None if problems else serve_command(info.get("base_model") or "BASE",
                                               slug(info.get("name") or "adapter"),
                                               int(info.get("lora_rank") or 0))
    if fmt == "merged":
        _step(progress, 0.1, "merging the adapter into the base model")
        names = ["model.safetensors", "config.json", "generation_config.json", "tokenizer.json",
                 "tokenizer_config.json", "chat_template.jinja", "README.md"]
        sizes = merge_adapter(base_dir, adapter_dir, out_dir,
                              render_card(fmt, info, names, vllm))
        _step(progress, 1.0, "merged")
        return sizes
    name = slug(f"{info.get('name') or 'model'}-{info.get('version') or ''}")
    gguf_name = f"{name}-{quant}.gguf"
    info = {**info, "quant": quant, "gguf_file": gguf_name, "ollama_name": name}
    files = [gguf_name, "README.md"] + (["Modelfile"] if fmt == "ollama" else [])
    with tempfile.TemporaryDirectory(prefix="brightrun-export-") as tmp:
        _step(progress, 0.1, "merging the adapter into the base model")
        merged = Path(tmp) / "merged"
        merge_adapter(base_dir, adapter_dir, merged)
        _step(progress, 0.5, f"writing the GGUF file ({quant})")
        out_dir.mkdir(parents=True, exist_ok=False)
        write_gguf(merged, out_dir / gguf_name, quant, name=info.get("name"))
        if fmt == "ollama":
            from transformers import AutoTokenizer

            tokenizer = AutoTokenizer.from_pretrained(merged, local_files_only=True)
            system = system_prompt or default_system_prompt(tokenizer)
            (out_dir / "Modelfile").write_text(
                render_modelfile(gguf_name, tokenizer.chat_template, system), encoding="utf-8")
    (out_dir / "README.md").write_text(render_card(fmt, info, files, vllm), encoding="utf-8")
    _step(progress, 1.0, "written")
    return {p.name: p.stat().st_size for p in sorted(out_dir.iterdir()) if p.is_file()}
