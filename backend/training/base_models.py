"""Base models: turn the name a user picked into something ``from_pretrained`` can load offline.

A base model is one of
- ``brightrun/tiny-llama``: built on first use under ``$BRIGHTRUN_HOME/models/tiny-llama``;
- a local directory holding a Hugging Face model (``config.json`` + weights + tokenizer);
- a Hugging Face id already in the local Hugging Face cache.

Nothing is ever downloaded from the hub: a model that is not on this machine is an error that
says so.
"""
from __future__ import annotations

import os
from pathlib import Path

from backend.errors import InvalidInput
from backend.training.tiny_model import TINY_MODEL_ID, ensure_tiny_model

__all__ = ["available_base_models", "model_param_count", "resolve_base_model"]


def resolve_base_model(name: str, home: str | os.PathLike | None = None) -> str:
    """Return a path or cached id for ``name`` that loads with ``local_files_only=True``.

    ``home`` is the BrightRun home (default ``$BRIGHTRUN_HOME``) where the tiny model is built.
    Raises InvalidInput (code ``base_model_unavailable``) when the model is not on this machine;
    the message lists the models that are.
    """
    name = (name or "").strip()
    if name == TINY_MODEL_ID:
        return str(ensure_tiny_model(home))
    if name and Path(name).expanduser().is_dir():
        path = Path(name).expanduser().resolve()
        if (path / "config.json").is_file():
            return str(path)
        raise InvalidInput(
            f"Base model folder {path} has no config.json; it is not a Hugging Face model folder.",
            code="base_model_unavailable", hint="point to the folder that save_pretrained() wrote")
    if name and _in_hf_cache(name):
        return name
    available = ", ".join(available_base_models()) or "none"
    raise InvalidInput(
        f"Base model {name!r} is not on this machine, and BrightRun never downloads from the "
        f"Hugging Face hub. Available here: {available}.",
        code="base_model_unavailable",
        hint="use a local model folder, pre-download the model into the Hugging Face cache, "
             f"or use {TINY_MODEL_ID}")


def _in_hf_cache(name: str) -> bool:
    """True when ``AutoConfig`` finds ``name`` in the local HF cache (no network)."""
    try:
        from transformers import AutoConfig

        AutoConfig.from_pretrained(name, local_files_only=True)
    except Exception:  # noqa: BLE001 - any failure means "not usable offline"
        return False
    return True


def available_base_models() -> list[str]:
    """Base models usable without a download: the tiny model plus cached HF model ids.
    Raises nothing."""
    names = [TINY_MODEL_ID]
    try:
        from huggingface_hub import scan_cache_dir

        cache = scan_cache_dir()
        names += sorted(repo.repo_id for repo in cache.repos if repo.repo_type == "model")
    except Exception:  # noqa: BLE001 - no cache folder, unreadable cache: nothing cached
        pass
    return names


def model_param_count(path: str) -> int:
    """Number of parameters of the model at ``path`` (local folder or cached id), tied weights once.

    Builds the model on the ``meta`` device, so no weights are read or allocated.
    Raises InvalidInput (code ``base_model_unavailable``) when its config cannot be read offline.
    """
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    try:
        config = AutoConfig.from_pretrained(path, local_files_only=True)
    except Exception as exc:  # noqa: BLE001
        raise InvalidInput(f"Cannot read the model config of {path!r}: {exc}",
                           code="base_model_unavailable") from exc
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    return sum(p.numel() for p in model.parameters())
