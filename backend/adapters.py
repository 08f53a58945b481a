"""Model artifacts: list, detail, edit, soft delete, downloads (single files, or all as one archive)."""
from __future__ import annotations

import io
import zipfile
from typing import Iterator

from sqlalchemy import func, select

from backend.core import states
from backend.core.access import check_owner, scope
from backend.core.errors import InvalidInput
from backend.core.pagination import Page, clamp_page
from backend.core.schemas import ModelInfo, UserInfo
from backend.core.text_checks import check_text
from backend.db.models import Dataset, ModelArtifact, TrainingJob, utcnow
from backend.db.session import session_scope
from backend.storage import get_object_store

SORTS = ("created_at", "quality", "name")


def _row(s, actor: UserInfo, model_id: str) -> ModelArtifact:
    row = s.get(ModelArtifact, model_id)
    check_owner(actor, row, "Model", model_id)
    return row


def list_models(actor: UserInfo, *, status: str | None = None, search: str | None = None,
                sort: str = "created_at", page: int = 1, per_page: int = 20) -> Page[ModelInfo]:
    """The actor's models (admins: all). ``sort``: created_at (newest first), quality (lowest final
    validation loss first), name. Raises InvalidInput for an unknown sort."""
    if sort not in SORTS:
        raise InvalidInput(f"cannot sort models by {sort!r}; use one of {', '.join(SORTS)}")
    page, per_page = clamp_page(page, per_page)
    stmt = scope(select(ModelArtifact).where(ModelArtifact.deleted_at.is_(None)), ModelArtifact,
                 actor)
    if status:
        stmt = stmt.where(ModelArtifact.status == status)
    if search:
        stmt = stmt.where(func.lower(ModelArtifact.name).contains(search.lower(), autoescape=True))
    with session_scope() as s:
        total = s.scalar(select(func.count()).select_from(stmt.subquery())) or 0
        rows = list(s.scalars(stmt.order_by(ModelArtifact.created_at.desc())))
        if sort == "quality":
            rows.sort(key=lambda r: (r.quality_metrics or {}).get("final_validation_loss")
                      if (r.quality_metrics or {}).get("final_validation_loss") is not None
                      else float("inf"))
        elif sort == "name":
            rows.sort(key=lambda r: r.name.lower())
        rows = rows[(page - 1) * per_page: page * per_page]
        return Page([ModelInfo.model_validate(r) for r in rows], total, page, per_page)


def get_model(actor: UserInfo, model_id: str) -> ModelInfo:
    """Raises NotFound (unknown, deleted, someone else's)."""
    with session_scope() as s:
        return ModelInfo.model_validate(_row(s, actor, model_id))


def lineage(actor: UserInfo, model_id: str) -> dict:
    """Dataset, job and parent model of a model (names and ids the actor may see)."""
    with session_scope() as s:
        row = _row(s, actor, model_id)
        ds = s.get(Dataset, row.dataset_id)
        job = s.get(TrainingJob, row.job_id)
        parent = s.get(ModelArtifact, row.parent_model_id) if row.parent_model_id else None
        children = s.scalars(select(ModelArtifact).where(
            ModelArtifact.parent_model_id == row.id, ModelArtifact.deleted_at.is_(None))).all()
        return {
            "dataset": {"id": ds.id, "name": ds.name} if ds else None,
            "job": {"id": job.id, "status": job.status, "preset_id": job.preset_id,
                    "created_at": job.created_at, "completed_at": job.completed_at}
            if job else None,
            "parent": {"id": parent.id, "name": parent.name} if parent else None,
            "children": [{"id": c.id, "name": c.name} for c in children],
        }


def update_model(actor: UserInfo, model_id: str, *, name: str | None = None,
                 description: str | None = None, status: str | None = None) -> ModelInfo:
    """Edit name / description / status (stored ↔ deployed, → archived). Raises NotFound,
    InvalidInput, InvalidTransition."""
    with session_scope() as s:
        row = _row(s, actor, model_id)
        if name is not None:
            name = name.strip()
            if not 1 <= len(name) <= 200:
                raise InvalidInput("model name must have 1 to 200 characters")
            row.name = check_text(name, "model name")
        if description is not None:
            row.description = check_text(description[:5000], "description", multiline=True,
                                         code="invalid_description")
        if status is not None and status != row.status:
            states.check("model", row.status, status)
            row.status = status
            row.deployed_at = utcnow() if status == "deployed" else row.deployed_at
        s.flush()
        return ModelInfo.model_validate(row)


def delete_model(actor: UserInfo, model_id: str) -> None:
    """Soft delete (files kept for lineage until purged). Raises NotFound."""
    with session_scope() as s:
        _row(s, actor, model_id).deleted_at = utcnow()


def model_files(actor: UserInfo, model_id: str) -> list[dict]:
    """Every stored file of a model: name, key, size. Raises NotFound."""
    info = get_model(actor, model_id)
    prefix = info.artifacts.get("prefix") or f"models/{info.id}/"
    store = get_object_store()
    return [{"name": k[len(prefix):], "key": k, "size": store.size(k)}
            for k in sorted(store.list(prefix))]


def files_served_locally(files: list[dict]) -> bool:
    """True when the model's files sit on this machine's file store (the dashboard streams them
    itself), False on a remote object store (the dashboard hands out presigned URLs)."""
    return bool(files) and get_object_store().uri(files[0]["key"]).startswith("file://")


def download_urls(actor: UserInfo, model_id: str, expires_s: int = 3600) -> list[dict]:
    """Expiring download URLs for every file (presigned on S3, signed file:// locally)."""
    store = get_object_store()
    return [{**f, "url": store.download_url(f["key"], expires_s=expires_s, filename=f["name"]),
             "expires_in": expires_s} for f in model_files(actor, model_id)]


def open_file(actor: UserInfo, model_id: str, name: str):
    """Stream one file of the model (access checked). Raises NotFound."""
    from backend.core.errors import NotFound

    for f in model_files(actor, model_id):
        if f["name"] == name:
            return get_object_store().open(f["key"])
    raise NotFound(f"model {model_id} has no file {name!r}", code="file_not_found")


class _ZipSink(io.RawIOBase):
    """An unseekable write target that hands out what was written so far (zip streaming)."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []
        self.pos = 0

    def writable(self) -> bool:
        return True

    def write(self, b) -> int:
        self.parts.append(bytes(b))
        self.pos += len(b)
        return len(b)

    def tell(self) -> int:
        return self.pos

    def take(self) -> bytes:
        out, self.parts = b"".join(self.parts), []
        return out


def archive_chunks(actor: UserInfo, model_id: str) -> Iterator[bytes]:
    """All files of the model as one zip, streamed file by file (access checked first)."""
    files = model_files(actor, model_id)
    store = get_object_store()
    sink = _ZipSink()
    with zipfile.ZipFile(sink, "w", zipfile.ZIP_DEFLATED) as zf:
        for f in files:
            with store.open(f["key"]) as src, zf.open(f["name"], "w") as dst:
                while chunk := src.read(1 << 20):
                    dst.write(chunk)
                    yield sink.take()
    yield sink.take()


def archive_bytes(actor: UserInfo, model_id: str) -> bytes:
    """The whole archive in memory (adapters are small; used by the page's download button)."""
    return b"".join(archive_chunks(actor, model_id))
