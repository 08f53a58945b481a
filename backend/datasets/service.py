"""Datasets: upload (streamed to the object store), background validation on Ray, statistics, listing,
rename, soft delete. Every function takes the acting user and enforces ownership."""
from __future__ import annotations

import logging
import traceback
from typing import BinaryIO

from sqlalchemy import func, or_, select

from backend.core import states
from backend.core.access import check_owner, scope
from backend.core.config import get_settings
from backend.core.errors import BrightRunError, Conflict, InvalidInput, NotFound
from backend.core.pagination import Page, clamp_page
from backend.core.schemas import DatasetInfo, UserInfo
from backend.core.text_checks import check_text
from backend.datasets.uploads import HeartbeatReader, discard, is_stale
from backend.db.models import Dataset, TrainingJob, new_id, utcnow
from backend.db.session import session_scope
from backend.notifications import notify
from backend.storage import get_object_store, sanitize_filename

log = logging.getLogger(__name__)
FORMATS = ("brightrun_lora_v4", "brightrun_lora_v3", "openai_chat", "sharegpt", "alpaca", "preference")
SORTS = {"created_at": Dataset.created_at, "name": Dataset.name, "file_size": Dataset.file_size,
         "total_tokens": Dataset.total_tokens, "status": Dataset.status}
ALLOWED_SUFFIXES = (".jsonl", ".json", ".txt")


def _check_meta(name: str, description: str | None, fmt: str | None) -> str:
    name = (name or "").strip()
    if not 1 <= len(name) <= 200:
        raise InvalidInput("dataset name must have 1 to 200 characters", code="invalid_name")
    check_text(name, "dataset name")
    if description is not None and len(description) > 5000:
        raise InvalidInput("description must have at most 5000 characters", code="invalid_description")
    if description is not None:
        check_text(description, "description", multiline=True, code="invalid_description")
    if fmt is not None and fmt not in FORMATS:
        raise InvalidInput(f"format {fmt!r} is not one of {', '.join(FORMATS)} (or leave it out to "
                           f"detect it)", code="invalid_format")
    return name


def upload_dataset(actor: UserInfo, fileobj: BinaryIO, file_name: str, name: str, *,
                   description: str | None = None, format: str | None = None,
                   size: int | None = None, submit: bool = True) -> DatasetInfo:
    """Create a dataset: row ``uploading`` → object streamed to
    ``datasets/{user_id}/{dataset_id}/{file_name}`` → ``validating`` → validation job on Ray.

    A failed upload leaves neither row nor object. Raises InvalidInput (bad name, format, file name,
    empty file), StorageError, DatabaseError. A failed Ray submission marks the dataset ``error``.
    """
    name = _check_meta(name, description, format)
    safe = sanitize_filename(file_name or "")
    if not safe.lower().endswith(ALLOWED_SUFFIXES):
        raise InvalidInput(f"{safe!r} is not a JSONL file; upload a .jsonl file "
                           "(one JSON conversation per line)", code="invalid_file_type")
    if size == 0:
        raise InvalidInput("the file is empty; a dataset needs at least one conversation",
                           code="empty_file")
    store, dataset_id = get_object_store(), new_id()
    key = f"datasets/{actor.id}/{dataset_id}/{safe}"
    settings = get_settings()
    with session_scope() as s:
        s.add(Dataset(id=dataset_id, user_id=actor.id, name=name, description=description,
                      format=format, status="uploading", storage_bucket=_bucket(settings.storage_url),
                      storage_path=key, file_name=safe, file_size=size or 0))
    try:
        written = store.put(key, HeartbeatReader(fileobj, dataset_id), length=size,
                            content_type="application/x-ndjson")
        if written == 0:
            raise InvalidInput("the file is empty; a dataset needs at least one conversation",
                               code="empty_file")
    except BaseException:  # also Ctrl-C: nothing half written stays (a SIGKILL: reconcile)
        discard(dataset_id, key)
        raise
    with session_scope() as s:
        row = s.get(Dataset, dataset_id)
        row.file_size = written
        states.check("dataset", row.status, "validating")
        row.status = "validating"
    if submit:
        submit_validation(dataset_id)
    return get_dataset(actor, dataset_id)


def _bucket(storage_url: str) -> str:
    return storage_url.split("://", 1)[1].split("/", 1)[0] if storage_url.startswith("s3://") \
        else "local"


def submit_validation(dataset_id: str) -> str | None:
    """Submit the validation Ray job for a dataset in ``validating``; on failure mark it ``error``
    with the reason (never left validating). Returns the submission id or None."""
    from backend.cluster.gateway import get_gateway

    try:
        sub = get_gateway().submit("ray_jobs.validate_dataset", ["--dataset-id", dataset_id],
                                   kind="validate", object_id=dataset_id)
    except BrightRunError as exc:
        _finish_error(dataset_id, f"could not start validation on Ray: {exc}")
        return None
    with session_scope() as s:
        s.get(Dataset, dataset_id).external_job_id = sub
    return sub


def _finish_error(dataset_id: str, message: str) -> None:
    with session_scope() as s:
        row = s.get(Dataset, dataset_id)
        if row is None or row.status != "validating":
            return
        row.status, row.error_message, row.training_ready = "error", message, False
        row.processed_at = utcnow()
        notify(s, row.user_id, "dataset_failed", f"Dataset “{row.name}” failed validation", message,
               priority="high", action_url=f"/datasets?id={row.id}", metadata={"dataset_id": row.id})


def revalidate(actor: UserInfo, dataset_id: str, *, submit: bool = True) -> DatasetInfo:
    """Validate a dataset again (from ready or error). Raises NotFound, InvalidTransition."""
    with session_scope() as s:
        row = s.get(Dataset, dataset_id)
        check_owner(actor, row, "Dataset", dataset_id)
        states.check("dataset", row.status, "validating")
        row.status, row.error_message, row.training_ready = "validating", None, False
    if submit:
        submit_validation(dataset_id)
    return get_dataset(actor, dataset_id)


def get_dataset(actor: UserInfo, dataset_id: str) -> DatasetInfo:
    """Raises NotFound (unknown, deleted or someone else's)."""
    with session_scope() as s:
        row = s.get(Dataset, dataset_id)
        check_owner(actor, row, "Dataset", dataset_id)
        return DatasetInfo.model_validate(row)


def list_datasets(actor: UserInfo, *, search: str | None = None, status: str | None = None,
                  format: str | None = None, training_ready: bool | None = None,
                  sort: str = "created_at", descending: bool = True, page: int = 1,
                  per_page: int = 20) -> Page[DatasetInfo]:
    """The actor's datasets (admins: all), filtered, sorted and paginated. Raises InvalidInput for an
    unknown sort key."""
    if sort not in SORTS:
        raise InvalidInput(f"cannot sort by {sort!r}; use one of {', '.join(SORTS)}")
    page, per_page = clamp_page(page, per_page)
    stmt = scope(select(Dataset).where(Dataset.deleted_at.is_(None)), Dataset, actor)
    if search:
        pattern = "%" + search.strip().lower().replace("\\", "\\\\").replace("%", "\\%") \
            .replace("_", "\\_") + "%"
        stmt = stmt.where(or_(func.lower(Dataset.name).like(pattern, escape="\\")))
    if status:
        stmt = stmt.where(Dataset.status == status)
    if format:
        stmt = stmt.where(Dataset.format == format)
    if training_ready is not None:
        stmt = stmt.where(Dataset.training_ready.is_(training_ready))
    with session_scope() as s:
        total = s.scalar(select(func.count()).select_from(stmt.subquery())) or 0
        col = SORTS[sort]
        stmt = stmt.order_by(col.desc() if descending else col.asc(), Dataset.id)
        rows = s.scalars(stmt.offset((page - 1) * per_page).limit(per_page))
        return Page([DatasetInfo.model_validate(r) for r in rows], total, page, per_page)


def dataset_counts(actor: UserInfo) -> dict[str, int]:
    """Counts by status plus total, for the page header and Home."""
    stmt = scope(select(Dataset.status, func.count()).where(Dataset.deleted_at.is_(None)),
                 Dataset, actor).group_by(Dataset.status)
    with session_scope() as s:
        by = {k: v for k, v in s.execute(stmt)}
    out = {st: by.get(st, 0) for st in ("uploading", "validating", "ready", "error")}
    out["total"] = sum(by.values())
    return out


def update_dataset(actor: UserInfo, dataset_id: str, *, name: str | None = None,
                   description: str | None = None) -> DatasetInfo:
    """Rename / describe. Raises NotFound, InvalidInput."""
    with session_scope() as s:
        row = s.get(Dataset, dataset_id)
        check_owner(actor, row, "Dataset", dataset_id)
        if name is not None:
            row.name = _check_meta(name, None, None)
        if description is not None:
            _check_meta(row.name, description, None)
            row.description = description
        s.flush()
        return DatasetInfo.model_validate(row)


def delete_dataset(actor: UserInfo, dataset_id: str) -> None:
    """Soft delete. Refused (Conflict) while a queued or running job uses the dataset, or while it is
    being uploaded or validated. An upload whose process died (no heartbeat for
    ``uploads.STALE_AFTER_S``) is removed for good, row and object. Raises NotFound."""
    with session_scope() as s:
        row = s.get(Dataset, dataset_id)
        check_owner(actor, row, "Dataset", dataset_id)
        dead_upload = row.storage_path if is_stale(row) else None
    if dead_upload is not None:
        discard(dataset_id, dead_upload)
        return
    with session_scope() as s:
        row = s.get(Dataset, dataset_id)
        check_owner(actor, row, "Dataset", dataset_id)
        active = s.scalar(select(func.count()).select_from(TrainingJob).where(
            TrainingJob.dataset_id == dataset_id, TrainingJob.status.in_(states.JOB_ACTIVE))) or 0
        if active:
            raise Conflict(f"dataset “{row.name}” is used by {active} active training job(s); "
                           "cancel or wait for them first", code="dataset_in_use")
        if row.status in ("uploading", "validating"):
            raise Conflict("the dataset is being validated; wait until it is ready or failed",
                           code="dataset_busy")
        row.deleted_at = utcnow()


def open_dataset(dataset_id: str):
    """Stream of a dataset's file (service-internal: Ray jobs). Raises NotFound."""
    with session_scope() as s:
        row = s.get(Dataset, dataset_id)
        if row is None:
            raise NotFound(f"Dataset {dataset_id} not found", code="dataset_not_found")
        key = row.storage_path
    return get_object_store().open(key)


def run_validation(dataset_id: str, *, max_seq_length: int = 2048) -> DatasetInfo:
    """Validate a dataset in ``validating`` and store the report: ``ready`` or ``error`` and a
    notification. Runs inside the validation Ray job. Raises NotFound; any failure marks the dataset
    ``error`` with the reason (and re-raises)."""
    from backend.datasets.validation_job import validate_object

    with session_scope() as s:
        row = s.get(Dataset, dataset_id)
        if row is None:
            raise NotFound(f"Dataset {dataset_id} not found", code="dataset_not_found")
        key, declared, status = row.storage_path, row.format, row.status
    if status != "validating":
        raise Conflict(f"dataset is {status}, not validating", code="not_validating")
    try:
        report = validate_object(key, declared_format=declared, max_seq_length=max_seq_length)
    except Exception as exc:  # noqa: BLE001
        _finish_error(dataset_id, f"validation crashed: {exc}\n{traceback.format_exc(limit=3)}")
        raise
    _store_report(dataset_id, report)
    with session_scope() as s:
        return DatasetInfo.model_validate(s.get(Dataset, dataset_id))


def _store_report(dataset_id: str, report) -> None:
    d = report.to_dict()
    stats = d.get("stats") or {}
    with session_scope() as s:
        row = s.get(Dataset, dataset_id)
        new = "ready" if report.ok else "error"
        states.check("dataset", row.status, new)
        row.status, row.training_ready = new, bool(report.ok)
        row.format = d.get("format") or row.format
        row.total_conversations = stats.get("conversations")
        row.total_training_pairs = stats.get("training_pairs")
        row.total_validation_pairs = stats.get("validation_pairs")
        row.total_tokens = stats.get("total_tokens")
        row.assistant_tokens = stats.get("assistant_tokens")
        row.avg_turns_per_conversation = stats.get("avg_turns_per_conversation")
        row.avg_tokens_per_turn = stats.get("avg_tokens_per_turn")
        row.tokenizer_name = stats.get("tokenizer") or d.get("tokenizer")
        row.statistics = stats
        row.validation_errors = d.get("issues") or []
        row.error_count, row.warning_count = d.get("error_count", 0), d.get("warning_count", 0)
        row.sample_data = d.get("preview") or []
        row.validated_at = row.processed_at = utcnow()
        row.error_message = None if report.ok else \
            f"{row.error_count} problem(s) found; see the errors table"
        if report.ok:
            notify(s, row.user_id, "dataset_ready", f"Dataset “{row.name}” is ready",
                   f"{row.total_conversations} conversations, {row.total_training_pairs} training "
                   f"pairs, {row.total_tokens} tokens.", priority="low",
                   action_url=f"/datasets?id={row.id}", metadata={"dataset_id": row.id})
        else:
            notify(s, row.user_id, "dataset_failed", f"Dataset “{row.name}” failed validation",
                   row.error_message, priority="high", action_url=f"/datasets?id={row.id}",
                   metadata={"dataset_id": row.id})


def reconcile_validations() -> int:
    """Mark ``validating`` datasets whose Ray job ended without a result (failed, stopped, vanished)
    as ``error`` with the reason. Returns how many were fixed. (What dead uploads left is removed
    by :func:`backend.datasets.uploads.reconcile_uploads`, run by ``brightrun reconcile``.)"""
    from backend.cluster.ended import has_ended
    from backend.cluster.gateway import get_gateway

    with session_scope() as s:
        pending = [(r.id, r.external_job_id, r.updated_at) for r in s.scalars(
            select(Dataset).where(Dataset.status == "validating",
                                  Dataset.external_job_id.is_not(None)))]
    fixed = 0
    for dataset_id, sub, updated in pending:
        try:
            st = get_gateway().status(sub)
        except BrightRunError:
            continue
        if has_ended({"status": st}, updated):
            before = fixed
            _finish_error(dataset_id, f"the validation job ended ({st}) without a result")
            fixed = before + 1
    return fixed
