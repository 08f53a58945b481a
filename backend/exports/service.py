"""Exports of trained adapters: request (checked before any work, reused when asked again), run as
a Ray job (``ray_jobs/export_model.py`` → :func:`run_export`), list, download.

Files live in the object store next to the adapter's, under ``exports/{model_id}/{export_id}/``
(one copy per model, format and quantisation; downloads presigned on S3 like the adapter's). A bad
model id, a deleted adapter, an adapter whose files are gone or an unsupported architecture is
refused with one line and nothing stored; a failed export keeps no object."""
from __future__ import annotations

import json
import tempfile
import time
from datetime import datetime
from pathlib import Path

from pydantic import BaseModel, ConfigDict
from sqlalchemy import select

from backend.core.access import scope
from backend.core.config import get_settings
from backend.core.errors import BrightRunError, InvalidInput, NotFound
from backend.core.schemas import ModelInfo, UserInfo
from backend.db.models import Dataset, ModelArtifact, ModelExport, utcnow
from backend.db.session import session_scope
from backend.exports.build import FORMATS, build_export, check_request
from backend.exports.modelfile import training_system_prompt
from backend.storage import get_object_store

ACTIVE = ("queued", "running")
ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors")


class ExportInfo(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: str
    model_id: str
    format: str
    quant: str
    status: str
    progress: float
    stage: str | None = None
    error: str | None = None
    files: dict | None = None
    seconds: float | None = None
    created_at: datetime
    completed_at: datetime | None = None

    @property
    def label(self) -> str:
        return self.format + (f" {self.quant}" if self.quant else "")


def _adapter_prefix(info: ModelInfo) -> str:
    return info.artifacts.get("prefix") or f"models/{info.id}/"


def _checked(actor: UserInfo, model_id: str, fmt: str, quant: str | None):
    """(model, quant) after every check that needs no work. Raises NotFound, InvalidInput."""
    from backend.adapters import get_model
    from backend.base_models.registry import resolve_base_model

    if fmt not in FORMATS:
        raise InvalidInput(f"unknown export format {fmt!r}; use one of {', '.join(FORMATS)}",
                           code="invalid_format")
    info = get_model(actor, model_id)
    store = get_object_store()
    missing = [f for f in ADAPTER_FILES if not store.exists(_adapter_prefix(info) + f)]
    if missing:
        raise InvalidInput(f"model {model_id}'s adapter files are gone from the object store "
                           f"({', '.join(missing)}); it cannot be exported", code="adapter_missing")
    base_dir = resolve_base_model(info.base_model, get_settings().home)
    return info, check_request(fmt, quant, base_dir) or ""


def _reconcile(s, row: ModelExport) -> None:
    """Mark an export failed when its Ray job ended without finishing it. Raises nothing."""
    if row.status not in ACTIVE or not row.ray_submission_id:
        return
    try:
        from backend.cluster.gateway import MISSING, get_gateway

        status = get_gateway().status(row.ray_submission_id)
    except BrightRunError:
        return
    if status in ("FAILED", "STOPPED", MISSING):
        row.status, row.completed_at = "failed", utcnow()
        row.error = row.error or f"the export's Ray job ended ({status}) before it finished"


def request_export(actor: UserInfo, model_id: str, fmt: str, quant: str | None = None, *,
                   submit: bool = True) -> tuple[ExportInfo, bool]:
    """(export, reused): the model's finished or running export of this format and quantisation
    if there is one, else a new one submitted as a Ray job (``submit=False``: left queued, for
    tests and :func:`run_export` in-process). Raises NotFound (unknown or deleted model),
    InvalidInput (bad format or quant, adapter files gone, base model not on this machine,
    unsupported architecture or chat template), RayError (the job cannot be submitted: nothing
    is kept)."""
    info, quant = _checked(actor, model_id, fmt, quant)
    with session_scope() as s:
        rows = s.scalars(select(ModelExport).where(
            ModelExport.model_id == info.id, ModelExport.format == fmt,
            ModelExport.quant == quant).order_by(ModelExport.created_at.desc())).all()
        for row in rows:
            _reconcile(s, row)
            if row.status in ("completed", *ACTIVE):
                return ExportInfo.model_validate(row), True
        row = ModelExport(model_id=info.id, user_id=info.user_id, format=fmt, quant=quant,
                          status="queued", progress=0.0, stage="queued")
        s.add(row)
        s.flush()
        export_id = row.id
    if submit:
        from backend.cluster.gateway import get_gateway

        try:
            sub = get_gateway().submit("ray_jobs.export_model", ["--export-id", export_id],
                                       kind="export", object_id=export_id)
        except BrightRunError:
            with session_scope() as s:
                s.delete(s.get(ModelExport, export_id))
            raise
        with session_scope() as s:
            s.get(ModelExport, export_id).ray_submission_id = sub
    return get_export(actor, export_id), False


def get_export(actor: UserInfo, export_id: str) -> ExportInfo:
    """Raises NotFound (unknown, someone else's)."""
    with session_scope() as s:
        row = s.scalars(scope(select(ModelExport).where(ModelExport.id == export_id),
                              ModelExport, actor)).first()
        if row is None:
            raise NotFound(f"export {export_id} not found", code="export_not_found")
        _reconcile(s, row)
        return ExportInfo.model_validate(row)


def list_exports(actor: UserInfo, model_id: str) -> list[ExportInfo]:
    """The model's exports, newest first. Raises NotFound (unknown or deleted model)."""
    from backend.adapters import get_model

    info = get_model(actor, model_id)
    with session_scope() as s:
        rows = s.scalars(select(ModelExport).where(ModelExport.model_id == info.id)
                         .order_by(ModelExport.created_at.desc())).all()
        for row in rows:
            _reconcile(s, row)
        return [ExportInfo.model_validate(r) for r in rows]


def export_files(actor: UserInfo, export_id: str) -> list[dict]:
    """name, key, size of a finished export's files. Raises NotFound, InvalidInput (not
    finished)."""
    info = get_export(actor, export_id)
    if info.status != "completed":
        raise InvalidInput(f"export {export_id} is {info.status}, not completed",
                           code="export_not_ready")
    with session_scope() as s:
        prefix = s.get(ModelExport, export_id).prefix
    return [{"name": name, "key": prefix + name, "size": size}
            for name, size in sorted((info.files or {}).items())]


def open_export_file(actor: UserInfo, export_id: str, name: str):
    """Stream one file of a finished export. Raises NotFound, InvalidInput."""
    for f in export_files(actor, export_id):
        if f["name"] == name:
            return get_object_store().open(f["key"])
    raise NotFound(f"export {export_id} has no file {name!r}", code="file_not_found")


def download_urls(actor: UserInfo, export_id: str, expires_s: int = 3600) -> list[dict]:
    """Expiring download URLs of a finished export's files (presigned on S3)."""
    store = get_object_store()
    return [{**f, "url": store.download_url(f["key"], expires_s=expires_s, filename=f["name"])}
            for f in export_files(actor, export_id)]


def public_base_model(base_model: str, from_adapter: str | None) -> str:
    """The base model's name to publish: an installed model's Hugging Face id, else the name the
    adapter or the job gives that is not a folder of this machine, else the folder's name."""
    from backend.base_models.install import base_models_root, installed

    for marker in installed(base_models_root(get_settings().home)):
        if base_model in (marker.get("id"), marker.get("hf_id"), marker.get("path")):
            return marker.get("hf_id") or marker["id"]
    for name in (from_adapter, base_model):
        if name and not name.startswith(("/", "~", ".")):
            return name
    return Path(base_model).name


def _card_info(info: ModelInfo, adapter_dir: Path, dataset_name: str | None) -> dict:
    cfg = json.loads((adapter_dir / "adapter_config.json").read_text(encoding="utf-8"))
    return {"name": info.name, "version": info.version,
            "base_model": public_base_model(info.base_model, cfg.get("base_model_name_or_path")),
            "dataset": dataset_name or info.configuration.get("dataset_name"),
            "preset": info.configuration.get("preset_id"), "lora_rank": cfg.get("r"),
            "quality": info.quality_metrics}


def _dataset_system_prompt(dataset_id: str | None) -> str | None:
    """The training data's system prompt for the Modelfile (:func:`training_system_prompt`); None
    when the dataset is gone or is not conversations (preference pairs)."""
    from backend.datasets.formats import iter_conversations
    from backend.datasets.service import open_dataset

    if not dataset_id:
        return None
    try:
        with open_dataset(dataset_id) as fh:
            return training_system_prompt(c for _, c in iter_conversations(fh))
    except (BrightRunError, OSError):  # gone, unreadable or not conversations: the default
        return None


def _update(export_id: str, **values) -> None:
    with session_scope() as s:
        row = s.get(ModelExport, export_id)
        for k, v in values.items():
            setattr(row, k, v)


def run_export(export_id: str) -> ExportInfo:
    """Build a queued export and store its files (the Ray job's work). Every failure ends the
    export ``failed`` with its one-line error and no object kept. Raises NotFound (unknown
    export), InvalidInput (not queued)."""
    from backend.base_models.registry import resolve_base_model

    with session_scope() as s:
        row = s.get(ModelExport, export_id)
        if row is None:
            raise NotFound(f"export {export_id} not found", code="export_not_found")
        if row.status != "queued":
            raise InvalidInput(f"export {export_id} is {row.status}, not queued")
        row.status, row.stage = "running", "downloading the adapter"
        model = ModelInfo.model_validate(s.get(ModelArtifact, row.model_id))
        dataset = s.get(Dataset, model.dataset_id)
        dataset_name = dataset.name if dataset else None
        fmt, quant = row.format, row.quant or None
    store = get_object_store()
    prefix = f"exports/{model.id}/{export_id}/"
    start = time.perf_counter()
    try:
        with tempfile.TemporaryDirectory(prefix="brightrun-export-job-") as tmp:
            adapter_dir, out_dir = Path(tmp) / "adapter", Path(tmp) / "out"
            store.download_dir(_adapter_prefix(model), adapter_dir)
            base_dir = resolve_base_model(model.base_model, get_settings().home)
            build_export(fmt, quant, base_dir, adapter_dir, out_dir,
                         _card_info(model, adapter_dir, dataset_name),
                         system_prompt=_dataset_system_prompt(model.dataset_id)
                         if fmt == "ollama" else None,
                         progress=lambda f, text: _update(export_id, progress=90.0 * f,
                                                          stage=text))
            _update(export_id, progress=90.0, stage="uploading")
            sizes = {k[len(prefix):]: v for k, v in store.upload_dir(out_dir, prefix).items()}
    except Exception as exc:  # noqa: BLE001 - every failure is recorded, nothing kept
        store.delete_prefix(prefix)
        message = " ".join(str(exc).split())[:2000] or type(exc).__name__
        _update(export_id, status="failed", error=message, stage="failed", completed_at=utcnow())
        raise
    _update(export_id, status="completed", progress=100.0, stage="completed", prefix=prefix,
            files=sizes, seconds=round(time.perf_counter() - start, 2), completed_at=utcnow())
    with session_scope() as s:
        return ExportInfo.model_validate(s.get(ModelExport, export_id))
