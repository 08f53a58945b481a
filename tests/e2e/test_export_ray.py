"""`brightrun models export` end to end on a real Ray head: the export runs as a Ray job, its
files are stored and downloaded, asking again reuses the stored export, and llama.cpp loads the
downloaded GGUF when llama-cpp-python is installed."""
from __future__ import annotations

import pytest

from backend.cli import main
from backend.exports import service as exports
from tests.pages.conftest import make_dataset
from tests.pages.job_helpers import finished_job

pytestmark = pytest.mark.ray


def test_cli_export_runs_as_a_ray_job_and_is_reused(ray_env, tmp_path, tiny_model_dir, capsys):
    from backend.accounts.users import ensure_local_user

    me = ensure_local_user()
    d = make_dataset(me, "trips")
    _, model_id = finished_job(me, d.id, tmp_path, name="trips", real=True, base_dir=tiny_model_dir)
    out = tmp_path / "out"
    assert main(["models", "export", model_id, "--format", "gguf", "--quant", "q8_0",
                 "--out", str(out), "--timeout", "300"]) == 0
    printed = " ".join(capsys.readouterr().out.split())
    assert "started as a Ray job" in printed and "100.0 % completed" in printed
    assert sorted(p.name for p in out.iterdir()) == ["README.md", "trips-adapter-v1-q8_0.gguf"]
    (row,) = exports.list_exports(me, model_id)
    assert row.status == "completed"
    assert ray_env.wait(_submission(row.id), timeout_s=60) == "SUCCEEDED"
    assert main(["models", "export", model_id, "--format", "gguf", "--quant", "q8_0"]) == 0
    assert "reusing the stored export" in " ".join(capsys.readouterr().out.split())
    assert len(exports.list_exports(me, model_id)) == 1
    llama_cpp = pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed")
    llm = llama_cpp.Llama(model_path=str(out / "trips-adapter-v1-q8_0.gguf"), n_ctx=128,
                          verbose=False, n_threads=1)
    try:
        assert llm.n_vocab() == 2084 and len(llm.tokenize(b"Hello there")) > 1
    finally:
        llm.close()


def _submission(export_id: str) -> str:
    from backend.db.models import ModelExport
    from backend.db.session import session_scope

    with session_scope() as s:
        return s.get(ModelExport, export_id).ray_submission_id
