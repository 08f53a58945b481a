"""Make a saved adapter folder stand on its own: ``adapter_config.json`` names the base model by its
Hugging Face id or BrightRun id (never a folder of this machine) and ``README.md`` says what the
adapter was trained on and how to load it. The tokenizer and its chat template are saved beside it by
the worker (``tokenizer.save_pretrained``), so the download archive holds everything but the base."""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

__all__ = ["public_base_model", "render_readme", "write_adapter_card"]

ADAPTER_CONFIG = "adapter_config.json"
README = "README.md"


def public_base_model(name: str, home: str | None) -> tuple[str, str | None]:
    """(name to publish, BrightRun id or None) for base model ``name`` as the job spelled it: the
    Hugging Face id of an installed catalog model, else its BrightRun id, else a folder's name (a
    path of this machine is never published), else ``name`` (a Hugging Face id)."""
    from backend.base_models.install import base_models_root, installed

    for marker in installed(base_models_root(home)):
        if name in (marker.get("id"), marker.get("hf_id"), marker.get("path")):
            return (marker.get("hf_id") or marker["id"]), marker["id"]
    if "/" in name and (name.startswith(("/", "~", ".")) or Path(name).expanduser().exists()):
        return Path(name).expanduser().name, None
    return name, None


def _fmt(value: Any, digits: int = 4) -> str:
    if value is None:
        return "—"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def render_readme(result: dict[str, Any], base_name: str, brightrun_id: str | None,
                  card: dict[str, Any]) -> str:
    """The adapter's README.md (pure): what it was trained on, its quality, how to load it."""
    from backend.training.quality import quality_metrics

    cfg = result.get("config") or {}
    history = result.get("train_loss_history") or []
    quality = quality_metrics(history[0]["training_loss"] if history else None,
                              result.get("final_training_loss"),
                              result.get("final_validation_loss"),
                              result.get("best_validation_loss"), result.get("best_epoch"),
                              result.get("base_validation_loss"))
    counts = result.get("dataset") or {}
    title = card.get("job_name") or "LoRA adapter"
    dataset = card.get("dataset_name") or "(dataset file)"
    if card.get("dataset_id"):
        dataset += f" (BrightRun dataset {card['dataset_id']})"
    base_loss = result.get("base_validation_loss")
    val = _fmt(result.get("final_validation_loss"))
    if base_loss is not None:
        val = f"{_fmt(base_loss)} (base model) → {val}"
    also = f" (BrightRun base model `{brightrun_id}`)" if brightrun_id and brightrun_id != base_name \
        else ""
    rows = [
        ("Base model", f"`{base_name}`{also}"),
        ("Dataset", dataset + (f": {counts['train_conversations']} training and "
                               f"{counts.get('validation_conversations', 0)} validation "
                               "conversations" if "train_conversations" in counts else "")),
        ("Preset", card.get("preset_id") or "—"),
        ("LoRA", f"rank {cfg.get('lora_rank')}, alpha {cfg.get('lora_alpha')}, dropout "
                 f"{cfg.get('lora_dropout')}, on {', '.join(cfg.get('target_modules') or [])}"),
        ("Training", f"{cfg.get('num_epochs')} epoch(s), learning rate {cfg.get('learning_rate')}, "
                     f"batch {cfg.get('batch_size')}, max {cfg.get('max_seq_length')} tokens; "
                     f"{result.get('total_steps')} steps, {result.get('total_tokens_processed')} "
                     f"tokens in {_fmt(result.get('duration_seconds'), 0)} s on "
                     f"{result.get('workers')} × {result.get('device')}"),
        ("Validation loss", f"{val} (best {_fmt(result.get('best_validation_loss'))} at epoch "
                            f"{_fmt(result.get('best_epoch'))})"),
        ("Quality", f"{quality['convergence_quality']} (perplexity "
                    f"{_fmt(quality['perplexity'], 2)}; rule in BrightRun's docs/training.md)"),
    ]
    table = "\n".join(f"| {k} | {v} |" for k, v in rows)
    return f"""# {title}

A LoRA adapter trained with BrightRun LoRA Studio on {time.strftime('%Y-%m-%d', time.gmtime())}.

| | |
|---|---|
{table}

The folder holds the adapter (`adapter_model.safetensors`, `adapter_config.json`), the tokenizer
and its chat template (`tokenizer.json`, `tokenizer_config.json`, `chat_template.jinja`): format
prompts with that template, as in training. Only assistant turns were trained.

## Load it

```python
from peft import PeftModel
from transformers import AutoModelForCausalLM, AutoTokenizer

adapter = "path/to/this/folder"
base = AutoModelForCausalLM.from_pretrained("{base_name}")  # or a local copy of the base model
tokenizer = AutoTokenizer.from_pretrained(adapter)
model = PeftModel.from_pretrained(base, adapter)

messages = [{{"role": "user", "content": "Hello!"}}]
inputs = tokenizer.apply_chat_template(messages, add_generation_prompt=True,
                                       return_tensors="pt", return_dict=True)
out = model.generate(**inputs, max_new_tokens=128)
print(tokenizer.decode(out[0][inputs["input_ids"].shape[1]:], skip_special_tokens=True))
```
""" + ("""
With BrightRun installed, the base model's local folder is listed by
`brightrun base-models list --json` (`path`).
""" if brightrun_id else "")


def write_adapter_card(out: Path, result: dict[str, Any], base_model: str, home: str | None,
                       card: dict[str, Any] | None) -> dict[str, int]:
    """Rewrite ``adapter_config.json``'s base model name and write README.md in ``out``; returns
    the sizes of the files written. Raises OSError when the folder is not writable."""
    base_name, brightrun_id = public_base_model(base_model, home)
    config_path = out / ADAPTER_CONFIG
    config = json.loads(config_path.read_text(encoding="utf-8"))
    config["base_model_name_or_path"] = base_name
    config_path.write_text(json.dumps(config, indent=2, sort_keys=True), encoding="utf-8")
    (out / README).write_text(render_readme(result, base_name, brightrun_id, card or {}),
                              encoding="utf-8")
    return {name: (out / name).stat().st_size for name in (ADAPTER_CONFIG, README)}
