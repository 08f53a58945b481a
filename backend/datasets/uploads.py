"""What a dataset upload leaves behind when its process dies, and cleaning it up.

An upload writes a ``datasets`` row in ``uploading`` first, then streams the file to the object
store. While it streams, :class:`HeartbeatReader` touches the row's ``updated_at`` every
:data:`HEARTBEAT_S` seconds, so a row in ``uploading`` that has not been touched for
:data:`STALE_AFTER_S` belongs to a process that is gone (SIGKILL, a lost machine). An interrupted
upload (an error, Ctrl-C) removes its row and object itself (:func:`discard`); for the rest,
:func:`reconcile_uploads` (run by every reconcile) removes

- stale ``uploading`` rows and their objects,
- the store's leftovers under ``datasets/`` older than the stale age and not of a live upload:
  incomplete S3 multipart uploads, temporary ``.part`` files of the local store,
- objects under ``datasets/`` whose dataset row does not exist.
"""
from __future__ import annotations

import logging
import time
from datetime import timedelta
from typing import BinaryIO

from sqlalchemy import select

from backend.core.errors import BrightRunError
from backend.db.models import Dataset, utcnow
from backend.db.session import session_scope
from backend.storage import get_object_store

log = logging.getLogger(__name__)
HEARTBEAT_S = 10.0      # a streaming upload touches its row this often
STALE_AFTER_S = 120.0   # an "uploading" row untouched this long has no process behind it
PREFIX = "datasets/"


def touch(dataset_id: str) -> None:
    """Mark the upload of ``dataset_id`` alive now."""
    with session_scope() as s:
        row = s.get(Dataset, dataset_id)
        if row is not None and row.status == "uploading":
            row.updated_at = utcnow()


class HeartbeatReader:
    """Wraps the file being uploaded; every ``every_s`` seconds of reading it touches the row."""

    def __init__(self, fileobj: BinaryIO, dataset_id: str, every_s: float = HEARTBEAT_S):
        self._src, self._id, self._every = fileobj, dataset_id, every_s
        self._last = time.monotonic()

    def read(self, size: int = -1) -> bytes:
        now = time.monotonic()
        if now - self._last >= self._every:
            self._last = now
            try:
                touch(self._id)
            except BrightRunError as exc:  # a database hiccup must not fail the upload
                log.warning("upload heartbeat of dataset %s failed: %s", self._id, exc)
        return self._src.read(size)


def discard(dataset_id: str, key: str) -> None:
    """Remove a half-created dataset (object, then row; the object best effort)."""
    try:
        get_object_store().delete(key)
    except Exception:  # noqa: BLE001 - the original error matters more; reconcile retries
        log.exception("could not delete object %s", key)
    with session_scope() as s:
        row = s.get(Dataset, dataset_id)
        if row is not None:
            s.delete(row)


def is_stale(row: Dataset, stale_after_s: float = STALE_AFTER_S) -> bool:
    """Whether an ``uploading`` row has had no heartbeat for ``stale_after_s`` seconds."""
    from datetime import timezone

    ts = row.updated_at if row.updated_at.tzinfo else row.updated_at.replace(tzinfo=timezone.utc)
    return row.status == "uploading" and utcnow() - ts >= timedelta(seconds=stale_after_s)


def reconcile_uploads(stale_after_s: float = STALE_AFTER_S) -> int:
    """Remove what dead uploads left (see the module docstring). Returns how many rows, objects,
    multipart uploads and ``.part`` files were removed. Raises StorageError, DatabaseError."""
    with session_scope() as s:
        rows = s.scalars(select(Dataset).where(Dataset.status == "uploading")).all()
        dead = [(r.id, r.storage_path) for r in rows if is_stale(r, stale_after_s)]
        live = {r.storage_path for r in rows if not is_stale(r, stale_after_s)}
    for dataset_id, key in dead:
        log.warning("removing dataset %s: its upload stopped without finishing", dataset_id)
        discard(dataset_id, key)
    store = get_object_store()
    removed = len(dead) + store.clean_incomplete(PREFIX, stale_after_s, keep=live)
    return removed + _orphan_objects(store)


def _orphan_objects(store) -> int:
    """Delete objects under ``datasets/{user}/{dataset}/`` whose dataset row does not exist (the
    row is written before the object, so such an object belongs to no upload)."""
    by_id: dict[str, list[str]] = {}
    for key in store.list(PREFIX):
        parts = key.split("/")
        if len(parts) >= 4:
            by_id.setdefault(parts[2], []).append(key)
    if not by_id:
        return 0
    with session_scope() as s:
        known = set(s.scalars(select(Dataset.id).where(Dataset.id.in_(list(by_id)))))
    removed = 0
    for dataset_id, keys in by_id.items():
        if dataset_id in known:
            continue
        for key in keys:
            store.delete(key)
            removed += 1
    return removed
