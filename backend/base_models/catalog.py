"""The base-model catalog as a user sees it: known models (``models.json``, :mod:`backend.base_models.specs`) joined with what
is installed under ``$BRIGHTRUN_HOME/base-models`` — for ``brightrun base-models list`` and Configure.
"""
from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from typing import Any

from backend.base_models import install as bmi
from backend.base_models.specs import get_model, list_models
from backend.base_models.tiny_model import TINY_MODEL_ID, tiny_model_path

__all__ = ["BaseModelInfo", "folder_size", "install_model", "list_base_models", "model_label",
           "params_text", "size_text"]


@dataclass(frozen=True)
class BaseModelInfo:
    id: str
    hf_id: str | None
    installed: bool
    path: str | None  # the loadable folder when installed
    params: int | None
    size_bytes: int | None  # on disk when installed, else the expected size (None: unknown)
    source: str
    chat_template: str  # generation-tags / chatml / other / none / unknown
    installable: bool  # `brightrun base-models install ID` can fetch it offline

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def folder_size(path: str | os.PathLike) -> int:
    """Bytes of the regular files under ``path`` (0 when it does not exist)."""
    total = 0
    for dirpath, _dirs, files in os.walk(path):
        for name in files:
            try:
                total += os.path.getsize(os.path.join(dirpath, name))
            except OSError:
                pass
    return total


def list_base_models(home: str | os.PathLike | None = None) -> list[BaseModelInfo]:
    """Installed models first (the tiny test model among them once built), then catalog models that
    can be installed, then those known for estimates only."""
    root = bmi.base_models_root(home)
    markers = {m["id"]: m for m in bmi.installed(root)}
    out: list[BaseModelInfo] = []
    for marker in markers.values():
        spec = _spec_or_none(marker["id"])
        out.append(BaseModelInfo(
            id=marker["id"], hf_id=marker.get("hf_id"), installed=True, path=marker["path"],
            params=marker.get("params") or (spec.params if spec else None),
            size_bytes=folder_size(marker["path"]), source=marker.get("source", ""),
            chat_template=marker.get("chat_template", "unknown"),
            installable=bool(spec and spec.install)))
    for spec in list_models():
        if spec.id in markers:
            continue
        tiny = spec.id == TINY_MODEL_ID
        out.append(BaseModelInfo(
            id=spec.id, hf_id=spec.hf_id, installed=tiny, params=spec.params,
            path=str(tiny_model_path(root.parent)) if tiny else None,  # built there on first use
            size_bytes=spec.install.size_bytes if spec.install else spec.params * 4,
            source=("built offline on first use (random weights, for tests)" if tiny else
                    f"pip package {spec.install.package} {spec.install.version}" if spec.install
                    else "estimates only (not on this machine)"),
            chat_template="generation-tags" if tiny else "unknown",
            installable=spec.install is not None))
    return sorted(out, key=lambda m: (not m.installed, not m.installable))


def _spec_or_none(model_id: str):
    try:
        return get_model(model_id)
    except Exception:  # noqa: BLE001 - an added model is not in the catalog
        return None


def install_model(model_id: str, home: str | os.PathLike | None = None,
                  progress: bmi.Progress | None = None) -> dict[str, Any]:
    """Install catalog model ``model_id`` (its id or HF id) under ``home`` (idempotent); returns its
    marker. Raises NotFound for an unknown id, one without install source, or a missing package."""
    spec = next((m for m in list_models() if model_id in (m.id, m.hf_id)), None) or get_model(model_id)
    return bmi.install(spec, bmi.base_models_root(home), progress)


def model_label(info: BaseModelInfo) -> str:
    """``id · 134.5 M params · 538 MB`` (the one place these figures are formatted)."""
    return " · ".join([info.id, *filter(None, (params_text(info.params),
                                                size_text(info.size_bytes)))])


def params_text(params: int | None) -> str:
    """``134.5 M params`` / ``7.24 B params`` / ``265 k params``; empty when unknown."""
    if not params:
        return ""
    if params >= 1e9:
        return f"{params / 1e9:,.2f} B params"
    return f"{params / 1e6:,.1f} M params" if params >= 1e6 else f"{params / 1e3:,.0f} k params"


def size_text(size: int | None) -> str:
    """``542 MB`` / ``29.0 GB`` on disk; empty when unknown."""
    if not size:
        return ""
    return f"{size / 1e9:,.1f} GB" if size >= 1e9 else f"{size / 1e6:,.0f} MB"


