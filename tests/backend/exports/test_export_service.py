"""The export service against the embedded home (SQLite + local object store, run in-process):
stored next to the adapter, reused when asked again, refused with one line and nothing stored for a
bad model id, a deleted adapter, adapter files gone, an unsupported architecture; a failed export
keeps no object. The CLI on a real Ray head: tests/e2e/test_export_ray.py."""
from __future__ import annotations

import json
import shutil

import pytest
from sqlalchemy import func, select

from backend import adapters
from backend.cli import main
from backend.core.errors import InvalidInput, NotFound
from backend.db.models import ModelArtifact, ModelExport
from backend.db.session import session_scope
from backend.exports import service as exports
from backend.storage import get_object_store
from tests.pages.conftest import make_dataset
from tests.pages.job_helpers import finished_job


@pytest.fixture
def me(brightrun_home):
    from backend.accounts.users import ensure_local_user

    return ensure_local_user()


@pytest.fixture
def model_id(me, tmp_path, tiny_model_dir):
    d = make_dataset(me, "trips")
    return finished_job(me, d.id, tmp_path, name="trips", real=True, base_dir=tiny_model_dir)[1]


def _nothing_stored() -> None:
    with session_scope() as s:
        assert s.scalar(select(func.count()).select_from(ModelExport)) == 0
    assert get_object_store().list("exports/") == []


def test_export_stored_next_to_the_adapter_and_reused(me, model_id):
    adapter_files = adapters.model_files(me, model_id)
    info, reused = exports.request_export(me, model_id, "ollama", submit=False)
    assert not reused and info.status == "queued" and info.quant == "f16"
    done = exports.run_export(info.id)
    assert done.status == "completed" and done.progress == 100.0 and done.seconds > 0
    names = sorted(done.files)
    assert names == ["Modelfile", "README.md", "trips-adapter-v1-f16.gguf"]
    keys = get_object_store().list(f"exports/{model_id}/")
    assert sorted(k.rsplit("/", 1)[1] for k in keys) == names
    assert adapters.model_files(me, model_id) == adapter_files  # the adapter's download unchanged
    with exports.open_export_file(me, info.id, "Modelfile") as fh:
        modelfile = fh.read().decode()
    assert modelfile.startswith("FROM ./trips-adapter-v1-f16.gguf")
    # the training data's system prompt (tests/pages/conftest.conversation), not SmolLM's default
    assert 'SYSTEM """You are a helpful support agent."""' in modelfile
    assert all(u["url"] for u in exports.download_urls(me, info.id))
    again, reused = exports.request_export(me, model_id, "ollama", "f16", submit=False)
    assert reused and again.id == info.id
    other, reused = exports.request_export(me, model_id, "gguf", "q8_0", submit=False)
    assert not reused and other.id != info.id
    assert [e.id for e in exports.list_exports(me, model_id)] == [other.id, info.id]


def test_merged_export_card_names_the_training(me, model_id, capsys):
    info, _ = exports.request_export(me, model_id, "merged", submit=False)
    exports.run_export(info.id)
    with exports.open_export_file(me, info.id, "README.md") as fh:
        card = fh.read().decode()
    assert "trips" in card and "brightrun/tiny-llama" in card and "--enable-lora" in card
    assert main(["models", "exports", model_id, "--json"]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert row["format"] == "merged" and row["status"] == "completed"


def test_bad_model_id_and_deleted_adapter_refused(me, model_id, capsys):
    with pytest.raises(NotFound):
        exports.request_export(me, "no-such-model", "gguf", submit=False)
    assert main(["models", "export", "no-such-model", "--format", "gguf"]) == 1
    err = capsys.readouterr().err.strip()
    assert "not found" in err and len(err.splitlines()) == 1
    adapters.delete_model(me, model_id)
    with pytest.raises(NotFound):
        exports.request_export(me, model_id, "merged", submit=False)
    _nothing_stored()


def test_adapter_files_gone_refused(me, model_id):
    prefix = adapters.get_model(me, model_id).artifacts["prefix"]
    get_object_store().delete(prefix + "adapter_model.safetensors")
    with pytest.raises(InvalidInput) as err:
        exports.request_export(me, model_id, "merged", submit=False)
    assert err.value.code == "adapter_missing"
    _nothing_stored()


def test_unsupported_architecture_refused(me, model_id, tiny_model_dir, tmp_path, capsys):
    base = tmp_path / "not-llama"
    shutil.copytree(tiny_model_dir, base)
    cfg = json.loads((base / "config.json").read_text())
    (base / "config.json").write_text(json.dumps({**cfg, "model_type": "qwen2"}))
    with session_scope() as s:
        s.get(ModelArtifact, model_id).base_model = str(base)
    with pytest.raises(InvalidInput) as err:
        exports.request_export(me, model_id, "gguf", submit=False)
    assert err.value.code == "unsupported_architecture"
    assert main(["models", "export", model_id, "--format", "ollama"]) == 1
    assert "not model type 'qwen2'" in capsys.readouterr().err
    _nothing_stored()
    # merged works for any architecture transformers loads
    assert exports.request_export(me, model_id, "merged", submit=False)[0].status == "queued"


def test_failed_export_keeps_no_object_and_is_not_reused(me, model_id):
    info, _ = exports.request_export(me, model_id, "gguf", submit=False)
    prefix = adapters.get_model(me, model_id).artifacts["prefix"]
    get_object_store().put_bytes(prefix + "adapter_config.json", b"{not json")
    with pytest.raises(Exception):
        exports.run_export(info.id)
    failed = exports.get_export(me, info.id)
    assert failed.status == "failed" and failed.error and "\n" not in failed.error
    assert get_object_store().list("exports/") == []
    with pytest.raises(InvalidInput, match="failed, not completed"):
        exports.export_files(me, info.id)
    again, reused = exports.request_export(me, model_id, "gguf", submit=False)
    assert not reused and again.id != info.id
