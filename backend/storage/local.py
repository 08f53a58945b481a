"""Object store in a local directory (``file:///PATH``).

Writes are atomic (temp file in the same folder, then rename). Expiring URLs are ``file://`` URLs with
an ``expires`` timestamp and an HMAC ``sig``; :meth:`LocalObjectStore.open_url` checks both. The HMAC
key is ``BRIGHTRUN_SECRET_KEY`` or a random secret generated once into ``$BRIGHTRUN_HOME/secret.key``
(mode 0600).
"""
from __future__ import annotations

import hashlib
import hmac
import os
import re
import tempfile
import time
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import parse_qs, unquote, urlencode, urlparse

from backend.core.config import Settings
from backend.core.errors import BrightRunError, ConfigError, InvalidInput, StorageError
from backend.core.secret import get_signing_secret  # noqa: F401 - re-exported
from backend.storage.base import DEFAULT_CHUNK, ObjectStore, check_expiry, object_not_found
from backend.storage.keys import sanitize_filename, sanitize_key, sanitize_prefix

_TEMP_NAME = re.compile(r"^\..+\.brightrun-[A-Za-z0-9_]+\.part$")


@dataclass(frozen=True)
class SignedURL:
    """What a verified local URL grants: ``op`` (get/put) on ``key`` until ``expires``."""
    key: str
    op: str
    expires: int
    filename: str | None


class LocalObjectStore(ObjectStore):
    """Objects as files under ``root``; keys map to relative paths."""

    scheme = "file"

    def __init__(self, root: str | os.PathLike, settings: Settings | None = None):
        self.root = Path(root).expanduser().resolve()
        self._settings = settings
        self._secret: bytes | None = None

    @classmethod
    def from_url(cls, url: str, settings: Settings | None = None) -> LocalObjectStore:
        """Store for a ``file:///ABS/PATH`` URL. Raises ConfigError for a relative or empty path."""
        parsed = urlparse(url)
        if parsed.netloc not in ("", "localhost"):
            raise ConfigError(f"BRIGHTRUN_STORAGE_URL={url!r}: use file:///ABSOLUTE/PATH "
                              "(three slashes)")
        path = unquote(parsed.path)
        if not path.startswith("/"):
            raise ConfigError(f"BRIGHTRUN_STORAGE_URL={url!r} is not an absolute path")
        return cls(path, settings)

    # ----- paths --------------------------------------------------------------------------------
    def _path(self, key: str) -> Path:
        path = self.root / sanitize_key(key)
        if _TEMP_NAME.match(path.name):
            raise InvalidInput(f"object key {key!r} looks like a temporary upload file",
                               code="invalid_key")
        return path

    def _key_of(self, path: Path) -> str:
        return path.relative_to(self.root).as_posix()

    # ----- writes -------------------------------------------------------------------------------
    def put(self, key: str, fileobj: BinaryIO, length: int | None = None,
            content_type: str = "application/octet-stream") -> int:
        """See :meth:`ObjectStore.put`. Raises InvalidInput, StorageError."""
        target = self._path(key)
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.brightrun-",
                                       suffix=".part")
        except OSError as exc:
            raise StorageError(f"cannot write {target}: {exc.strerror or exc}") from exc
        try:
            with os.fdopen(fd, "wb") as out:
                total = _copy_stream(fileobj, out, length)
            os.replace(tmp, target)
            return total
        except BaseException as exc:
            Path(tmp).unlink(missing_ok=True)
            self._prune_empty_dirs(target.parent)
            if isinstance(exc, Exception) and not isinstance(exc, BrightRunError):
                raise StorageError(f"writing {self.uri(key)} failed: {exc}") from exc
            raise

    def delete(self, key: str) -> None:
        """See :meth:`ObjectStore.delete`. Raises InvalidInput, StorageError."""
        path = self._path(key)
        try:
            path.unlink()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            return
        except OSError as exc:
            raise StorageError(f"cannot delete {path}: {exc.strerror or exc}") from exc
        self._prune_empty_dirs(path.parent)

    def _prune_empty_dirs(self, folder: Path) -> None:
        while folder != self.root and self.root in folder.parents:
            try:
                folder.rmdir()
            except OSError:
                return
            folder = folder.parent

    # ----- reads --------------------------------------------------------------------------------
    def open(self, key: str) -> BinaryIO:
        """See :meth:`ObjectStore.open`. Raises NotFound, InvalidInput, StorageError."""
        path = self._path(key)
        try:
            return path.open("rb")
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise object_not_found(self.uri(key)) from None
        except OSError as exc:
            raise StorageError(f"cannot read {path}: {exc.strerror or exc}") from exc

    def exists(self, key: str) -> bool:
        """See :meth:`ObjectStore.exists`. Raises InvalidInput."""
        return self._path(key).is_file()

    def size(self, key: str) -> int:
        """See :meth:`ObjectStore.size`. Raises NotFound, InvalidInput."""
        path = self._path(key)
        if not path.is_file():
            raise object_not_found(self.uri(key))
        return path.stat().st_size

    def list(self, prefix: str = "") -> list[str]:
        """See :meth:`ObjectStore.list`. Raises InvalidInput, StorageError."""
        clean = sanitize_prefix(prefix)
        base = self.root / clean.rpartition("/")[0] if "/" in clean else self.root
        if not base.is_dir():
            return []
        keys = []
        try:
            for dirpath, _dirs, files in os.walk(base):
                for name in files:
                    if _TEMP_NAME.match(name):
                        continue
                    key = self._key_of(Path(dirpath) / name)
                    if key.startswith(clean):
                        keys.append(key)
        except OSError as exc:
            raise StorageError(f"cannot list {base}: {exc.strerror or exc}") from exc
        return sorted(keys)

    def clean_incomplete(self, prefix: str, older_than_s: float,
                         keep: Collection[str] = ()) -> int:
        """See :meth:`ObjectStore.clean_incomplete`: deletes the temporary ``.part`` files of
        writes that died (SIGKILL) under ``prefix``. Raises InvalidInput, StorageError."""
        clean = sanitize_prefix(prefix)
        base = self.root / clean.rpartition("/")[0] if "/" in clean else self.root
        cutoff, removed = time.time() - max(0.0, older_than_s), 0
        if not base.is_dir():
            return 0
        try:
            for dirpath, _dirs, files in os.walk(base):
                for name in files:
                    path = Path(dirpath) / name
                    if not _TEMP_NAME.match(name) or not self._key_of(path).startswith(
                            clean.rpartition("/")[0]) or _target_key(self._key_of(path)) in keep:
                        continue
                    try:
                        if path.stat().st_mtime > cutoff:
                            continue  # a write in progress touches it
                        path.unlink()
                    except FileNotFoundError:
                        continue
                    removed += 1
                    self._prune_empty_dirs(path.parent)
        except OSError as exc:
            raise StorageError(f"cannot clean {base}: {exc.strerror or exc}") from exc
        return removed

    def uri(self, key: str) -> str:
        """See :meth:`ObjectStore.uri`. Raises InvalidInput."""
        clean = sanitize_prefix(key)
        return (self.root / clean).as_uri() if clean else self.root.as_uri()

    def ray_storage(self, prefix: str) -> tuple[str, Any]:
        """See :meth:`ObjectStore.ray_storage`: ``(absolute folder, None)``, folder created.
        Raises InvalidInput, StorageError."""
        folder = self.root / sanitize_key(prefix)
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StorageError(f"cannot create {folder}: {exc.strerror or exc}") from exc
        return str(folder), None

    # ----- signed URLs --------------------------------------------------------------------------
    def _signing_key(self) -> bytes:
        if self._secret is None:
            self._secret = get_signing_secret(self._settings)
        return self._secret

    def _sign(self, op: str, key: str, expires: int, filename: str | None) -> str:
        message = "\n".join([op, key, str(expires), filename or ""]).encode("utf-8")
        return hmac.new(self._signing_key(), message, hashlib.sha256).hexdigest()

    def _signed_url(self, op: str, key: str, expires_s: int, filename: str | None) -> str:
        clean = sanitize_key(key)
        expires = int(time.time()) + check_expiry(expires_s)
        query = {"op": op, "expires": str(expires)}
        if filename:
            query["filename"] = filename
        query["sig"] = self._sign(op, clean, expires, filename)
        return f"{self.uri(clean)}?{urlencode(query)}"

    def download_url(self, key: str, expires_s: int = 3600, filename: str | None = None) -> str:
        """A signed ``file://`` URL for :meth:`open_url`. Raises InvalidInput, StorageError."""
        name = sanitize_filename(filename) if filename else None
        return self._signed_url("get", key, expires_s, name)

    def upload_url(self, key: str, expires_s: int = 3600) -> str:
        """A signed ``file://`` URL for :meth:`put_url`. Raises InvalidInput, StorageError."""
        return self._signed_url("put", key, expires_s, None)

    def verify_url(self, url: str, op: str = "get") -> SignedURL:
        """Check a URL made by this store: its path is inside the root, its signature is valid for
        ``op`` and it has not expired.

        Raises StorageError with code ``url_invalid`` (not ours, tampered, wrong op) or
        ``url_expired``."""
        parsed = urlparse(url)
        query = {k: v[0] for k, v in parse_qs(parsed.query).items()}
        path = Path(unquote(parsed.path))
        if parsed.scheme != "file" or self.root not in path.parents:
            raise StorageError("this link does not point into the object store", code="url_invalid")
        key = path.relative_to(self.root).as_posix()
        expires = query.get("expires", "")
        if not expires.isdigit() or query.get("op") != op or "sig" not in query:
            raise StorageError("this link is malformed", code="url_invalid")
        expected = self._sign(op, key, int(expires), query.get("filename"))
        if not hmac.compare_digest(expected, query["sig"]):
            raise StorageError("this link's signature is not valid", code="url_invalid")
        if time.time() > int(expires):
            raise StorageError("this link has expired", code="url_expired",
                               hint="ask for a new download link")
        return SignedURL(key=key, op=op, expires=int(expires), filename=query.get("filename"))

    def open_url(self, url: str) -> BinaryIO:
        """Open the object a :meth:`download_url` URL grants.

        Raises StorageError (``url_invalid``, ``url_expired``), NotFound."""
        return self.open(self.verify_url(url, "get").key)

    def put_url(self, url: str, fileobj: BinaryIO, length: int | None = None) -> int:
        """Write through an :meth:`upload_url` URL; return the bytes written.

        Raises StorageError (``url_invalid``, ``url_expired``, write failed)."""
        return self.put(self.verify_url(url, "put").key, fileobj, length=length)


def _target_key(temp_key: str) -> str:
    """The key a temporary upload file ``.NAME.brightrun-XXXX.part`` is being written for."""
    folder, _, name = temp_key.rpartition("/")
    target = name[1:].rsplit(".brightrun-", 1)[0]
    return f"{folder}/{target}" if folder else target


def _copy_stream(src: BinaryIO, out: BinaryIO, length: int | None) -> int:
    """Copy ``length`` bytes (or everything when None) from ``src`` to ``out``."""
    total = 0
    while length is None or total < length:
        want = DEFAULT_CHUNK if length is None else min(DEFAULT_CHUNK, length - total)
        chunk = src.read(want)
        if not chunk:
            break
        out.write(chunk)
        total += len(chunk)
    if length is not None and total < length:
        raise StorageError(f"the upload ended after {total} of {length} bytes",
                           code="short_upload")
    return total
