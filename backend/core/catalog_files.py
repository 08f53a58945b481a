"""Catalogs kept as JSON data files, validated with pydantic on load (a broken edit fails the test
suite instead of a user's estimate): the strict base model of their entries, the reader, and the
error a broken file raises."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from backend.core.errors import BrightRunError


class CatalogError(BrightRunError):
    """A catalog data file is missing, not JSON, or fails validation (a packaging/editing bug)."""
    code = "catalog_invalid"


class _Strict(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class StrictModel(BaseModel):
    """A catalog entry: frozen, unknown keys refused."""

    model_config = ConfigDict(frozen=True, extra="forbid")


def read_catalog(path: Path, model: type[BaseModel]) -> Any:
    """``path`` parsed and validated as ``model``. Raises CatalogError."""
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise CatalogError(f"cannot read catalog {path}: {exc}") from None
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        raise CatalogError(f"catalog {path} is invalid: {exc}") from None


def check_unique(ids: list[str], what: str, path: Path) -> None:
    """Raise CatalogError naming the ids that repeat."""
    dupes = sorted({i for i in ids if ids.count(i) > 1})
    if dupes:
        raise CatalogError(f"catalog {path}: duplicate {what} ids {', '.join(dupes)}")
