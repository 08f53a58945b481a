"""Learning made visible on the pages: the evaluation samples on the Monitor (latest, and earlier
ones by step), in Compare runs (side by side), on the model page (base vs adapter vs reference,
quality against the base model's loss) and the Playground's held-out prompts and missing-model
message."""
from __future__ import annotations

from app.ui.widgets import literal
from backend.db.models import ModelArtifact
from backend.db.session import session_scope
from backend.jobs.db_sink import DbSink
from tests.pages.conftest import TIMEOUT, make_dataset, open_app, texts
from tests.pages.job_helpers import complete_job, fake_adapter, new_job, run_job

QUESTION = "Where is my *order* <b>now</b>?"


def _samples(sink: DbSink, steps=(0, 3, 6)) -> None:
    for step in steps:
        who = "base" if step == 0 else f"adapter@{step}"
        sink.samples(step, [{"index": i, "question": f"{QUESTION} #{i}",
                             "prompt": f"<|user|>{QUESTION} #{i}<|assistant|>",
                             "reference": f"It ships **tomorrow** #{i}.",
                             "answer": "" if (step == 0 and i == 1) else f"{who} says [{i}]"}
                            for i in range(3)])


def test_monitor_shows_the_latest_samples_and_earlier_ones_by_step(actor):
    d = make_dataset(actor, "d")
    job = new_job(actor, d.id, name="learning")
    sink = run_job(job.id)
    at = open_app("monitor", {"job_id": job.id})
    assert not at.exception, at.exception
    assert "Answers to the held-out conversations appear here" in texts(at)  # none yet
    _samples(sink)
    at = open_app("monitor", {"job_id": job.id})
    assert not at.exception, at.exception
    page = texts(at)
    assert "#### What the model answers" in page
    assert "answers closer to the reference" in page and "ROUGE-L " in page  # the summary line
    assert f"**Prompt 1** · {literal(QUESTION + ' #0')}" in page and "<b>" not in page
    assert literal("adapter@6 says [0]") in page and literal("base says [0]") in page
    assert literal("It ships **tomorrow** #0.") in page
    assert "*(no text: only whitespace or special tokens)*" in page  # the empty base answer
    assert "step 6" in page and "adapter@3" not in page
    assert any("<|user|>" in c.value for c in at.code)  # the rendered prompt, verbatim
    [slider] = at.select_slider
    assert slider.options == ["step 3", "step 6"] and slider.value == 6
    slider.set_value(3).run(timeout=TIMEOUT)
    assert not at.exception, at.exception
    page = texts(at)
    assert literal("adapter@3 says [2]") in page and "adapter@6" not in page
    sink.failed("done", "")


def test_compare_runs_shows_answers_side_by_side(actor):
    d = make_dataset(actor, "d")
    a, b = new_job(actor, d.id, name="run a"), new_job(actor, d.id, name="run b")
    _samples(run_job(a.id), steps=(0, 6))
    _samples(run_job(b.id), steps=(0, 3))
    at = open_app("jobs")
    at.multiselect(key="jobs_compare").select(a.id).select(b.id).run(timeout=TIMEOUT)
    assert not at.exception, at.exception
    page = texts(at)
    assert "**What each run answers** (latest evaluation)" in page
    assert literal("adapter@6 says [1]") in page and literal("adapter@3 says [1]") in page
    assert f"**{literal('run a · ' + a.id[:8])}**" in page
    assert literal("It ships **tomorrow** #2.") in page and "base says" not in page


def test_model_page_shows_base_vs_adapter_vs_reference_and_quality_against_the_base(
        actor, tmp_path):
    d = make_dataset(actor, "d")
    job = new_job(actor, d.id, name="visible")
    sink = run_job(job.id)
    sink.metrics([{"epoch": 0, "step": 0, "training_loss": None, "validation_loss": 2.0}])
    _samples(sink)
    sink.stage("validating")
    sink.completed({"adapter_dir": str(fake_adapter(tmp_path / "adapter")),
                    "first_train_loss": 3.0, "final_train_loss": 1.4, "final_val_loss": 1.5,
                    "best_val_loss": 1.45, "best_epoch": 1, "base_validation_loss": 2.0,
                    "duration_s": 100.0, "total_steps": 6,
                    "eval_samples": {"prompts": 3, "seconds": 4.0, "share": 0.04}})
    with session_scope() as s:
        model_id = s.query(ModelArtifact).filter_by(job_id=job.id).one().id
    at = open_app("models", {"id": model_id})
    assert not at.exception, at.exception
    metrics = {m.label: m for m in at.metric}
    assert metrics["Base model val. loss"].value == "2.0000"
    assert metrics["Final validation loss"].value == "1.5000"
    page = texts(at)
    assert "validation loss 25.0% below the base model's validation loss" in page
    assert "#### Answers: base model vs adapter vs reference" in page
    assert literal("base says [0]") in page and literal("adapter@6 says [0]") in page
    assert literal("It ships **tomorrow** #0.") in page
    assert "took 4.0 s, 4.0% of the run" in page


def test_model_without_samples_says_so(actor, tmp_path):
    d = make_dataset(actor, "d")
    job = new_job(actor, d.id, name="old")
    model_id = complete_job(job.id, fake_adapter(tmp_path / "a"), run_job(job.id))
    at = open_app("models", {"id": model_id})
    assert not at.exception, at.exception
    assert "No evaluation samples were recorded for this model's job" in texts(at)


def test_playground_offers_held_out_prompts_and_says_when_the_base_model_is_missing(
        actor, tmp_path):
    d = make_dataset(actor, "d")
    job = new_job(actor, d.id, name="play")
    sink = run_job(job.id)
    _samples(sink)
    model_id = complete_job(job.id, fake_adapter(tmp_path / "a"), sink)
    with session_scope() as s:
        s.get(ModelArtifact, model_id).base_model = "acme/not-here-7b"
    at = open_app("models", {"id": model_id})
    at.button(key="models_play_use_1").click().run(timeout=TIMEOUT)
    assert at.text_area(key="models_play_prompt").value == f"{QUESTION} #1"
    # asked in its conversation (the prompt rendered in training) until the user edits it
    chosen = at.session_state["models_play_context"]
    assert chosen["rendered"] == f"<|user|>{QUESTION} #1<|assistant|>"
    assert any("Asked in its conversation" in c.value for c in at.caption)
    at.button(key="models_play_run").click().run(timeout=TIMEOUT)
    assert not at.exception, at.exception
    errors = " ".join(e.value for e in at.error)
    assert "is not on this machine" in errors and literal("'acme/not-here-7b'") in errors
    assert "models_play_result" not in at.session_state
    at.text_area(key="models_play_prompt").input("Something else?").run(timeout=TIMEOUT)
    assert not any("Asked in its conversation" in c.value for c in at.caption)
