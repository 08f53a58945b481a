"""The Models page's Evaluate tab (``app/models/evaluate.py``): start an evaluation on a ready
dataset (the Ray submission recorded instead of made), a clear error for a dataset that is not
ready with nothing recorded, cancel, and a completed evaluation's figures, comparison and JSONL
download."""
from __future__ import annotations

import json

import pytest

from backend.evaluations import service as ev
from tests.backend.test_evaluations import THREE
from tests.pages.conftest import make_dataset, open_app, texts
from tests.pages.job_helpers import finished_job


@pytest.fixture
def submitted(monkeypatch):
    calls: list[str] = []
    monkeypatch.setattr(ev, "submit_evaluation", lambda evaluation_id: calls.append(evaluation_id))
    return calls


def _open(model_id):
    at = open_app("models", {"id": model_id})
    assert not at.exception, at.exception
    return at


def test_evaluate_action_starts_an_evaluation_and_cancels_it(actor, tmp_path, submitted):
    train = make_dataset(actor, "train")
    test = make_dataset(actor, "three", content=THREE)
    _, model_id = finished_job(actor, train.id, tmp_path, name="m")
    at = _open(model_id)
    assert "No evaluations of this model yet." in texts(at)
    at.selectbox(key="models_eval_dataset").set_value(test.id)
    at.number_input(key="models_eval_max").set_value(2)
    at.button(key="models_eval_run").click().run()
    assert not at.exception, at.exception
    assert len(submitted) == 1
    got = ev.get_evaluation(actor, submitted[0])
    assert got["status"] == "queued" and got["dataset_id"] == test.id and got["max_answers"] == 2
    assert "three" in texts(at) and "queued" in texts(at)
    at.button(key=f"models_eval_cancel_{got['id']}").click().run()
    assert not at.exception, at.exception
    assert ev.get_evaluation(actor, got["id"])["status"] == "cancelled"


def test_a_dataset_not_ready_is_refused_in_one_line(actor, tmp_path, submitted):
    train = make_dataset(actor, "train")
    make_dataset(actor, "bad", content=THREE + b"{oops\n")
    _, model_id = finished_job(actor, train.id, tmp_path, name="m")
    ready_ids = [train.id]
    at = _open(model_id)
    assert at.selectbox(key="models_eval_dataset").options  # only ready datasets are offered
    assert len(at.selectbox(key="models_eval_dataset").options) == len(ready_ids)
    # the service refuses it anyway (a dataset that turned bad after the page was drawn)
    from backend.core.errors import InvalidInput
    bad = [d for d in __import__("backend.datasets.service", fromlist=["x"]).list_datasets(
        actor, status="error").items][0]
    with pytest.raises(InvalidInput, match="not ready"):
        ev.create_evaluation(actor, model_id, bad.id, submit=False)
    assert not ev.list_evaluations(actor) and not submitted


def test_completed_evaluation_shows_figures_and_downloads_jsonl(actor, tmp_path, submitted,
                                                               media):  # noqa: F811
    train = make_dataset(actor, "train")
    test = make_dataset(actor, "three", content=THREE)
    _, model_id = finished_job(actor, train.id, tmp_path, name="m")
    e = ev.create_evaluation(actor, model_id, test.id)
    assert ev.start_evaluation(e["id"])
    answers = [{"index": 0, "question": "When does my order ship?", "prompt": "p",
                "reference": "It ships tomorrow.", "key_fact": ["tomorrow"],
                "base": "Soon.", "adapter": "It ships tomorrow."}]
    assert ev.complete_evaluation(e["id"], base_loss=3.2, adapter_loss=1.1, conversations=3,
                                  answers=answers)
    at = _open(model_id)
    page = texts(at).replace("\\", "")  # literal() escapes markdown
    assert "loss 3.2000 → 1.1000" in page
    assert "ROUGE-L 0.00 → 1.00 · 1 of 1 answers closer to the reference" in page
    assert "key fact 0 → 1 of 1" in page
    rows = [json.loads(x) for x in media[f"evaluation-{e['id'][:8]}.jsonl"].decode().splitlines()]
    assert rows[0]["adapter_rouge_l"] == 1.0 and rows[0]["base_fact"] is False
    assert not at.exception, at.exception
