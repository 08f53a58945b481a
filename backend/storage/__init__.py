"""Object storage for datasets, checkpoints and adapters, chosen by ``BRIGHTRUN_STORAGE_URL``.

``file:///PATH`` -> :class:`LocalObjectStore`; ``s3://BUCKET`` -> :class:`S3ObjectStore` (MinIO or any
S3 server, configured by the BRIGHTRUN_S3_* settings). See docs/storage.md for the key layout.
"""
from __future__ import annotations

from backend.core.config import Settings, get_settings
from backend.core.errors import ConfigError
from backend.storage.base import ObjectStore
from backend.storage.keys import join_key, sanitize_filename, sanitize_key, sanitize_prefix
from backend.storage.local import LocalObjectStore, SignedURL, get_signing_secret

SUPPORTED_SCHEMES = ("file://", "s3://")

__all__ = [
    "LocalObjectStore", "ObjectStore", "S3ObjectStore", "SUPPORTED_SCHEMES", "SignedURL",
    "get_object_store", "get_signing_secret", "join_key", "sanitize_filename", "sanitize_key",
    "sanitize_prefix",
]


def __getattr__(name: str):
    """``S3ObjectStore`` is imported on first use: its S3 client library costs ~1 s to import,
    which every dashboard process on the local-folder default would otherwise pay."""
    if name == "S3ObjectStore":
        from backend.storage.s3 import S3ObjectStore

        return S3ObjectStore
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def get_object_store(settings: Settings | None = None) -> ObjectStore:
    """The object store named by ``settings.storage_url`` (default: the process settings).

    Raises ConfigError for an unsupported scheme (the message lists file:// and s3://) or an
    incomplete S3 configuration."""
    settings = settings or get_settings()
    url = settings.storage_url
    scheme = url.split("://", 1)[0] if "://" in url else ""
    if scheme == "file":
        return LocalObjectStore.from_url(url, settings)
    if scheme == "s3":
        from backend.storage.s3 import S3ObjectStore

        return S3ObjectStore.from_settings(settings)
    raise ConfigError(f"BRIGHTRUN_STORAGE_URL={url!r} has an unsupported scheme {scheme!r}; "
                      f"supported: {', '.join(SUPPORTED_SCHEMES)}")
