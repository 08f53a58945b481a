"""Killed dataset uploads leave nothing (issue 12, acceptance 4): a real upload in a subprocess is
killed mid-way with SIGKILL or SIGINT (Ctrl-C), on the local store and on SeaweedFS S3; after one
reconcile there is no dataset row, no object, no incomplete multipart upload and no ``.part``
file. The source file is a slow stream (what a slow network upload looks like); the upload path is
the product's own ``upload_dataset``."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest
from sqlalchemy import func, select

from backend.datasets.uploads import reconcile_uploads
from backend.db.models import Dataset
from backend.db.session import dispose_engines, session_scope
from backend.storage import LocalObjectStore, get_object_store
from tests.fixtures.paths import REPO

UPLOADER = textwrap.dedent("""
    import io, signal, sys, time
    # Ctrl-C raises KeyboardInterrupt even when this test runs under a shell that started it in
    # the background (which makes SIGINT ignored, and Python then leaves it ignored)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    from backend.datasets.service import upload_dataset
    from backend.accounts.users import ensure_local_user

    class Slow(io.RawIOBase):
        '''40 MiB of JSONL-looking bytes: the first 20 MiB fast, then 256 KiB every 0.5 s.'''
        def __init__(self):
            self.pos = 0
        def readable(self):
            return True
        def read(self, size=-1):
            size = min(size if size and size > 0 else 1 << 18, 1 << 18, (40 << 20) - self.pos)
            if self.pos >= 20 << 20:
                time.sleep(0.5)
            self.pos += size
            return b'{"messages": []}' + b" " * (size - 17) + b"\\n" if size >= 17 else b" " * size

    upload_dataset(ensure_local_user(), Slow(), "big.jsonl", "killed upload", size=None,
                   submit=False)
    print("UPLOAD FINISHED", flush=True)
""")


def _incomplete_multipart(store) -> list:
    return list(store._incomplete_uploads("datasets/"))  # noqa: SLF001 - the server's own list


def _leftovers(store) -> dict[str, int]:
    with session_scope() as s:
        rows = s.scalar(select(func.count()).select_from(Dataset)) or 0
    out = {"rows": rows, "objects": len(store.list("datasets/"))}
    if isinstance(store, LocalObjectStore):
        out["part_files"] = len(list(store.root.rglob("*.part")))
    else:
        out["multipart_uploads"] = len(_incomplete_multipart(store))
    return out


def _in_flight(store) -> bool:
    """The upload is mid-way: a .part file (local) or a multipart upload (S3) exists."""
    if isinstance(store, LocalObjectStore):
        return any(store.root.rglob("*.part"))
    return bool(_incomplete_multipart(store))


@pytest.fixture(params=["local", pytest.param("s3", marks=pytest.mark.s3)])
def store(request, db):
    if request.param == "s3":
        request.getfixturevalue("s3_env")
    return get_object_store()


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT], ids=["SIGKILL", "SIGINT"])
def test_killed_upload_leaves_nothing_after_one_reconcile(store, sig):
    from backend.accounts.users import ensure_local_user

    ensure_local_user()
    dispose_engines()
    proc = subprocess.Popen([sys.executable, "-c", UPLOADER], cwd=REPO, env=dict(os.environ),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not _in_flight(store):
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the upload never got under way"
            time.sleep(0.2)
        time.sleep(1.0)  # well into the slow part
        during = _leftovers(store)
        assert during["rows"] == 1  # the test is real: there is something to leave behind
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert "UPLOAD FINISHED" not in out
    after_kill = _leftovers(store)
    if sig == signal.SIGINT:  # Ctrl-C cleans up itself: row, object, .part, multipart upload
        assert "KeyboardInterrupt" in err, err[-2000:]
        assert set(after_kill.values()) == {0}, after_kill
    else:  # SIGKILL cannot: the row (and the partial upload) stay until a reconcile
        assert after_kill["rows"] == 1 and sum(after_kill.values()) >= 2, after_kill
    time.sleep(2.5)  # older than the stale age given below, with no heartbeat since the kill
    removed = reconcile_uploads(stale_after_s=2.0)
    assert _leftovers(store) == {k: 0 for k in after_kill}, (after_kill, removed)
    assert removed == sum(after_kill.values())


def test_live_upload_is_not_reaped(store):
    """An upload whose process is alive (fresh heartbeat) is left alone by reconcile."""
    from backend.accounts.users import ensure_local_user

    ensure_local_user()
    dispose_engines()
    proc = subprocess.Popen([sys.executable, "-c", UPLOADER], cwd=REPO, env=dict(os.environ),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not _in_flight(store):
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline
            time.sleep(0.2)
        assert reconcile_uploads() == 0  # default stale age: the upload is alive
        assert _in_flight(store) and _leftovers(store)["rows"] == 1
    finally:
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=60)
    assert set(_leftovers(store).values()) == {0}
