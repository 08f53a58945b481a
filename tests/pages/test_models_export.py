"""The Models page's Export section: start an export (the Ray submission recorded, the job's work
run in-process with the service's run_export), its progress bar while queued, its files to
download once completed, and a refused export shown as one error (nothing stored)."""
from __future__ import annotations

import pytest

from app.ui.widgets import literal
from backend.exports import service as exports
from tests.pages.conftest import make_dataset, open_app, texts
from tests.pages.job_helpers import finished_job


@pytest.fixture
def submitted(monkeypatch):
    """Ray submissions recorded instead of sent: [(module, args)]."""
    from backend.cluster.gateway import RayGateway

    calls: list[tuple[str, list[str]]] = []

    def submit(self, module, args, **kwargs):
        calls.append((module, args))
        return f"brightrun-export-test-{len(calls)}"

    monkeypatch.setattr(RayGateway, "submit", submit)
    monkeypatch.setattr(RayGateway, "status", lambda self, sub: "RUNNING")
    return calls


def test_export_from_the_models_page(actor, tmp_path, tiny_model_dir, submitted, media):
    d = make_dataset(actor, "trips")
    _, model_id = finished_job(actor, d.id, tmp_path, name="trips", real=True,
                               base_dir=tiny_model_dir)
    at = open_app("models", {"id": model_id})
    assert "No exports yet." in texts(at)
    at.selectbox(key="models_export_format").select("ollama").run()
    at.selectbox(key="models_export_quant").select("q8_0").run()
    at.button(key="models_export_start").click().run()
    assert not at.exception, at.exception
    assert [m for m, _ in submitted] == ["ray_jobs.export_model"]
    (row,) = exports.list_exports(actor, model_id)
    assert row.format == "ollama" and row.quant == "q8_0" and row.status == "queued"
    assert any(p.proto.text == "queued" for p in at.get("progress"))
    exports.run_export(row.id)
    at = open_app("models", {"id": model_id})
    assert not at.exception, at.exception
    names = {b.proto.label for b in at.get("download_button")}
    assert "Download" in names
    shown = texts(at)
    assert "**ollama q8\\_0** — completed" in shown
    assert "Modelfile" in shown and literal("trips-adapter-v1-q8_0.gguf") in shown
    assert media["Modelfile"].startswith(b"FROM ./trips-adapter-v1-q8_0.gguf")


def test_refused_export_is_one_error_and_nothing_stored(actor, tmp_path, submitted):
    from backend import adapters
    from backend.storage import get_object_store

    d = make_dataset(actor, "trips")
    _, model_id = finished_job(actor, d.id, tmp_path, name="trips")  # placeholder adapter files
    prefix = adapters.get_model(actor, model_id).artifacts["prefix"]
    get_object_store().delete(prefix + "adapter_model.safetensors")
    at = open_app("models", {"id": model_id})
    at.button(key="models_export_start").click().run()
    assert not at.exception, at.exception
    assert any("adapter files are gone" in e.value for e in at.error)
    assert exports.list_exports(actor, model_id) == [] and submitted == []
