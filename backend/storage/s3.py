"""Object store on any S3 server (MinIO, SeaweedFS, AWS), through the ``minio`` client.

Uploads stream (multipart when the length is unknown); downloads stream; expiring URLs are presigned
GET/PUT URLs. The bucket is created on first write when missing. Errors from minio/urllib3 become
:class:`~backend.core.errors.StorageError` with a sentence that names the setting to check.
"""
from __future__ import annotations

import io
import os
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any, BinaryIO
from urllib.parse import urlparse

import certifi
import urllib3
from minio import Minio
from minio.deleteobjects import DeleteObject
from minio.error import InvalidResponseError, S3Error, ServerError
from minio.helpers import check_bucket_name

from backend.core.config import Settings, get_settings
from backend.core.errors import BrightRunError, ConfigError, NotFound, StorageError
from backend.storage.base import ObjectStore, check_expiry, object_not_found
from backend.storage.keys import sanitize_filename, sanitize_key, sanitize_prefix

PART_SIZE = 16 << 20          # multipart part size for uploads of unknown length (S3 minimum 5 MiB)
_MISSING = {"NoSuchKey", "NoSuchBucket", "ResourceNotFound", "NoSuchObject"}
_AUTH = {"AccessDenied", "SignatureDoesNotMatch", "InvalidAccessKeyId", "InvalidToken",
         "ExpiredToken"}


def parse_endpoint(endpoint: str, secure: bool | None) -> tuple[str, bool]:
    """``("host:port", use_tls)`` from ``BRIGHTRUN_S3_ENDPOINT`` (``http://host:port``,
    ``https://host`` or ``host:port``; no scheme means TLS unless BRIGHTRUN_S3_SECURE=false).

    Raises ConfigError for a URL with a path or an unknown scheme."""
    raw = endpoint.strip()
    parsed = urlparse(raw if "://" in raw else f"//{raw}")
    if parsed.scheme not in ("", "http", "https") or not parsed.netloc \
            or parsed.path not in ("", "/"):
        raise ConfigError(f"BRIGHTRUN_S3_ENDPOINT={endpoint!r} must look like http://HOST:PORT "
                          "or https://HOST (no path)")
    tls = secure if secure is not None else parsed.scheme != "http"
    return parsed.netloc, tls


class _CountingReader:
    """Wraps the caller's file object: counts bytes and enforces a declared length."""

    def __init__(self, fileobj: BinaryIO, length: int | None):
        self._src, self._length, self.count = fileobj, length, 0

    def read(self, size: int = -1) -> bytes:
        if self._length is not None:
            left = self._length - self.count
            size = left if size is None or size < 0 else min(size, left)
            if size == 0:
                return b""
        try:
            data = self._src.read(size)
        except Exception as exc:       # the caller's stream failed, not the S3 server
            raise StorageError(f"reading the data to upload failed: {exc}",
                               code="upload_source_failed") from exc
        self.count += len(data)
        if not data and self._length is not None and self.count < self._length:
            raise StorageError(f"the upload ended after {self.count} of {self._length} bytes",
                               code="short_upload")
        return data


class _ResponseReader(io.RawIOBase):
    """A streaming urllib3 response as a raw binary stream that releases its connection on close."""

    def __init__(self, response: Any, uri: str):
        super().__init__()
        self._resp, self._uri = response, uri

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        try:
            data = self._resp.read(len(buffer))
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise StorageError(f"reading {self._uri} failed: {exc}") from exc
        buffer[: len(data)] = data
        return len(data)

    def close(self) -> None:
        if not self.closed:
            self._resp.close()
            self._resp.release_conn()
        super().close()


class S3ObjectStore(ObjectStore):
    """Objects in one bucket of an S3 server."""

    scheme = "s3"

    def __init__(self, bucket: str, endpoint: str, access_key: str | None, secret_key: str | None,
                 region: str = "us-east-1", secure: bool | None = None, cert_check: bool = True):
        try:
            check_bucket_name(bucket, strict=True)
        except ValueError:
            raise ConfigError(f"BRIGHTRUN_STORAGE_URL=s3://{bucket}: {bucket!r} is not a valid "
                              "bucket name (3-63 lowercase letters, digits, '-', '.')") from None
        self.bucket, self.region = bucket, region
        self.endpoint_url = endpoint
        self.host, self.secure = parse_endpoint(endpoint, secure)
        self._access_key, self._secret_key = access_key, secret_key
        self._bucket_ready = False
        http = urllib3.PoolManager(
            timeout=urllib3.Timeout(connect=10, read=300), maxsize=10,
            cert_reqs="CERT_REQUIRED" if cert_check else "CERT_NONE",
            ca_certs=os.environ.get("SSL_CERT_FILE") or certifi.where(),
            retries=urllib3.Retry(total=2, backoff_factor=0.2,
                                  status_forcelist=[500, 502, 503, 504]))
        self.client = Minio(self.host, access_key=access_key, secret_key=secret_key,
                            secure=self.secure, region=region, http_client=http,
                            cert_check=cert_check)

    @classmethod
    def from_settings(cls, settings: Settings | None = None) -> S3ObjectStore:
        """Store for ``BRIGHTRUN_STORAGE_URL=s3://BUCKET`` and the BRIGHTRUN_S3_* settings.

        Raises ConfigError (no endpoint, bad bucket name, bad endpoint)."""
        settings = settings or get_settings()
        parsed = urlparse(settings.storage_url)
        if parsed.path.strip("/"):
            raise ConfigError(f"BRIGHTRUN_STORAGE_URL={settings.storage_url!r}: use s3://BUCKET "
                              "without a path")
        if not settings.s3_endpoint:
            raise ConfigError("BRIGHTRUN_S3_ENDPOINT is required when BRIGHTRUN_STORAGE_URL is s3://…")
        return cls(parsed.netloc, settings.s3_endpoint, settings.s3_access_key,
                   settings.s3_secret_key, settings.s3_region, settings.s3_secure,
                   settings.s3_cert_check)

    # ----- error translation ------------------------------------------------------------------
    @contextmanager
    def _errors(self, action: str, key: str | None = None) -> Iterator[None]:
        try:
            yield
        except BrightRunError:
            raise
        except S3Error as exc:
            if exc.code in _MISSING and key is not None:
                raise object_not_found(self.uri(key)) from None
            if exc.code in _AUTH:
                raise StorageError(f"{action}: the S3 server refused the request ({exc.code})",
                                   code="s3_access_denied",
                                   hint="check BRIGHTRUN_S3_ACCESS_KEY and BRIGHTRUN_S3_SECRET_KEY"
                                   ) from exc
            raise StorageError(f"{action}: S3 error {exc.code}: {exc.message}") from exc
        except (InvalidResponseError, ServerError) as exc:
            raise StorageError(f"{action}: {self.endpoint_url} did not answer like an S3 server "
                               f"({exc})", code="s3_bad_response",
                               hint="check BRIGHTRUN_S3_ENDPOINT") from exc
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            reason = getattr(exc, "reason", None) or exc
            raise StorageError(f"{action}: cannot reach the S3 endpoint {self.endpoint_url} "
                               f"({reason})", code="s3_unreachable",
                               hint="check BRIGHTRUN_S3_ENDPOINT (and BRIGHTRUN_S3_SECURE for TLS)"
                               ) from exc

    def _ensure_bucket(self) -> None:
        if self._bucket_ready:
            return
        with self._errors(f"creating bucket {self.bucket}"):
            if not self.client.bucket_exists(self.bucket):
                try:
                    self.client.make_bucket(self.bucket)
                except S3Error as exc:
                    if exc.code not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                        raise
        self._bucket_ready = True

    # ----- writes -------------------------------------------------------------------------------
    def put(self, key: str, fileobj: BinaryIO, length: int | None = None,
            content_type: str = "application/octet-stream") -> int:
        """See :meth:`ObjectStore.put` (multipart upload when ``length`` is None; an interrupted
        multipart upload is aborted). Raises InvalidInput, StorageError."""
        clean = sanitize_key(key)
        self._ensure_bucket()
        reader = _CountingReader(fileobj, length)
        try:
            with self._errors(f"uploading {self.uri(clean)}"):
                self.client.put_object(self.bucket, clean, reader,
                                       length=-1 if length is None else length,
                                       part_size=PART_SIZE if length is None else 0,
                                       content_type=content_type)
        except BaseException as exc:
            if not isinstance(exc, Exception):
                # Ctrl-C (KeyboardInterrupt) or SystemExit: minio aborts its multipart upload
                # only on Exception, so the parts would stay on the server (and be billed)
                self._abort_uploads(clean)
            raise
        return reader.count

    def _incomplete_uploads(self, prefix: str) -> list[Any]:
        """The multipart uploads started and neither completed nor aborted under ``prefix``."""
        uploads: list[Any] = []
        key_marker = None
        try:
            with self._errors(f"listing incomplete uploads under {self.uri(prefix)}", prefix):
                for _ in range(1000):  # 1000 pages of 1000: more is not a sane bucket
                    page = self.client._list_multipart_uploads(  # noqa: SLF001 - no public API
                        self.bucket, prefix=prefix or None, key_marker=key_marker)
                    uploads.extend(page.uploads)
                    if not page.is_truncated or not page.next_key_marker:
                        break
                    key_marker = page.next_key_marker
        except NotFound:  # no bucket yet: nothing started
            return []
        return uploads

    def _abort_uploads(self, key: str) -> None:
        """Best effort: abort every incomplete multipart upload of exactly ``key``."""
        try:
            for upload in self._incomplete_uploads(key):
                if upload.object_name == key:
                    self.client._abort_multipart_upload(  # noqa: SLF001
                        self.bucket, key, upload.upload_id)
        except Exception:  # noqa: BLE001 - never hide the interruption; reconcile retries
            pass

    def clean_incomplete(self, prefix: str, older_than_s: float,
                         keep: Collection[str] = ()) -> int:
        """See :meth:`ObjectStore.clean_incomplete`: aborts the multipart uploads under
        ``prefix`` started more than ``older_than_s`` seconds ago (except those of ``keep``).
        Raises InvalidInput, StorageError."""
        from datetime import datetime, timezone

        clean = sanitize_prefix(prefix)
        uploads = self._incomplete_uploads(clean)
        now, removed = datetime.now(timezone.utc), 0
        for upload in uploads:
            started = upload.initiated_time
            if upload.object_name in keep:
                continue
            if started is not None and (now - started).total_seconds() < older_than_s:
                continue
            with self._errors(f"aborting the upload of {self.uri(upload.object_name)}"):
                self.client._abort_multipart_upload(  # noqa: SLF001
                    self.bucket, upload.object_name, upload.upload_id)
            removed += 1
        return removed

    def delete(self, key: str) -> None:
        """See :meth:`ObjectStore.delete`. Raises InvalidInput, StorageError."""
        clean = sanitize_key(key)
        try:
            with self._errors(f"deleting {self.uri(clean)}", clean):
                self.client.remove_object(self.bucket, clean)
        except NotFound:
            return

    def delete_prefix(self, prefix: str) -> int:
        """See :meth:`ObjectStore.delete_prefix` (one batch request per 1000 keys).
        Raises InvalidInput, StorageError."""
        clean = sanitize_prefix(prefix)
        folder = clean if not clean or clean.endswith("/") else clean + "/"
        if not folder:
            return super().delete_prefix(folder)      # raises InvalidInput
        keys = self.list(folder)
        if not keys:
            return 0
        with self._errors(f"deleting {self.uri(folder)}"):
            errors = list(self.client.remove_objects(self.bucket,
                                                     (DeleteObject(k) for k in keys)))
        if errors:
            raise StorageError(f"deleting {self.uri(folder)}: {len(errors)} objects could not be "
                               f"deleted (first: {errors[0].name}: {errors[0].message})")
        return len(keys)

    # ----- reads --------------------------------------------------------------------------------
    def open(self, key: str) -> BinaryIO:
        """See :meth:`ObjectStore.open` (streams; close it to release the connection).
        Raises NotFound, InvalidInput, StorageError."""
        clean = sanitize_key(key)
        with self._errors(f"reading {self.uri(clean)}", clean):
            response = self.client.get_object(self.bucket, clean)
        return io.BufferedReader(_ResponseReader(response, self.uri(clean)), 1 << 20)

    def _stat(self, key: str) -> Any:
        clean = sanitize_key(key)
        with self._errors(f"reading {self.uri(clean)}", clean):
            stat = self.client.stat_object(self.bucket, clean)
        if stat.is_dir or clean.endswith("/"):
            raise object_not_found(self.uri(clean))
        return stat

    def exists(self, key: str) -> bool:
        """See :meth:`ObjectStore.exists`. Raises InvalidInput, StorageError."""
        try:
            self._stat(key)
        except NotFound:
            return False
        return True

    def size(self, key: str) -> int:
        """See :meth:`ObjectStore.size`. Raises NotFound, InvalidInput, StorageError."""
        return int(self._stat(key).size)

    def list(self, prefix: str = "") -> list[str]:
        """See :meth:`ObjectStore.list`. Raises InvalidInput, StorageError."""
        clean = sanitize_prefix(prefix)
        try:
            with self._errors(f"listing {self.uri(clean)}", clean):
                names = [o.object_name for o in self.client.list_objects(
                    self.bucket, prefix=clean or None, recursive=True)]
        except NotFound:                       # no bucket yet: nothing stored
            return []
        return sorted(n for n in names if n and not n.endswith("/"))

    def uri(self, key: str) -> str:
        """See :meth:`ObjectStore.uri`. Raises InvalidInput."""
        return f"s3://{self.bucket}/{sanitize_prefix(key)}"

    # ----- URLs and Ray -------------------------------------------------------------------------
    def download_url(self, key: str, expires_s: int = 3600, filename: str | None = None) -> str:
        """Presigned GET URL (with ``Content-Disposition: attachment`` when ``filename`` is given).
        Raises InvalidInput, StorageError."""
        clean, lifetime = sanitize_key(key), check_expiry(expires_s)
        headers = None
        if filename:
            headers = {"response-content-disposition":
                       f'attachment; filename="{sanitize_filename(filename)}"'}
        with self._errors(f"signing a link to {self.uri(clean)}"):
            return self.client.presigned_get_object(self.bucket, clean,
                                                    expires=timedelta(seconds=lifetime),
                                                    response_headers=headers)

    def upload_url(self, key: str, expires_s: int = 3600) -> str:
        """Presigned PUT URL (bucket created first when missing). Raises InvalidInput,
        StorageError."""
        clean, lifetime = sanitize_key(key), check_expiry(expires_s)
        self._ensure_bucket()
        with self._errors(f"signing an upload link to {self.uri(clean)}"):
            return self.client.presigned_put_object(self.bucket, clean,
                                                     expires=timedelta(seconds=lifetime))

    def ray_storage(self, prefix: str) -> tuple[str, Any]:
        """``("bucket/prefix", pyarrow.fs.S3FileSystem)`` for Ray Train (bucket created first).
        Raises InvalidInput, StorageError."""
        from pyarrow import fs as pafs

        clean = sanitize_key(prefix)
        self._ensure_bucket()
        try:
            filesystem = pafs.S3FileSystem(
                access_key=self._access_key, secret_key=self._secret_key, region=self.region,
                endpoint_override=self.host, scheme="https" if self.secure else "http",
                tls_ca_file_path=os.environ.get("SSL_CERT_FILE") or None)
        except Exception as exc:
            raise StorageError(f"cannot open {self.endpoint_url} with pyarrow: {exc}") from exc
        return f"{self.bucket}/{clean}", filesystem
