"""Base models: turn the name a user picked into something ``from_pretrained`` can load offline.

A base model is one of
- an installed base model (``brightrun base-models install|add``, see ``base_model_install``) named by
  its id (``smollm2-135m-instruct``) or its Hugging Face id;
- ``brightrun/tiny-llama``: built on first use under ``$BRIGHTRUN_HOME/models/tiny-llama``;
- a local directory holding a Hugging Face model (``config.json`` + weights + tokenizer);
- a Hugging Face id already in the local Hugging Face cache.

Nothing is ever downloaded from the hub: a model that is not on this machine is an error that
says so.
"""
from __future__ import annotations

import os
from pathlib import Path

from backend.base_models.install import (
    DEFAULT_MODEL_ID,
    base_models_root,
    installed,
    installed_path,
    model_param_count,
)
from backend.base_models.tiny_model import TINY_MODEL_ID, ensure_tiny_model
from backend.core.errors import InvalidInput

__all__ = ["available_base_models", "default_base_model", "model_param_count", "resolve_base_model"]


def default_base_model(home: str | os.PathLike | None = None) -> str:
    """The base model preselected for new jobs: ``BRIGHTRUN_DEFAULT_BASE_MODEL`` when set, else
    SmolLM2-135M-Instruct when it is installed under ``home``, else ``brightrun/tiny-llama``."""
    from backend.core.config import get_settings

    settings = get_settings()
    if settings.default_base_model:
        return settings.default_base_model
    root = base_models_root(home if home is not None else settings.home)
    return DEFAULT_MODEL_ID if installed_path(DEFAULT_MODEL_ID, root) else TINY_MODEL_ID


def resolve_base_model(name: str, home: str | os.PathLike | None = None) -> str:
    """Return a path or cached id for ``name`` that loads with ``local_files_only=True``.

    ``home`` is the BrightRun home (default ``$BRIGHTRUN_HOME``) where the tiny model is built.
    Raises InvalidInput (code ``base_model_unavailable``) when the model is not on this machine;
    the message lists the models that are.
    """
    name = (name or "").strip()
    if name == TINY_MODEL_ID:
        return str(ensure_tiny_model(home))
    local = installed_path(name, base_models_root(home)) if name else None
    if local:
        return local
    if name and Path(name).expanduser().is_dir():
        path = Path(name).expanduser().resolve()
        if (path / "config.json").is_file():
            return str(path)
        raise InvalidInput(
            f"Base model folder {path} has no config.json; it is not a Hugging Face model folder.",
            code="base_model_unavailable", hint="point to the folder that save_pretrained() wrote")
    if name and _in_hf_cache(name):
        return name
    available = ", ".join(available_base_models(home)) or "none"
    hint = (f"install it: brightrun base-models install {name}" if name == DEFAULT_MODEL_ID else
            "see `brightrun base-models list`; install one, add a local folder or .gguf file with "
            f"`brightrun base-models add PATH`, or use {TINY_MODEL_ID}")
    raise InvalidInput(
        f"Base model {name!r} is not on this machine, and BrightRun never downloads from the "
        f"Hugging Face hub. Available here: {available}.",
        code="base_model_unavailable", hint=hint)


def _in_hf_cache(name: str) -> bool:
    """True when ``AutoConfig`` finds ``name`` in the local HF cache (no network)."""
    try:
        from transformers import AutoConfig

        AutoConfig.from_pretrained(name, local_files_only=True)
    except Exception:  # noqa: BLE001 - any failure means "not usable offline"
        return False
    return True


def available_base_models(home: str | os.PathLike | None = None) -> list[str]:
    """Base models usable without a download: installed ones (``$BRIGHTRUN_HOME/base-models``), the
    tiny model, then cached HF model ids. Raises nothing."""
    names = [m["id"] for m in installed(base_models_root(home))] + [TINY_MODEL_ID]
    try:
        from huggingface_hub import scan_cache_dir

        cache = scan_cache_dir()
        names += sorted(repo.repo_id for repo in cache.repos if repo.repo_type == "model")
    except Exception:  # noqa: BLE001 - no cache folder, unreadable cache: nothing cached
        pass
    return names
