"""The model card (``README.md``) of an export (pure): base model, dataset, preset, evaluation
figures, and how to load what was exported (transformers, llama.cpp, Ollama, vLLM)."""
from __future__ import annotations

from typing import Any


def _fmt(value: Any) -> str:
    if value is None:
        return "—"
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def render_card(fmt: str, info: dict[str, Any], files: list[str],
                vllm_command: str | None = None) -> str:
    """``info``: name, version, base_model (public name), dataset, preset, lora_rank,
    quality (the model's quality metrics), quant, gguf_file, ollama_name."""
    q = info.get("quality") or {}
    rows = [("Format", fmt + (f" ({info['quant']})" if info.get("quant") else "")),
            ("Base model", f"`{info.get('base_model')}`"),
            ("Dataset", info.get("dataset") or "—"), ("Preset", info.get("preset") or "—"),
            ("LoRA rank", _fmt(info.get("lora_rank"))),
            ("Validation loss", f"{_fmt(q.get('base_validation_loss'))} (base) → "
                                f"{_fmt(q.get('final_validation_loss'))}"),
            ("Perplexity", _fmt(q.get("perplexity"))),
            ("Rating", q.get("convergence_quality") or "—")]
    table = "\n".join(f"| {k} | {v} |" for k, v in rows)
    body = f"""# {info.get('name')} {info.get('version') or ''} — {fmt} export

Exported by BrightRun LoRA Studio: the LoRA adapter merged into its base model's weights
(PEFT `merge_and_unload`, fp32).

| | |
|---|---|
{table}

Files: {', '.join(f'`{f}`' for f in files)}.

## Load it
"""
    if fmt == "merged":
        body += """
```python
from transformers import AutoModelForCausalLM, AutoTokenizer

model = AutoModelForCausalLM.from_pretrained("path/to/this/folder")
tokenizer = AutoTokenizer.from_pretrained("path/to/this/folder")
inputs = tokenizer.apply_chat_template([{"role": "user", "content": "Hello!"}],
                                       add_generation_prompt=True, return_tensors="pt",
                                       return_dict=True)
print(tokenizer.decode(model.generate(**inputs, max_new_tokens=64)[0]))
```

vLLM serves the folder as it is: `vllm serve path/to/this/folder`.
"""
    else:
        body += f"""
llama.cpp: `llama-cli -m {info.get('gguf_file')} -cnv` (the chat template is in the file's
metadata). Python: `llama_cpp.Llama(model_path="{info.get('gguf_file')}")`.
"""
    if fmt == "ollama":
        body += f"""
Ollama: in this folder, `ollama create {info.get('ollama_name')} -f Modelfile`, then
`ollama run {info.get('ollama_name')}`.
"""
    if vllm_command:
        body += f"""
Without merging, vLLM serves the adapter itself (the model's download, a PEFT folder) on the base
model: `{vllm_command}`.
"""
    return body
