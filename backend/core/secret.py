"""The product's signing secret (session cookies, signed download URLs): one per installation."""
from __future__ import annotations

import os
import secrets
import tempfile
from pathlib import Path

from backend.core.config import Settings, get_settings
from backend.core.errors import StorageError


def get_signing_secret(settings: Settings | None = None) -> bytes:
    """The product's signing secret: ``BRIGHTRUN_SECRET_KEY`` when set, else the contents of
    ``$BRIGHTRUN_HOME/secret.key``, created once (random, mode 0600) when missing.

    Raises StorageError when the secret file cannot be created or read."""
    settings = settings or get_settings()
    if settings.secret_key:
        return settings.secret_key.encode("utf-8")
    path = Path(settings.home) / "secret.key"
    try:
        if not path.exists():
            _create_secret_file(path)
        secret = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise StorageError(f"cannot create or read the signing secret {path}: "
                           f"{exc.strerror or exc}", hint="set BRIGHTRUN_SECRET_KEY") from exc
    if not secret:
        raise StorageError(f"the signing secret file {path} is empty",
                           hint="delete it to generate a new one, or set BRIGHTRUN_SECRET_KEY")
    return secret.encode("utf-8")


def _create_secret_file(path: Path) -> None:
    """Write a new secret atomically; if another process won the race, keep its secret."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".secret.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(secrets.token_hex(32) + "\n")
        try:
            os.link(tmp, path)           # fails if the file appeared meanwhile
        except FileExistsError:
            pass
    finally:
        Path(tmp).unlink(missing_ok=True)
