"""The object store interface used for datasets, checkpoints and adapters.

Implementations: :class:`~backend.storage.local.LocalObjectStore` (a directory, ``file://``) and
:class:`~backend.storage.s3.S3ObjectStore` (any S3 server, e.g. MinIO, ``s3://``). Keys are relative
``/``-separated paths (see :mod:`backend.storage.keys`); every key is sanitised before use.

Errors: a missing object raises :class:`~backend.core.errors.NotFound` with code ``object_not_found``; a bad
key raises :class:`~backend.core.errors.InvalidInput`; anything the backend itself fails at raises
:class:`~backend.core.errors.StorageError`.
"""
from __future__ import annotations

import io
import os
import tempfile
from abc import ABC, abstractmethod
from collections.abc import Collection, Iterator
from pathlib import Path
from typing import IO, Any, BinaryIO

from backend.core.errors import InvalidInput, NotFound, StorageError
from backend.storage.keys import sanitize_key, sanitize_prefix

DEFAULT_CHUNK = 1 << 20
MAX_URL_EXPIRY_S = 7 * 24 * 3600   # the S3 limit for presigned URLs


def object_not_found(uri: str) -> NotFound:
    """The error every store raises for a missing object."""
    return NotFound(f"object {uri} does not exist", code="object_not_found")


def check_expiry(expires_s: int) -> int:
    """Return ``expires_s`` as an int. Raises InvalidInput unless 1 <= expires_s <= 7 days."""
    if isinstance(expires_s, bool) or not isinstance(expires_s, (int, float)) \
            or not 1 <= expires_s <= MAX_URL_EXPIRY_S:
        raise InvalidInput(f"URL lifetime {expires_s!r} s must be between 1 s and 7 days",
                           code="invalid_expiry")
    return int(expires_s)


def _dir_prefix(prefix: str) -> str:
    clean = sanitize_prefix(prefix)
    return clean if not clean or clean.endswith("/") else clean + "/"


class ObjectStore(ABC):
    """A flat key -> bytes store with streaming reads and writes and expiring URLs."""

    #: URL scheme this store serves (``file`` or ``s3``)
    scheme: str = ""

    # ----- primitives each store implements --------------------------------------------------
    @abstractmethod
    def put(self, key: str, fileobj: BinaryIO, length: int | None = None,
            content_type: str = "application/octet-stream") -> int:
        """Stream ``fileobj`` (binary, read in chunks) into ``key``; return the bytes written. When
        ``length`` is given exactly that many bytes are read. On any failure no object is left
        behind (an existing object under ``key`` is kept unchanged).

        Raises InvalidInput (bad key), StorageError (write failed; also when ``fileobj`` raised or
        ended before ``length`` bytes)."""

    @abstractmethod
    def open(self, key: str) -> BinaryIO:
        """A readable binary stream of the object (use as a context manager; it streams).

        Raises NotFound (code ``object_not_found``), InvalidInput, StorageError."""

    @abstractmethod
    def delete(self, key: str) -> None:
        """Delete one object; a missing object is not an error. Raises InvalidInput, StorageError."""

    @abstractmethod
    def exists(self, key: str) -> bool:
        """Whether an object exists under ``key``. Raises InvalidInput, StorageError."""

    @abstractmethod
    def size(self, key: str) -> int:
        """Size of the object in bytes. Raises NotFound, InvalidInput, StorageError."""

    @abstractmethod
    def list(self, prefix: str = "") -> list[str]:
        """Sorted keys of all objects whose key starts with ``prefix`` (plain string prefix, as on
        S3: ``"models/1"`` also matches ``models/10/...``; end it with ``/`` for one folder).

        Raises InvalidInput, StorageError."""

    @abstractmethod
    def download_url(self, key: str, expires_s: int = 3600, filename: str | None = None) -> str:
        """A URL that reads the object until it expires (``filename``: the name a browser saves it
        under). Raises InvalidInput (bad key or lifetime), StorageError."""

    @abstractmethod
    def upload_url(self, key: str, expires_s: int = 3600) -> str:
        """A URL that writes the object (HTTP PUT on S3) until it expires.

        Raises InvalidInput (bad key or lifetime), StorageError."""

    @abstractmethod
    def uri(self, key: str) -> str:
        """Where the object lives: ``file:///abs/path`` or ``s3://bucket/key``. Raises InvalidInput."""

    @abstractmethod
    def ray_storage(self, prefix: str) -> tuple[str, Any]:
        """``(storage_path, storage_filesystem)`` for Ray Train's ``RunConfig``: an absolute local
        directory and ``None``, or ``"bucket/prefix"`` and a ``pyarrow.fs.S3FileSystem``.

        Raises InvalidInput, StorageError."""

    def clean_incomplete(self, prefix: str, older_than_s: float,
                         keep: Collection[str] = ()) -> int:
        """Remove what interrupted writes under ``prefix`` left behind, when older than
        ``older_than_s`` seconds and not a write of a key in ``keep`` (writes known to be alive):
        temporary ``.part`` files (local store) or incomplete multipart uploads (S3). A write
        killed by SIGKILL cannot clean up after itself; the reconciler calls this. Returns how many
        were removed. Raises InvalidInput, StorageError."""
        return 0

    # ----- shared behaviour built on the primitives -----------------------------------------
    def delete_prefix(self, prefix: str) -> int:
        """Delete every object under ``prefix`` (a folder: a trailing ``/`` is implied); return how
        many were deleted. Raises InvalidInput (also for an empty prefix), StorageError."""
        folder = _dir_prefix(prefix)
        if not folder:
            raise InvalidInput("refusing to delete the whole store: give a non-empty prefix",
                               code="invalid_key")
        keys = self.list(folder)
        for key in keys:
            self.delete(key)
        return len(keys)

    def put_bytes(self, key: str, data: bytes) -> int:
        """Store ``data`` under ``key``; return its length. Raises InvalidInput, StorageError."""
        return self.put(key, io.BytesIO(bytes(data)), length=len(data))

    def get_bytes(self, key: str) -> bytes:
        """The whole object in memory (small objects only). Raises NotFound, InvalidInput,
        StorageError."""
        with self.open(key) as stream:
            return stream.read()

    def iter_chunks(self, key: str, chunk_size: int = DEFAULT_CHUNK) -> Iterator[bytes]:
        """Yield the object in chunks of at most ``chunk_size`` bytes.

        Raises NotFound, InvalidInput, StorageError (when the first chunk is requested)."""
        if chunk_size <= 0:
            raise InvalidInput(f"chunk_size must be positive, got {chunk_size}")
        with self.open(key) as stream:
            while chunk := stream.read(chunk_size):
                yield chunk

    def download_to(self, key: str, path: str | os.PathLike) -> int:
        """Copy the object to a local file (written atomically, parent folders created); return the
        bytes written. Raises NotFound, InvalidInput, StorageError (also for local I/O failures)."""
        target = Path(path)
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            with self.open(key) as src:
                return _atomic_copy(src, target)
        except OSError as exc:
            raise StorageError(f"cannot write {target}: {exc.strerror or exc}") from exc

    def upload_dir(self, local_dir: str | os.PathLike, prefix: str) -> dict[str, int]:
        """Upload every file under ``local_dir`` (recursively) to ``prefix/<relative path>``; return
        ``{key: bytes}``. Raises InvalidInput (missing folder, bad key), StorageError."""
        root = Path(local_dir)
        if not root.is_dir():
            raise InvalidInput(f"{root} is not a folder", code="invalid_path")
        folder = _dir_prefix(prefix)
        written: dict[str, int] = {}
        for path in sorted(p for p in root.rglob("*") if p.is_file()):
            key = sanitize_key(folder + path.relative_to(root).as_posix())
            with path.open("rb") as fh:
                written[key] = self.put(key, fh, length=path.stat().st_size)
        return written

    def download_dir(self, prefix: str, local_dir: str | os.PathLike) -> dict[str, int]:
        """Download every object under ``prefix`` (a folder) into ``local_dir``, keeping the relative
        layout; return ``{relative path: bytes}``. Raises NotFound (nothing under the prefix),
        InvalidInput, StorageError."""
        folder = _dir_prefix(prefix)
        keys = self.list(folder)
        if not keys:
            raise NotFound(f"no objects under {self.uri(folder) if folder else self.scheme}",
                           code="object_not_found")
        root = Path(local_dir)
        out: dict[str, int] = {}
        for key in keys:
            rel = key[len(folder):]
            out[rel] = self.download_to(key, root / rel)
        return out


def _atomic_copy(src: IO[bytes], target: Path) -> int:
    """Copy a stream into ``target`` via a temp file in the same folder and a rename."""
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
    total = 0
    try:
        with os.fdopen(fd, "wb") as out:
            while chunk := src.read(DEFAULT_CHUNK):
                out.write(chunk)
                total += len(chunk)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return total
