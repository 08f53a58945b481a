"""Catalogs kept as data files: hyperparameter presets and hardware (GPU types and local CPU) with
prices (known base models: :mod:`backend.base_models.specs`). Files live in
``backend/training/catalog/``; each is validated with pydantic on load, so a
broken edit fails the test suite (tests/backend/test_catalogs.py) instead of a user's estimate.

Lookups raise :class:`~backend.core.errors.NotFound` with the list of valid ids.
"""
from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError, model_validator

from backend.core.catalog_files import CatalogError, StrictModel, check_unique, read_catalog
from backend.core.errors import InvalidInput, NotFound
from backend.training.config import TrainingConfig

DATA_DIR = Path(__file__).parent / "catalog"
_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.\-/]*$"
PRESET_IDS = ("conservative", "balanced", "aggressive", "custom")


# ----- presets ---------------------------------------------------------------------------------------
class PresetEntry(StrictModel):
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


class PresetCatalog(StrictModel):
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
class Pricing(StrictModel):
    """Prices that are not per GPU-hour."""

    storage_per_gb_month: float = Field(ge=0, description="$ per GiB stored for one month.")
    data_transfer_per_gb: float = Field(ge=0, description="$ per GiB moved.")
    source: str = Field(min_length=1)


class HardwareEntry(StrictModel):
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


class HardwareCatalog(StrictModel):
    notes: str
    pricing: Pricing
    hardware: list[HardwareEntry]


# ----- loading ---------------------------------------------------------------------------------------
def load_presets(path: Path | None = None) -> PresetCatalog:
    """The preset catalog (default backend/training/catalog/presets.json). Raises CatalogError if invalid."""
    path = path or DATA_DIR / "presets.json"
    return read_catalog(path, PresetCatalog)


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
    check_unique([h.id for h in catalog.hardware], "hardware", path)
    return catalog


@lru_cache(maxsize=1)
def _presets() -> PresetCatalog:
    return load_presets()


@lru_cache(maxsize=1)
def _hardware() -> HardwareCatalog:
    return load_hardware()


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
