"""Evaluations (``backend/evaluations/service.py``, ``ray_jobs/evaluate_model.py``) without Ray: the
evaluation job run in this process on the tiny model with a real (random) LoRA adapter; bad input
refused in one line with no row; cancel; the reconciler failing an evaluation whose Ray job is
gone; JSONL; ``models show --json``; comparison on one dataset."""
from __future__ import annotations

import json

import pytest
from rouge_score import rouge_scorer
from sqlalchemy import func, select

from backend.cli import main
from backend.core.errors import InvalidInput, NotFound
from backend.db.models import Evaluation
from backend.db.session import session_scope
from backend.evaluations import service as ev
from backend.storage import get_object_store
from ray_jobs import evaluate_model
from tests.pages.conftest import make_dataset
from tests.pages.job_helpers import finished_job

THREE = "".join(json.dumps(c) + "\n" for c in [
    {"conversation_id": "a", "metadata": {"key_fact": "tomorrow"}, "turns": [
        {"role": "system", "content": "You are a support agent."},
        {"role": "user", "content": "When does my order ship?"},
        {"role": "assistant", "content": "It ships tomorrow."}]},
    {"conversation_id": "b", "turns": [
        {"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"},
        {"role": "user", "content": "What is the return window?"},
        {"role": "assistant", "content": "Thirty days from delivery."}]},
    {"conversation_id": "c", "turns": [
        {"role": "user", "content": "Who answers the phone?"},
        {"role": "assistant", "content": "Nora answers the phone."}],
     "metadata": {"key_fact": "Nora", "source": "extra keys are kept"}},
]).encode()


def _count() -> int:
    with session_scope() as s:
        return s.scalar(select(func.count()).select_from(Evaluation))


@pytest.fixture
def model(actor, tmp_path, tiny_model_dir):
    d = make_dataset(actor, "train")
    _, model_id = finished_job(actor, d.id, tmp_path, name="m", real=True, base_dir=tiny_model_dir)
    return model_id


@pytest.fixture
def actor(brightrun_home):
    from backend.accounts.users import ensure_local_user

    return ensure_local_user()


def test_evaluation_in_process_scores_agree_with_rouge_score(actor, model, capsys):
    test = make_dataset(actor, "test3", content=THREE)
    assert test.status == "ready", test.error_message
    info = ev.create_evaluation(actor, model, test.id, max_answers=64, submit=False)
    assert info["status"] == "queued"
    assert evaluate_model.main(["--evaluation-id", info["id"]]) == 0
    out = ev.get_evaluation(actor, info["id"], rows=True)
    assert out["status"] == "completed", out["error_message"]
    assert out["conversations"] == 3 and len(out["rows"]) == 3
    assert out["base_loss"] > 0 and out["adapter_loss"] > 0
    assert out["base_loss"] != pytest.approx(out["adapter_loss"], abs=1e-6)  # random LoRA
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
    refs = ["It ships tomorrow.", "Thirty days from delivery.", "Nora answers the phone."]
    assert [r["reference"] for r in out["rows"]] == refs
    assert out["rows"][1]["question"] == "What is the return window?"
    for r in out["rows"]:
        for who in ("base", "adapter"):
            assert isinstance(r[who], str)
            want = scorer.score(r["reference"], r[who])["rougeL"].fmeasure if r[who].strip() \
                else 0.0
            assert r[f"{who}_rouge_l"] == pytest.approx(want, abs=1e-9)
    assert out["rows"][0]["key_fact"] == ["tomorrow"] and out["rows"][1]["base_fact"] is None
    sc = out["scores"]
    assert sc["adapter"]["count"] == 3 and sc["compared"] == 3
    assert sc["adapter"]["rouge_l"] == pytest.approx(
        sum(r["adapter_rouge_l"] for r in out["rows"]) / 3)
    assert out["line"].startswith("ROUGE-L ")
    assert out["timings"]["s_per_answer"] > 0
    # JSONL, models show --json, the per-dataset comparison
    lines = [json.loads(x) for x in ev.evaluation_jsonl(actor, info["id"]).splitlines()]
    assert [x["reference"] for x in lines] == refs and lines[0]["evaluation_id"] == info["id"]
    capsys.readouterr()
    assert main(["models", "show", model, "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert [e["id"] for e in shown["evaluations"]] == [info["id"]]
    assert main(["models", "evaluations", "--dataset", test.id, "--json"]) == 0
    assert [e["model_id"] for e in json.loads(capsys.readouterr().out)] == [model]
    assert main(["models", "evaluation", info["id"], "--jsonl", "-"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 3


def test_max_answers_caps_the_answers(actor, model):
    test = make_dataset(actor, "test3", content=THREE)
    info = ev.create_evaluation(actor, model, test.id, max_answers=1, submit=False)
    assert evaluate_model.main(["--evaluation-id", info["id"]]) == 0
    out = ev.get_evaluation(actor, info["id"], rows=True)
    assert out["conversations"] == 3 and len(out["rows"]) == 1


def _cli_error(capsys, *argv) -> str:
    capsys.readouterr()
    assert main(list(argv)) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    return err


def test_bad_input_is_one_line_and_records_nothing(actor, model, capsys):
    bad = make_dataset(actor, "bad", content=THREE + b"{not json\n")
    assert bad.status == "error"
    err = _cli_error(capsys, "models", "evaluate", model, "--dataset", bad.id)
    assert "dataset_not_ready" in err and "not ready" in err
    err = _cli_error(capsys, "models", "evaluate", "no-such-model", "--dataset", bad.id)
    assert "model_not_found" in err
    good = make_dataset(actor, "good", content=THREE)
    err = _cli_error(capsys, "models", "evaluate", model, "--dataset", "no-such-dataset")
    assert "dataset_not_found" in err
    err = _cli_error(capsys, "models", "evaluation", "no-such-evaluation")
    assert "evaluation_not_found" in err
    store = get_object_store()
    for key in list(store.list(f"models/{model}/")):
        store.delete(key)
    err = _cli_error(capsys, "models", "evaluate", model, "--dataset", good.id)
    assert "adapter_unloadable" in err and "gone" in err
    assert _count() == 0


def test_files_gone_after_queueing_fail_the_evaluation(actor, model):
    good = make_dataset(actor, "good", content=THREE)
    info = ev.create_evaluation(actor, model, good.id, submit=False)
    store = get_object_store()
    for key in list(store.list(f"models/{model}/")):
        store.delete(key)
    assert evaluate_model.main(["--evaluation-id", info["id"]]) == 1
    out = ev.get_evaluation(actor, info["id"], rows=True)
    assert out["status"] == "failed" and out["rows"] == [] and out["scores"] is None
    assert "\n" not in out["error_message"]


def test_cancel_and_reconcile(actor, model, monkeypatch):
    good = make_dataset(actor, "good", content=THREE)
    a = ev.create_evaluation(actor, model, good.id, submit=False)
    assert ev.cancel_evaluation(actor, a["id"])["status"] == "cancelled"
    assert evaluate_model.main(["--evaluation-id", a["id"]]) == 0  # a cancelled one never runs
    assert ev.get_evaluation(actor, a["id"])["status"] == "cancelled"
    with pytest.raises(Exception):
        ev.cancel_evaluation(actor, a["id"])
    b = ev.create_evaluation(actor, model, good.id, submit=False)
    assert ev.start_evaluation(b["id"])
    assert not ev.complete_evaluation(a["id"], base_loss=1.0, adapter_loss=1.0, conversations=1,
                                      answers=[])  # cancelled: nothing written
    with session_scope() as s:
        s.get(Evaluation, b["id"]).external_job_id = "brightrun-evaluate-dead"

    class Gone:
        def info(self, sub):
            return {"status": "FAILED", "message": "driver died\nexit 137"}

        def logs(self, sub):
            return "loading\nKilled"

    import backend.cluster.gateway as gw
    monkeypatch.setattr(gw, "get_gateway", lambda: Gone())
    from backend.reconciler import reconcile_all
    assert reconcile_all() >= 1
    out = ev.get_evaluation(actor, b["id"])
    assert out["status"] == "failed" and "brightrun-evaluate-dead failed: driver died" in \
        out["error_message"] and "Killed" in out["error_message"]  # as a job's: backend.cluster.ended
    assert not ev.list_evaluations(actor, status="running")


def test_max_answers_out_of_range(actor, model):
    good = make_dataset(actor, "good", content=THREE)
    with pytest.raises(InvalidInput):
        ev.create_evaluation(actor, model, good.id, max_answers=-1, submit=False)
    with pytest.raises(NotFound):
        ev.get_evaluation(actor, "nope")
