"""The object store: one suite run against the local store and a real S3 server (SeaweedFS)."""
from __future__ import annotations

import hashlib
import io
import os
import time
from pathlib import Path

import pytest
import requests

from backend.core.config import load_settings, reset_settings
from backend.core.errors import ConfigError, InvalidInput, NotFound, StorageError
from backend.storage import (
    LocalObjectStore,
    S3ObjectStore,
    get_object_store,
    sanitize_filename,
    sanitize_key,
    sanitize_prefix,
)

MB = 1 << 20


@pytest.fixture(params=["local", pytest.param("s3", marks=pytest.mark.s3)])
def store(request):
    """A fresh, empty store of each kind, built from the settings as the product does."""
    request.getfixturevalue("s3_env" if request.param == "s3" else "brightrun_home")
    return get_object_store()


class ChunkedStream(io.RawIOBase):
    """A stream of unknown length (no seek/len) that yields ``total`` pseudo-random bytes in
    uneven chunks and optionally raises after ``fail_after`` bytes."""

    def __init__(self, total: int, fail_after: int | None = None):
        super().__init__()
        self.total, self.fail_after, self.pos = total, fail_after, 0
        self.digest = hashlib.sha256()

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        if self.fail_after is not None and self.pos >= self.fail_after:
            raise OSError("network cable unplugged")
        size = min(size if size and size > 0 else 300_000, 300_001, self.total - self.pos)
        data = _pattern(self.pos, size)
        self.pos += len(data)
        self.digest.update(data)
        return data


_BLOCK = os.urandom(1_000_003)      # a prime length, so chunk borders never line up with it


def _pattern(start: int, size: int) -> bytes:
    """``size`` bytes of a fixed pseudo-random stream starting at offset ``start``."""
    out, pos = bytearray(), start
    while len(out) < size:
        off = pos % len(_BLOCK)
        take = min(size - len(out), len(_BLOCK) - off)
        out += _BLOCK[off:off + take]
        pos += take
    return bytes(out)


# ----- pure key and file name rules ----------------------------------------------------------
@pytest.mark.parametrize("key, expected", [
    ("a/b.txt", "a/b.txt"),
    ("a//b", "a/b"),
    ("a///b//c/", "a/b/c"),
    ("./a/./b", "a/b"),
    ("datasets/1/2/train.jsonl", "datasets/1/2/train.jsonl"),
    ("ünïcode/ok.txt", "ünïcode/ok.txt"),
])
def test_sanitize_key_normalises(key, expected):
    assert sanitize_key(key) == expected


@pytest.mark.parametrize("key", [
    "", "/", "//", ".", "../x", "/abs", "/etc/passwd", "a/../b", "a/..", "..",
    "a\\b", "..\\x", "a\x00b", "a\nb", "tab\there", "del\x7f", "x" * 1025, None, 5,
])
def test_sanitize_key_rejects(key):
    with pytest.raises(InvalidInput) as err:
        sanitize_key(key)
    assert err.value.code == "invalid_key"


def test_sanitize_prefix_keeps_trailing_slash_and_allows_empty():
    assert sanitize_prefix("") == ""
    assert sanitize_prefix("models/1/") == "models/1/"
    assert sanitize_prefix("models//1") == "models/1"
    with pytest.raises(InvalidInput):
        sanitize_prefix("../models")


@pytest.mark.parametrize("name, expected", [
    ("train.jsonl", "train.jsonl"),
    ("../../x.jsonl", "x.jsonl"),
    ("/etc/passwd", "passwd"),
    ("C:\\Users\\me\\data.csv", "data.csv"),
    ("my data (v2).jsonl", "my data _v2_.jsonl"),
    ("..hidden.json", "hidden.json"),
    ("a\x00b.txt", "ab.txt"),
    ("naïve.jsonl", "na_ve.jsonl"),
    ("日本語.jsonl", "file.jsonl"),
    ("...", "file"),
    ("noext", "noext"),
    ("dir/", "dir"),
])
def test_sanitize_filename(name, expected):
    assert sanitize_filename(name) == expected


def test_sanitize_filename_truncates_keeping_extension():
    name = sanitize_filename("a" * 500 + ".jsonl")
    assert len(name) == 200 and name.endswith(".jsonl")


@pytest.mark.parametrize("name", ["", "   ", None])
def test_sanitize_filename_rejects_empty(name):
    with pytest.raises(InvalidInput):
        sanitize_filename(name)


# ----- store selection -------------------------------------------------------------------------
def test_unknown_scheme_lists_supported(brightrun_home):
    settings = load_settings({"BRIGHTRUN_HOME": str(brightrun_home)}).model_copy(
        update={"storage_url": "gs://bucket"})
    with pytest.raises(ConfigError) as err:
        get_object_store(settings)
    assert "file://" in str(err.value) and "s3://" in str(err.value)


def test_default_store_is_local_under_home(brightrun_home):
    store = get_object_store()
    assert isinstance(store, LocalObjectStore)
    assert store.root == (brightrun_home / "objects").resolve()


# ----- the shared suite ------------------------------------------------------------------------
def test_streaming_put_unknown_length_round_trip(store):
    src = ChunkedStream(12 * MB + 123)      # > 5 MiB parts: a real multipart upload on S3
    assert store.put("big/blob.bin", src) == 12 * MB + 123
    assert store.size("big/blob.bin") == 12 * MB + 123
    digest, chunks = hashlib.sha256(), 0
    for chunk in store.iter_chunks("big/blob.bin", chunk_size=MB):
        assert len(chunk) <= MB
        digest.update(chunk)
        chunks += 1
    assert digest.hexdigest() == src.digest.hexdigest()
    assert chunks >= 12
    with store.open("big/blob.bin") as stream:
        assert stream.read(10) == _pattern(0, 10)


def test_put_with_length_reads_exactly_length(store):
    assert store.put("k/exact.bin", io.BytesIO(b"0123456789"), length=4) == 4
    assert store.get_bytes("k/exact.bin") == b"0123"


def test_put_shorter_than_length_fails_and_leaves_nothing(store):
    with pytest.raises(StorageError):
        store.put("k/short.bin", io.BytesIO(b"abc"), length=10)
    assert not store.exists("k/short.bin")
    assert store.list("k/") == []


@pytest.mark.parametrize("fail_after", [100, 17 * MB])   # S3: in the first part / after one part
def test_failed_put_leaves_nothing(store, fail_after):
    store.put_bytes("keep/old.bin", b"old")
    with pytest.raises(StorageError):
        store.put("keep/new.bin", ChunkedStream(20 * MB, fail_after=fail_after))
    with pytest.raises(StorageError):
        store.put("keep/old.bin", ChunkedStream(20 * MB, fail_after=fail_after))
    assert not store.exists("keep/new.bin")
    assert store.get_bytes("keep/old.bin") == b"old"        # the old object is untouched
    assert store.list("keep/") == ["keep/old.bin"]
    if isinstance(store, LocalObjectStore):
        assert sorted(p.name for p in (store.root / "keep").iterdir()) == ["old.bin"]


def test_exists_size_list_delete(store):
    for key in ["d/1/a.txt", "d/1/sub/b.txt", "d/10/c.txt", "e/x.txt"]:
        store.put_bytes(key, key.encode())
    assert store.exists("d/1/a.txt") and not store.exists("d/1/zzz.txt")
    assert not store.exists("d/1")                      # a folder is not an object
    for call in (lambda: store.size("d/1"), lambda: store.get_bytes("d/1")):
        with pytest.raises(NotFound):
            call()
    assert store.size("d/1/sub/b.txt") == len(b"d/1/sub/b.txt")
    assert store.list("d/1/") == ["d/1/a.txt", "d/1/sub/b.txt"]
    assert store.list("d/1") == ["d/1/a.txt", "d/1/sub/b.txt", "d/10/c.txt"]   # string prefix
    assert store.list("") == ["d/1/a.txt", "d/1/sub/b.txt", "d/10/c.txt", "e/x.txt"]
    assert store.list("nothing/") == []
    store.delete("d/1/a.txt")
    store.delete("d/1/a.txt")                           # missing: no error
    assert not store.exists("d/1/a.txt")
    assert store.delete_prefix("d/1") == 1              # a folder: d/10 is not touched
    assert store.list("d/") == ["d/10/c.txt"]
    assert store.delete_prefix("nothing") == 0
    with pytest.raises(InvalidInput):
        store.delete_prefix("")


def test_missing_object_raises_not_found(store, tmp_path):
    for call in (lambda: store.open("no/such.bin"), lambda: store.get_bytes("no/such.bin"),
                 lambda: store.size("no/such.bin"), lambda: list(store.iter_chunks("no/x")),
                 lambda: store.download_to("no/such.bin", tmp_path / "never")):
        with pytest.raises(NotFound) as err:
            call()
        assert err.value.code == "object_not_found"
    assert not (tmp_path / "never").exists()


@pytest.mark.parametrize("key", ["../x", "/abs", "a/../b", "a\x00b", "a\x1bb", "a\\b"])
def test_store_rejects_bad_keys(store, key):
    with pytest.raises(InvalidInput):
        store.put_bytes(key, b"x")
    with pytest.raises(InvalidInput):
        store.get_bytes(key)


def test_double_slash_key_is_the_same_object(store):
    store.put_bytes("a//b", b"same")
    assert store.get_bytes("a/b") == b"same"
    assert store.list("a/") == ["a/b"]
    assert store.uri("a//b").endswith("/a/b")


def test_uri(store):
    uri = store.uri("models/7/adapter_config.json")
    if isinstance(store, S3ObjectStore):
        assert uri == f"s3://{store.bucket}/models/7/adapter_config.json"
    else:
        assert uri == (store.root / "models/7/adapter_config.json").as_uri()
        assert uri.startswith("file:///")


def test_upload_dir_download_dir_round_trip(store, tmp_path):
    src = tmp_path / "adapter"
    (src / "tokenizer").mkdir(parents=True)
    (src / "adapter_model.safetensors").write_bytes(os.urandom(3 * MB))
    (src / "adapter_config.json").write_text('{"r": 8}')
    (src / "tokenizer" / "tokenizer.json").write_text("{}")
    written = store.upload_dir(src, "models/42")
    assert written == {"models/42/adapter_config.json": 8,
                       "models/42/adapter_model.safetensors": 3 * MB,
                       "models/42/tokenizer/tokenizer.json": 2}
    got = store.download_dir("models/42/", tmp_path / "back")
    assert got == {"adapter_config.json": 8, "adapter_model.safetensors": 3 * MB,
                   "tokenizer/tokenizer.json": 2}
    for rel in got:
        assert (tmp_path / "back" / rel).read_bytes() == (src / rel).read_bytes()
    with pytest.raises(NotFound):
        store.download_dir("models/43", tmp_path / "none")


def test_download_to_is_a_copy(store, tmp_path):
    store.put_bytes("f/x.jsonl", b'{"a": 1}\n')
    target = tmp_path / "deep" / "dir" / "x.jsonl"
    assert store.download_to("f/x.jsonl", target) == 9
    assert target.read_bytes() == b'{"a": 1}\n'
    assert [p.name for p in target.parent.iterdir()] == ["x.jsonl"]


@pytest.mark.parametrize("expires_s", [0, -5, 8 * 24 * 3600])
def test_url_lifetime_is_checked(store, expires_s):
    with pytest.raises(InvalidInput):
        store.download_url("a/b", expires_s=expires_s)


# ----- expiring URLs: S3 ------------------------------------------------------------------------
@pytest.mark.s3
def test_s3_presigned_get_works_then_expires(s3_env):
    store = get_object_store()
    data = os.urandom(200_000)
    store.put_bytes("datasets/1/2/train.jsonl", data)
    url = store.download_url("datasets/1/2/train.jsonl", expires_s=2, filename="../../train.jsonl")
    resp = requests.get(url, timeout=30)
    assert resp.status_code == 200 and resp.content == data
    assert 'filename="train.jsonl"' in resp.headers.get("Content-Disposition", "")
    time.sleep(3.5)
    assert requests.get(url, timeout=30).status_code == 403


@pytest.mark.s3
def test_s3_presigned_put_uploads(s3_env):
    store = get_object_store()
    url = store.upload_url("uploads/u1/data.jsonl", expires_s=60)
    resp = requests.put(url, data=b'{"messages": []}\n', timeout=30)
    assert resp.status_code == 200, resp.text
    assert store.get_bytes("uploads/u1/data.jsonl") == b'{"messages": []}\n'


@pytest.mark.s3
def test_s3_ray_storage_filesystem_is_usable(s3_env):
    store = get_object_store()
    path, fs = store.ray_storage("checkpoints/job-9")
    assert path == f"{s3_env}/checkpoints/job-9" and not path.startswith("s3://")
    with fs.open_output_stream(f"{path}/checkpoint_000/state.bin") as out:
        out.write(b"weights")
    with fs.open_input_stream(f"{path}/checkpoint_000/state.bin") as inp:
        assert inp.read() == b"weights"
    assert store.get_bytes("checkpoints/job-9/checkpoint_000/state.bin") == b"weights"


@pytest.mark.s3
def test_s3_wrong_secret_is_a_clear_error(s3_env, monkeypatch):
    monkeypatch.setenv("BRIGHTRUN_S3_SECRET_KEY", "wrong-secret")
    reset_settings()
    with pytest.raises(StorageError) as err:
        get_object_store().put_bytes("x/y", b"1")
    assert err.value.code == "s3_access_denied"
    assert "BRIGHTRUN_S3_SECRET_KEY" in str(err.value)


def test_s3_unreachable_endpoint_names_the_setting(brightrun_home, monkeypatch):
    import socket
    with socket.socket() as sock:           # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.setenv("BRIGHTRUN_STORAGE_URL", "s3://some-bucket")
    monkeypatch.setenv("BRIGHTRUN_S3_ENDPOINT", f"http://127.0.0.1:{port}")
    reset_settings()
    with pytest.raises(StorageError) as err:
        get_object_store().exists("a/b")
    assert err.value.code == "s3_unreachable"
    assert "BRIGHTRUN_S3_ENDPOINT" in str(err.value)


def test_s3_bad_bucket_name_is_config_error(brightrun_home, monkeypatch):
    monkeypatch.setenv("BRIGHTRUN_STORAGE_URL", "s3://Bad_Bucket")
    monkeypatch.setenv("BRIGHTRUN_S3_ENDPOINT", "http://127.0.0.1:9")
    reset_settings()
    with pytest.raises(ConfigError):
        get_object_store()


# ----- expiring URLs: local ---------------------------------------------------------------------
def test_local_signed_url_works_then_expires(brightrun_home):
    store = get_object_store()
    store.put_bytes("datasets/1/2/train.jsonl", b"hello")
    url = store.download_url("datasets/1/2/train.jsonl", expires_s=1, filename="../t.jsonl")
    assert url.startswith("file:///") and "sig=" in url and "expires=" in url
    assert store.verify_url(url).filename == "t.jsonl"
    with store.open_url(url) as stream:
        assert stream.read() == b"hello"
    time.sleep(2.1)
    with pytest.raises(StorageError) as err:
        store.open_url(url)
    assert err.value.code == "url_expired"


@pytest.mark.parametrize("tamper", [
    lambda u: u[:-1] + ("0" if u[-1] != "0" else "1"),                  # signature
    lambda u: u.replace("expires=", "expires=9"),                         # lifetime
    lambda u: u.replace("train.jsonl", "other.jsonl", 1),                 # object
    lambda u: u.replace("op=get", "op=put"),                              # operation
    lambda u: u.split("?")[0],                                            # no query
])
def test_local_tampered_url_is_invalid(brightrun_home, tamper):
    store = get_object_store()
    store.put_bytes("datasets/1/2/train.jsonl", b"hello")
    store.put_bytes("datasets/1/2/other.jsonl", b"secret")
    url = store.download_url("datasets/1/2/train.jsonl", expires_s=60)
    with pytest.raises(StorageError) as err:
        store.open_url(tamper(url))
    assert err.value.code == "url_invalid"


def test_local_url_from_another_secret_is_invalid(brightrun_home, monkeypatch):
    store = get_object_store()
    store.put_bytes("a/b", b"x")
    url = store.download_url("a/b")
    monkeypatch.setenv("BRIGHTRUN_SECRET_KEY", "another-secret")
    reset_settings()
    with pytest.raises(StorageError) as err:
        get_object_store().open_url(url)
    assert err.value.code == "url_invalid"


def test_local_upload_url(brightrun_home):
    store = get_object_store()
    url = store.upload_url("uploads/x.jsonl", expires_s=60)
    assert store.put_url(url, io.BytesIO(b"data")) == 4
    assert store.get_bytes("uploads/x.jsonl") == b"data"
    with pytest.raises(StorageError):          # a download link cannot upload
        store.put_url(store.download_url("uploads/x.jsonl"), io.BytesIO(b"evil"))


def test_local_secret_file_is_created_once_private(brightrun_home):
    store = get_object_store()
    url = store.download_url("a/b")
    secret = brightrun_home / "secret.key"
    assert secret.exists() and (secret.stat().st_mode & 0o777) == 0o600
    content = secret.read_text()
    reset_settings()
    get_object_store().verify_url(url)          # a new store instance re-reads the same secret
    assert secret.read_text() == content


def test_local_ray_storage(brightrun_home):
    store = get_object_store()
    path, fs = store.ray_storage("checkpoints/job-1")
    assert fs is None and Path(path).is_absolute() and Path(path).is_dir()
    assert Path(path) == store.root / "checkpoints" / "job-1"


def test_local_file_url_must_be_absolute(brightrun_home):
    with pytest.raises(ConfigError):
        LocalObjectStore.from_url("file://relative/path")
