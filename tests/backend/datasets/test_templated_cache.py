"""Templated token counts kept on disk: a fresh process plans without a tokenizer, and any change
of what the counts depend on (tokenizer files, length, dataset object) counts again."""
from __future__ import annotations

import io
import os

import pytest

from backend.accounts.users import ensure_local_user
from backend.base_models.tiny_model import TINY_MODEL_ID
from backend.datasets import service as ds
from backend.datasets import templated
from tests.fixtures.paths import SAMPLE_DATA


@pytest.fixture
def dataset(db):
    data = (SAMPLE_DATA / "sample-v4.jsonl").read_bytes()
    info = ds.upload_dataset(ensure_local_user(), io.BytesIO(data), "s.jsonl", "s", size=len(data),
                             submit=False)
    return ds.run_validation(info.id)


def _row(dataset_id):
    from backend.db.models import Dataset
    from backend.db.session import session_scope

    with session_scope() as s:
        return s.get(Dataset, dataset_id).storage_path


def _no_tokenizer(monkeypatch):
    """A fresh process: nothing in memory, and loading a tokenizer fails the test."""
    templated._cache.clear()

    def refuse(_model):
        raise AssertionError("the tokenizer was loaded although the counts are on disk")
    monkeypatch.setattr(templated, "load_tokenizer", refuse)


def test_validation_leaves_counts_a_fresh_process_plans_from(dataset, monkeypatch):
    key = _row(dataset.id)
    files = list((templated._counts_dir()).glob("*.json"))
    assert len(files) == 1  # written by the validation job's templated counting
    first = templated.dataset_tokens(key, TINY_MODEL_ID, 2048)
    _no_tokenizer(monkeypatch)
    again = templated.dataset_tokens(key, TINY_MODEL_ID, 2048)
    assert again == first and again.conversations and again.max_seq_length == 2048
    assert templated.token_statistics(again) == templated.token_statistics(first)
    with pytest.raises(AssertionError, match="tokenizer was loaded"):
        templated.dataset_tokens(key, TINY_MODEL_ID, 64)  # another length: not on disk


def test_a_changed_tokenizer_or_a_bad_file_counts_again(dataset, monkeypatch):
    key = _row(dataset.id)
    first = templated.dataset_tokens(key, TINY_MODEL_ID, 2048)
    name = templated.disk_key(key, len((SAMPLE_DATA / "sample-v4.jsonl").read_bytes()),
                              TINY_MODEL_ID, 2048)
    assert name and (templated._counts_dir() / name).is_file()
    # the tokenizer's files change (a re-installed model): a new key, so the counts are redone
    from backend.base_models.registry import resolve_base_model
    folder = resolve_base_model(TINY_MODEL_ID)
    tok = next(f for f in sorted(os.listdir(folder)) if f.startswith("tokenizer"))
    st = os.stat(os.path.join(folder, tok))
    try:
        os.utime(os.path.join(folder, tok), ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
        changed = templated.disk_key(key, len((SAMPLE_DATA / "sample-v4.jsonl").read_bytes()),
                                     TINY_MODEL_ID, 2048)
        assert changed != name
    finally:
        os.utime(os.path.join(folder, tok), ns=(st.st_atime_ns, st.st_mtime_ns))
    # an unreadable file on disk is counted again, not trusted
    (templated._counts_dir() / name).write_text("{not json")
    templated._cache.clear()
    assert templated.dataset_tokens(key, TINY_MODEL_ID, 2048) == first
    assert (templated._counts_dir() / name).read_text().startswith("{\"ids\"")


def test_an_unknown_model_has_no_disk_key():
    assert templated.disk_key("k", 1, "no/such-model-here", 2048) is None
