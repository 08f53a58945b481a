"""Object storage for datasets, checkpoints and adapters, chosen by ``BRIGHTRUN_STORAGE_URL``.

``file:///PATH`` -> :class:`LocalObjectStore`; ``s3://BUCKET`` -> :class:`S3ObjectStore` (MinIO or any
S3 server, configured by the BRIGHTRUN_S3_* settings). See docs/storage.md for the key layout.
"""
from __future__ import annotations

from backend.config import Settings, get_settings
from backend.errors import ConfigError
from backend.storage.base import ObjectStore
from backend.storage.keys import join_key, sanitize_filename, sanitize_key, sanitize_prefix
from backend.storage.local import LocalObjectStore, SignedURL, get_signing_secret
from backend.storage.s3 import S3ObjectStore

SUPPORTED_SCHEMES = ("file://", "s3://")

__all__ = [
    "LocalObjectStore", "ObjectStore", "S3ObjectStore", "SUPPORTED_SCHEMES", "SignedURL",
    "get_object_store", "get_signing_secret", "join_key", "sanitize_filename", "sanitize_key",
    "sanitize_prefix",
]


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
        return S3ObjectStore.from_settings(settings)
    raise ConfigError(f"BRIGHTRUN_STORAGE_URL={url!r} has an unsupported scheme {scheme!r}; "
                      f"supported: {', '.join(SUPPORTED_SCHEMES)}")
