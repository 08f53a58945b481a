"""Dead uploads: a stale ``uploading`` row can be deleted and is reconciled; a live one is not;
``.part`` leftovers of the local store are removed only when old and not of a live upload."""
import os
import time
from datetime import timedelta

import pytest

from backend.accounts.users import ensure_local_user
from backend.core.errors import Conflict
from backend.datasets import service as ds
from backend.datasets import uploads
from backend.db.models import Dataset, new_id, utcnow
from backend.db.session import session_scope
from backend.storage import get_object_store


@pytest.fixture
def me(db):
    return ensure_local_user()


def _uploading(me, age_s: float) -> tuple[str, str]:
    """An ``uploading`` row whose last heartbeat was ``age_s`` ago, with a partial object."""
    dataset_id = new_id()
    key = f"datasets/{me.id}/{dataset_id}/d.jsonl"
    get_object_store().put_bytes(key, b'{"messages": []}\n')
    with session_scope() as s:
        s.add(Dataset(id=dataset_id, user_id=me.id, name="half", status="uploading",
                      storage_bucket="local", storage_path=key, file_name="d.jsonl", file_size=0))
    with session_scope() as s:
        s.get(Dataset, dataset_id).updated_at = utcnow() - timedelta(seconds=age_s)
    return dataset_id, key


@pytest.mark.parametrize("age_s, stale", [(0, False), (uploads.STALE_AFTER_S - 5, False),
                                          (uploads.STALE_AFTER_S + 1, True)])
def test_delete_of_an_upload_depends_on_its_heartbeat(me, age_s, stale):
    dataset_id, key = _uploading(me, age_s)
    if not stale:
        with pytest.raises(Conflict):
            ds.delete_dataset(me, dataset_id)
        assert get_object_store().exists(key)
        return
    ds.delete_dataset(me, dataset_id)
    with session_scope() as s:
        assert s.get(Dataset, dataset_id) is None
    assert not get_object_store().exists(key)


def test_reconcile_removes_dead_uploads_only(me):
    dead, dead_key = _uploading(me, uploads.STALE_AFTER_S + 1)
    live, live_key = _uploading(me, 1)
    store = get_object_store()
    orphan = f"datasets/{me.id}/{new_id()}/lost.jsonl"  # an object whose row is gone
    store.put_bytes(orphan, b"x")
    folder = store.root / "datasets" / me.id / live
    live_part = folder / ".d.jsonl.brightrun-abc123.part"
    old_part = folder / ".other.jsonl.brightrun-def456.part"
    for part in (live_part, old_part):
        part.write_bytes(b"partial")
        os.utime(part, (time.time() - 3600, time.time() - 3600))
    assert uploads.reconcile_uploads() == 3  # dead row (+ its object), old .part, orphan object
    with session_scope() as s:
        assert s.get(Dataset, dead) is None and s.get(Dataset, live) is not None
    assert not store.exists(dead_key) and not store.exists(orphan) and store.exists(live_key)
    assert live_part.exists() and not old_part.exists()
    assert uploads.reconcile_uploads() == 0


def test_heartbeat_touches_the_row(me):
    dataset_id, _ = _uploading(me, 50)
    import io

    reader = uploads.HeartbeatReader(io.BytesIO(b"abc"), dataset_id, every_s=0.0)
    assert reader.read(2) == b"ab"
    with session_scope() as s:
        assert not uploads.is_stale(s.get(Dataset, dataset_id), 10)
