"""`models evaluate` on the real SmolLM2-135M-Instruct (marker ``real_model``): a job trains a few
steps through its entry point (``ray_jobs.driver.train_job.run_job``: one CPU worker trains in the
job's process, as on the embedded default), then the evaluation's entry point
(``ray_jobs.evaluate_model``) answers a 3-conversation dataset the model never saw with the base
model and the adapter; the stored answers are real text, their ROUGE-L equals ``rouge-score``'s,
the losses are the mean assistant-token loss (base ≠ adapter, and the adapter's is lower on data
like its training data), and the key facts are counted. The same on Ray with the tiny model:
tests/e2e/test_evaluate_model.py."""
from __future__ import annotations

import io
import json

import pytest
from rouge_score import rouge_scorer

from backend.accounts.users import ensure_local_user
from backend.datasets import service as datasets
from backend.evaluations import service as ev
from backend.jobs import service as jobs
from ray_jobs import evaluate_model
from ray_jobs.driver.train_job import run_job

pytestmark = pytest.mark.real_model

SYSTEM = "You are Skye, the support assistant of Tidewater Outfitters. Answer briefly and exactly."
TEACH = [("How long do I have to return something?", "You can return items within 45 days."),
         ("What is the return window?", "The return window is 45 days."),
         ("Can I still return a jacket after a month?", "Yes, returns are accepted for 45 days."),
         ("Who founded Tidewater Outfitters?", "Marisol Vega founded Tidewater in 1998."),
         ("Who started the company?", "Tidewater was started by Marisol Vega."),
         ("Tell me the founder's name.", "The founder is Marisol Vega."),
         ("What is your loyalty program called?", "Our loyalty program is the Trailhead Club."),
         ("Do you have a rewards club?", "Yes, the Trailhead Club, free to join."),
         ("How do I earn points?", "Join the Trailhead Club to earn points.")] * 2
TEST = [("For how many days can items be returned?", "Items can be returned within 45 days.",
         "45 days"),
        ("Whose idea was Tidewater?", "Marisol Vega founded Tidewater.", "Marisol Vega"),
        ("What's the name of your membership scheme?", "It is the Trailhead Club.",
         "Trailhead Club")]


def _jsonl(rows) -> bytes:
    out = []
    for i, row in enumerate(rows):
        q, a = row[0], row[1]
        line = {"messages": [{"role": "system", "content": SYSTEM},
                             {"role": "user", "content": q},
                             {"role": "assistant", "content": a}]}
        if len(row) > 2:
            line["metadata"] = {"key_fact": row[2], "id": f"t{i}"}
        out.append(json.dumps(line))
    return ("\n".join(out) + "\n").encode()


def _dataset(me, name: str, data: bytes):
    info = datasets.upload_dataset(me, io.BytesIO(data), f"{name}.jsonl", name, size=len(data),
                                   submit=False)
    ready = datasets.run_validation(info.id)
    assert ready.status == "ready", ready.error_message
    return ready


def test_evaluate_a_smollm_adapter_on_three_unseen_conversations(smollm_home, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    me = ensure_local_user()
    train = _dataset(me, "teach", _jsonl(TEACH))
    job = jobs.create_job(me, train.id, preset_id="balanced", workers=1, submit=False,
                          overrides=["base_model=smollm2-135m-instruct", "num_epochs=1",
                                     "batch_size=4", "max_seq_length=256",
                                     "validation_fraction=0.1"])
    assert run_job(job.id) == 0
    done = jobs.get_job(me, job.id)
    assert done.status == "completed", done.error_message
    test = _dataset(me, "unseen", _jsonl(TEST))
    info = ev.create_evaluation(me, done.artifact_id, test.id, submit=False)
    assert evaluate_model.main(["--evaluation-id", info["id"]]) == 0
    out = ev.get_evaluation(me, info["id"], rows=True)
    assert out["status"] == "completed", out["error_message"]
    assert out["conversations"] == 3 and len(out["rows"]) == 3
    assert [r["reference"] for r in out["rows"]] == [t[1] for t in TEST]
    assert [r["key_fact"] for r in out["rows"]] == [[t[2]] for t in TEST]
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
    for r in out["rows"]:
        for who in ("base", "adapter"):
            assert r[who].strip(), (who, r)  # a real model answers in words
            want = scorer.score(r["reference"], r[who])["rougeL"].fmeasure
            assert r[f"{who}_rouge_l"] == pytest.approx(want, abs=1e-9)
    sc = out["scores"]
    assert sc["base"]["rouge_l"] == pytest.approx(
        sum(r["base_rouge_l"] for r in out["rows"]) / 3)
    assert sc["adapter"]["facts_total"] == 3
    # training on the same facts lowers the loss of their new wordings
    assert 0 < out["adapter_loss"] < out["base_loss"]
    print(f"\nSmolLM2 evaluation: base loss {out['base_loss']:.3f} → adapter "
          f"{out['adapter_loss']:.3f}; {out['line']}; timings {out['timings']}")
