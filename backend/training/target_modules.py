"""Which LoRA target modules a base model has: checked when a job is estimated or created, so a
misspelt module fails at once with the valid names instead of later on Ray.

``check_target_modules`` is pure; ``model_module_names`` reads the base model's ``config.json``
(only when the model is on this machine — otherwise nothing is checked here and the trainer reports
it). Llama-style models (``model_type`` in :data:`LLAMA_STYLE`) have the seven Llama projections;
other architectures are built on the ``meta`` device (no weights read) and their linear layers
listed.
"""
from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

from backend.base_models.specs import ALL_LINEAR
from backend.core.errors import InvalidInput

ALL_LINEAR_WORD = "all-linear"
LLAMA_STYLE = frozenset({"llama", "mistral", "mixtral", "qwen2", "qwen3", "gemma", "gemma2",
                         "smollm3", "olmo", "olmo2", "granite", "cohere"})


def check_target_modules(requested: list[str], valid: set[str] | frozenset[str],
                         model: str) -> None:
    """Raise InvalidInput (code ``unknown_target_module``) naming every requested module that is
    not a linear layer of ``model``, listing the valid names. ``all-linear`` is always valid; a
    dotted name is valid when its last part is."""
    unknown = [m for m in requested
               if m != ALL_LINEAR_WORD and m not in valid and m.rsplit(".", 1)[-1] not in valid]
    if unknown:
        raise InvalidInput(
            f"target module(s) {', '.join(repr(m) for m in unknown)} not found in base model "
            f"{model!r}; its linear layers are: {', '.join(sorted(valid))} (or {ALL_LINEAR_WORD})",
            code="unknown_target_module",
            hint="set target_modules to some of these names, e.g. q_proj,v_proj")


def model_module_names(model_dir: str | Path) -> frozenset[str] | None:
    """Names (last part) of the linear layers of the model in ``model_dir`` (lm_head excluded), or
    None when they cannot be told (no readable config.json, unknown architecture). Raises nothing."""
    path = Path(model_dir) / "config.json"
    try:
        return _names(str(path), path.stat().st_mtime_ns)
    except OSError:
        return None


@lru_cache(maxsize=32)
def _names(config_path: str, _mtime: int) -> frozenset[str] | None:
    try:
        config = json.loads(Path(config_path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(config, dict):
        return None
    if config.get("model_type") in LLAMA_STYLE:
        return frozenset(ALL_LINEAR)
    return _names_from_meta_model(str(Path(config_path).parent))


def _names_from_meta_model(model_dir: str) -> frozenset[str] | None:
    try:
        import torch
        from transformers import AutoConfig, AutoModelForCausalLM

        config = AutoConfig.from_pretrained(model_dir, local_files_only=True)
        with torch.device("meta"):
            model = AutoModelForCausalLM.from_config(config)
    except Exception:  # noqa: BLE001 - an architecture we cannot build: leave it to the trainer
        return None
    from transformers.pytorch_utils import Conv1D  # GPT-2 style projections; PEFT targets them

    names = {name.rsplit(".", 1)[-1] for name, module in model.named_modules()
             if isinstance(module, (torch.nn.Linear, Conv1D)) and not name.endswith("lm_head")}
    return frozenset(names) or None


def local_module_names(base_model: str, home: str | Path) -> frozenset[str] | None:
    """Linear-layer names of ``base_model`` when it is on this machine (the tiny model, a local
    folder, or a Hugging Face id in the local cache); None otherwise. Builds and downloads nothing.
    Raises nothing."""
    from backend.base_models.tiny_model import TINY_MODEL_ID, tiny_model_path

    name = (base_model or "").strip()
    if name == TINY_MODEL_ID:
        built = tiny_model_path(home)
        return model_module_names(built) if (built / "config.json").is_file() else frozenset(
            ALL_LINEAR)  # the tiny model is a Llama
    if name and Path(name).expanduser().is_dir():
        return model_module_names(Path(name).expanduser())
    try:
        from huggingface_hub import try_to_load_from_cache

        cached = try_to_load_from_cache(name, "config.json")
    except Exception:  # noqa: BLE001 - not an id the cache knows
        return None
    return model_module_names(Path(cached).parent) if isinstance(cached, str) else None


def check_base_model_targets(base_model: str, target_modules: list[str],
                             home: str | Path) -> None:
    """Raise InvalidInput when ``base_model`` is on this machine and lacks one of
    ``target_modules``; a model not here is left to the other checks."""
    valid = local_module_names(base_model, home)
    if valid:
        check_target_modules(target_modules, valid, base_model)
