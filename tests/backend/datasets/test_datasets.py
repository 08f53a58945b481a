"""Datasets service: upload, in-process validation (the same function the Ray job runs), listing,
rename, delete rules, nothing half-written on bad input."""
import io
from pathlib import Path

import pytest
from sqlalchemy import func, select

from backend.accounts.users import ensure_local_user
from backend.core.errors import Conflict, InvalidInput, InvalidTransition, NotFound
from backend.datasets import service as ds
from backend.db.models import Dataset, TrainingJob
from backend.db.session import session_scope
from backend.notifications import list_notifications
from backend.storage import get_object_store
from tests.fixtures.paths import SAMPLE_DATA

SHARED = SAMPLE_DATA


@pytest.fixture
def me(db):
    return ensure_local_user()


def upload(me, path_or_bytes, name="d", file_name="d.jsonl", **kw):
    data = path_or_bytes if isinstance(path_or_bytes, bytes) else Path(path_or_bytes).read_bytes()
    info = ds.upload_dataset(me, io.BytesIO(data), file_name, name, size=len(data), submit=False,
                             **kw)
    return ds.run_validation(info.id)


def counts():
    with session_scope() as s:
        return s.scalar(select(func.count()).select_from(Dataset))


@pytest.mark.parametrize("sample", ["sample-v4.jsonl", "sample-v3.jsonl"])
def test_samples_become_ready(me, sample):
    info = upload(me, SHARED / sample, file_name=sample)
    assert info.status == "ready" and info.training_ready
    assert info.total_conversations == 5 and info.total_training_pairs == 7
    assert info.total_tokens > 0 and 0 < info.assistant_tokens < info.total_tokens
    assert "tiny-llama" in info.tokenizer_name
    assert info.storage_path == f"datasets/{me.id}/{info.id}/{sample}"
    assert get_object_store().exists(info.storage_path)
    assert len(info.sample_data) == 3
    assert any(n.type == "dataset_ready" for n in list_notifications(me))


def test_invalid_sample_reports_every_bad_line(me):
    info = upload(me, SHARED / "invalid-v4.jsonl")
    assert info.status == "error" and not info.training_ready
    lines = {e["line"] for e in info.validation_errors if e["severity"] == "error"}
    assert set(range(2, 9)) <= lines
    codes = {e["code"] for e in info.validation_errors}
    assert "duplicate_id" in codes
    assert any(n.type == "dataset_failed" for n in list_notifications(me))


@pytest.mark.parametrize("file_name,data,code", [
    ("x.jsonl", b"", "empty_file"),
    ("x.csv", b"a,b\n", "invalid_file_type"),
])
def test_bad_upload_leaves_nothing(me, file_name, data, code):
    with pytest.raises(InvalidInput) as err:
        ds.upload_dataset(me, io.BytesIO(data), file_name, "n", submit=False)
    assert err.value.code == code
    assert counts() == 0
    assert get_object_store().list("datasets/") == []


def test_failed_stream_leaves_nothing(me):
    class Boom(io.RawIOBase):
        def readable(self):
            return True

        def readinto(self, b):
            raise OSError("disk went away")

    with pytest.raises(Exception):
        ds.upload_dataset(me, Boom(), "x.jsonl", "n", submit=False)
    assert counts() == 0 and get_object_store().list("datasets/") == []


def test_path_traversal_file_name_is_sanitised(me):
    info = upload(me, SHARED / "sample-v4.jsonl", file_name="../../x.jsonl")
    assert info.file_name == "x.jsonl" and ".." not in info.storage_path


def test_html_name_kept_literally(me):
    name = "<b>bold</b> **x** [link](http://e)"
    info = upload(me, SHARED / "sample-v4.jsonl", name=name)
    assert ds.get_dataset(me, info.id).name == name


def test_binary_and_bom_crlf(me):
    assert upload(me, b"\x00\x01\x02\xff" * 100).status == "error"
    bom = b"\xef\xbb\xbf" + (SHARED / "sample-v4.jsonl").read_bytes().replace(b"\n", b"\r\n")
    assert upload(me, bom).status == "ready"


def test_list_search_filters_sort_pagination(me):
    a = upload(me, SHARED / "sample-v4.jsonl", name="Alpha set")
    b = upload(me, SHARED / "invalid-v4.jsonl", name="Beta 100%_set")
    assert [d.id for d in ds.list_datasets(me, search="alpha").items] == [a.id]
    assert [d.id for d in ds.list_datasets(me, search="100%_").items] == [b.id]
    assert [d.id for d in ds.list_datasets(me, status="error").items] == [b.id]
    assert [d.id for d in ds.list_datasets(me, training_ready=True).items] == [a.id]
    assert [d.name for d in ds.list_datasets(me, sort="name", descending=False).items] == \
        ["Alpha set", "Beta 100%_set"]
    page = ds.list_datasets(me, per_page=1, page=2)
    assert page.total == 2 and len(page.items) == 1 and page.pages == 2
    assert ds.dataset_counts(me) == {"uploading": 0, "validating": 0, "ready": 1, "error": 1,
                                     "total": 2}
    with pytest.raises(InvalidInput):
        ds.list_datasets(me, sort="password")


def test_rename_and_delete_rules(me):
    info = upload(me, SHARED / "sample-v4.jsonl")
    assert ds.update_dataset(me, info.id, name="New", description="d").name == "New"
    with pytest.raises(InvalidInput):
        ds.update_dataset(me, info.id, name="  ")
    with session_scope() as s:
        s.add(TrainingJob(user_id=me.id, dataset_id=info.id, preset_id="balanced",
                          hyperparameters={}, gpu_config={}, total_epochs=1, status="running"))
    with pytest.raises(Conflict) as err:
        ds.delete_dataset(me, info.id)
    assert err.value.code == "dataset_in_use"
    with session_scope() as s:
        s.scalars(select(TrainingJob)).one().status = "completed"
    ds.delete_dataset(me, info.id)
    with pytest.raises(NotFound):
        ds.get_dataset(me, info.id)
    assert ds.list_datasets(me).total == 0


def test_revalidate_transitions(me):
    info = upload(me, SHARED / "invalid-v4.jsonl")
    again = ds.revalidate(me, info.id, submit=False)
    assert again.status == "validating"
    with pytest.raises(InvalidTransition):
        ds.revalidate(me, info.id, submit=False)
