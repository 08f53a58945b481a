"""Sweeps page: the sweep picked from the URL, its trials with outcome (stopped early) and the
best marked with its adapter link, the overlaid validation curves, names shown literally, cancel
with confirmation ending every trial."""
from __future__ import annotations

from sqlalchemy import update

from app.ui.widgets import literal
from backend.db.models import TrainingJob
from backend.db.session import session_scope
from backend.jobs import progress as jp
from backend.sweeps import progress as sp
from backend.sweeps import service as sweeps
from tests.pages.conftest import make_dataset, open_app, texts

GRID = ["learning_rate=1e-4,1e-3", "lora_r=4,8"]


def _sweep(actor, name="*bold* sweep"):
    d = make_dataset(actor, "ds")
    return sweeps.create_sweep(actor, d.id, grid=GRID, submit=False, name=name,
                               overrides=["num_epochs=2"])


def _progress(job_id: str, losses: list[float]) -> None:
    jp.set_stage(job_id, "initializing")
    jp.set_stage(job_id, "training")
    jp.append_metrics(job_id, [{"epoch": 1, "step": i + 1, "training_loss": v + 0.1,
                                "validation_loss": v} for i, v in enumerate(losses)])


def test_trials_best_and_curves(actor):
    sw = _sweep(actor)
    a, b, c, _ = (t.id for t in sw.trials)
    for job_id, losses in ((a, [2.0, 1.8]), (b, [2.0, 1.2]), (c, [2.5])):
        _progress(job_id, losses)
    with session_scope() as s:
        for job_id, loss in ((a, 1.8), (b, 1.2)):
            s.execute(update(TrainingJob).where(TrainingJob.id == job_id).values(
                status="completed", artifact_id=f"art-{job_id[:8]}",
                current_metrics={"validation_loss": loss}))
    sp.trial_stopped_early(c, 1, 2.5)
    at = open_app("sweeps", {"sweep_id": sw.id})
    assert not at.exception, at.exception
    text = texts(at)
    assert literal("*bold* sweep") in text  # the name shown as typed
    assert {m.label: m.value for m in at.metric}["Stopped early"] == "1"
    assert "Best trial" not in text  # marked when the sweep ends
    table = at.dataframe[0].value
    assert list(table["outcome"]) == ["completed", "completed", "stopped early", "queued"]
    assert list(table["best"]) == ["", "", "", ""]  # not marked until the sweep ends
    assert at.get("vega_lite_chart"), "no curves chart"
    links = {p.proto.label: p.proto.query_string for p in at.get("page_link")}
    assert "Open this trial on the Monitor" in links


def test_best_marked_after_the_sweep_ends(actor):
    sw = _sweep(actor)
    a, b = sw.trials[0].id, sw.trials[1].id
    with session_scope() as s:
        for job_id, loss in ((a, 1.8), (b, 1.2)):
            s.execute(update(TrainingJob).where(TrainingJob.id == job_id).values(
                status="completed", artifact_id=f"art-{job_id[:8]}",
                current_metrics={"validation_loss": loss}))
    sp.mark_running(sw.id)
    assert sp.finish_sweep(sw.id) == b
    at = open_app("sweeps", {"sweep_id": sw.id})
    assert not at.exception, at.exception
    assert list(at.dataframe[0].value["best"]) == ["", "★", "", ""]
    assert "validation loss 1.2000" in texts(at)
    links = {p.proto.label: p.proto.query_string for p in at.get("page_link")}
    assert f"id=art-{b[:8]}" in links["Open the best trial's adapter"]
    assert not [b for b in at.button if b.key == "sweeps_cancel"]  # ended: nothing to cancel


def test_cancel_with_confirmation(actor):
    sw = _sweep(actor)
    at = open_app("sweeps", {"sweep_id": sw.id})
    at.button(key="sweeps_cancel").click().run()
    assert "every trial" in texts(at)
    at.button(key="sweeps_cancel_yes").click().run()
    assert not at.exception, at.exception
    got = sweeps.get_sweep(actor, sw.id)
    assert got.status == "cancelled" and {t.status for t in got.trials} == {"cancelled"}
    assert "cancelled by" in texts(at)
