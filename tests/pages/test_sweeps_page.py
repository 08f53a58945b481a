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


# ----- the New sweep form -------------------------------------------------------------------------
def _count_sweeps() -> int:
    from sqlalchemy import func, select

    from backend.db.models import Sweep

    with session_scope() as s:
        return s.scalar(select(func.count()).select_from(Sweep))


def _launched(monkeypatch) -> list[str]:
    sent: list[str] = []
    monkeypatch.setattr(sweeps, "submit_sweep", lambda sweep_id: sent.append(sweep_id))
    return sent


def test_new_sweep_shows_trials_and_cost_before_launch(actor, monkeypatch):
    sent = _launched(monkeypatch)
    make_dataset(actor, "ds")
    at = open_app("sweeps")
    assert not at.exception, at.exception
    text = texts(at)
    assert "No sweeps yet" in text
    assert "6 trials · estimated $" in text  # 3 learning rates x 2 ranks, estimated, nothing stored
    assert "of training in all" in text
    assert _count_sweeps() == 0
    at.text_input(key="sweep_new_learning_rate").set_value("1e-4,1e-3").run()
    at.text_input(key="sweep_new_num_epochs").set_value("2").run()
    assert "4 trials · estimated $" in texts(at)
    at.selectbox(key="sweep_new_scheduler").set_value("asha").run()
    at.button(key="sweep_new_launch").click().run()
    assert not at.exception, at.exception
    assert _count_sweeps() == 1 and len(sent) == 1
    sw = sweeps.get_sweep(actor, sent[0])
    assert sw.trial_count == 4 and sw.scheduler == "asha" and sw.max_concurrent == 2
    assert sorted(t.sweep_trial["params"]["num_epochs"] for t in sw.trials) == [2, 2, 2, 2]
    assert at.query_params["sweep_id"] == sw.id


def test_new_sweep_bad_value_is_refused_and_nothing_is_stored(actor, monkeypatch):
    sent = _launched(monkeypatch)
    make_dataset(actor, "ds")
    at = open_app("sweeps")
    at.text_input(key="sweep_new_learning_rate").set_value("1e-4,fast").run()
    assert not at.exception, at.exception
    assert at.error and "fast" in at.error[0].value and "not a valid float" in at.error[0].value
    assert not [b for b in at.button if b.key == "sweep_new_launch"]
    at.text_input(key="sweep_new_learning_rate").set_value("").run()
    at.text_input(key="sweep_new_lora_r").set_value("").run()
    assert "at least one setting" in texts(at)
    assert _count_sweeps() == 0 and sent == []


def test_new_sweep_over_budget_needs_confirmation(actor, monkeypatch):
    from backend.accounts.users import set_budget

    sent = _launched(monkeypatch)
    from backend.costs import add_cost

    make_dataset(actor, "ds")
    set_budget(actor, actor.id, 1.0)
    with session_scope() as s:  # local trials cost nothing: this month is already over the budget
        add_cost(s, actor.id, "compute", 2.0)
    at = open_app("sweeps")
    assert "over your budget" in texts(at)
    assert at.button(key="sweep_new_launch").disabled
    at.checkbox(key="sweep_new_over_budget").check().run()
    at.button(key="sweep_new_launch").click().run()
    assert not at.exception, at.exception
    assert _count_sweeps() == 1 and len(sent) == 1
    assert sweeps.get_sweep(actor, sent[0]).budget_decision["confirmed_over_budget"] is True
