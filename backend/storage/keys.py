"""Pure checks for object keys and user-supplied file names (no I/O).

Every key that reaches an :class:`~backend.storage.base.ObjectStore` goes through :func:`sanitize_key`
(or :func:`sanitize_prefix` for listing), so a key can never name a path outside the store's root and
means the same thing on the local store and on S3. File names that users upload go through
:func:`sanitize_filename` before they become the last part of a key.
"""
from __future__ import annotations

import re

from backend.core.errors import InvalidInput

MAX_KEY_BYTES = 1024          # the S3 limit on key length
MAX_FILENAME_CHARS = 200
_MAX_EXT_CHARS = 20
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_UNSAFE_FILENAME_CHARS = re.compile(r"[^A-Za-z0-9._\- ]+")


def _check_text(value: object, what: str) -> str:
    if not isinstance(value, str):
        raise InvalidInput(f"{what} must be a string, got {type(value).__name__}",
                           code="invalid_key")
    if _CONTROL.search(value):
        raise InvalidInput(f"{what} {value!r} contains control characters", code="invalid_key")
    if "\\" in value:
        raise InvalidInput(f"{what} {value!r} contains a backslash; use '/' between parts",
                           code="invalid_key")
    if value.startswith("/"):
        raise InvalidInput(f"{what} {value!r} is an absolute path; keys are relative "
                           "(e.g. datasets/1/2/train.jsonl)", code="invalid_key")
    return value


def _clean_parts(value: str, what: str) -> list[str]:
    parts = [p for p in value.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise InvalidInput(f"{what} {value!r} contains a '..' part", code="invalid_key")
    return parts


def sanitize_key(key: str) -> str:
    """Return the normalised form of an object key (duplicate slashes and ``.`` parts removed).

    Raises InvalidInput (code ``invalid_key``) for: an empty key, an absolute path, a ``..`` part,
    a backslash, control characters (NUL included) or a key longer than 1024 bytes.
    """
    _check_text(key, "object key")
    parts = _clean_parts(key, "object key")
    if not parts:
        raise InvalidInput(f"object key {key!r} is empty", code="invalid_key")
    clean = "/".join(parts)
    if len(clean.encode("utf-8")) > MAX_KEY_BYTES:
        raise InvalidInput(f"object key is longer than {MAX_KEY_BYTES} bytes", code="invalid_key")
    return clean


def sanitize_prefix(prefix: str) -> str:
    """Normalise a key prefix for listing: like :func:`sanitize_key`, but ``""`` (everything) is
    allowed and a trailing ``/`` is kept (``"models/1/"`` does not match ``models/10/...``).

    Raises InvalidInput (code ``invalid_key``) for the same problems as :func:`sanitize_key`.
    """
    _check_text(prefix, "key prefix")
    parts = _clean_parts(prefix, "key prefix")
    if not parts:
        return ""
    clean = "/".join(parts)
    if prefix.endswith("/"):
        clean += "/"
    return clean


def join_key(*parts: str) -> str:
    """Join key parts with ``/`` and sanitise the result.

    Raises InvalidInput as :func:`sanitize_key` does.
    """
    return sanitize_key("/".join(str(p).strip("/") for p in parts if str(p).strip("/")))


def sanitize_filename(name: str) -> str:
    """Return a safe file name: the last path part only (``../../x.jsonl`` -> ``x.jsonl``), characters
    other than letters, digits, ``._- `` replaced by ``_``, no leading dots, at most 200 characters
    with the extension kept. A name with nothing usable left becomes ``file`` (plus its extension).

    Raises InvalidInput (code ``invalid_filename``) when ``name`` is not a string or is blank.
    """
    if not isinstance(name, str) or not name.strip():
        raise InvalidInput(f"file name {name!r} is empty", code="invalid_filename")
    base = re.split(r"[/\\]", _CONTROL.sub("", name).strip().rstrip("/\\"))[-1]
    base = _UNSAFE_FILENAME_CHARS.sub("_", base).strip(" .")
    stem, dot, ext = base.rpartition(".")
    if not dot:
        stem, ext = base, ""
    ext = ext.strip(" _")[:_MAX_EXT_CHARS]
    stem = stem.strip(" .")
    if not stem or set(stem) <= {"_"}:
        stem = "file"
    suffix = f".{ext}" if ext else ""
    stem = stem[: MAX_FILENAME_CHARS - len(suffix)].rstrip(" .") or "file"
    return stem + suffix
