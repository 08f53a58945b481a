"""Evaluation samples: written through the training job's progress sink (DbSink → progress), read
through the samples service with access checks; the pure arrangements the pages show; the quality
rating against the base model's validation loss recorded at step 0."""
from __future__ import annotations

import pytest

from backend.accounts.users import create_user, ensure_local_user
from backend.core.errors import InvalidInput, NotFound
from backend.jobs import samples as js
from backend.jobs import service as jobs
from backend.jobs.db_sink import DbSink
from backend.jobs.samples import (
    SampleInfo,
    base_vs_adapter,
    best_and_worst,
    by_step,
    learning_line,
    scores,
    side_by_side,
)
from tests.backend.jobs.test_jobs import ready_dataset


@pytest.fixture
def me(db):
    return ensure_local_user()


def _items(step: int, n: int = 3) -> list[dict]:
    return [{"index": i, "question": f"question {i}", "prompt": f"<user>question {i}<assistant>",
             "reference": f"reference {i}", "answer": f"answer {i} at {step}"} for i in range(n)]


def test_samples_round_trip_through_the_sink_with_access_checks(me):
    d = ready_dataset(me)
    job = jobs.create_job(me, d.id, submit=False)
    sink = DbSink(job.id)
    sink.stage("training")
    for step in (0, 4, 8):
        sink.samples(step, _items(step))
    sink.samples(8, _items(8, 2) + [{**_items(8)[2], "answer": "again"}])  # a resumed run resends
    got = js.job_samples(me, job.id)
    assert [(x.step, x.index) for x in got] == [(s, i) for s in (0, 4, 8) for i in range(3)]
    assert got[-1].answer == "again" and got[0].reference == "reference 0"
    assert got[0].prompt.startswith("<user>") and got[0].created_at is not None

    other = create_user("other@example.com", "Other", "a-long-password-1")
    with pytest.raises(NotFound):
        js.job_samples(other, job.id)
    with pytest.raises(NotFound):
        js.compare_samples(other, [job.id])
    assert [x.step for x in js.compare_samples(me, [job.id])[job.id]] == [8, 8, 8]
    with pytest.raises(InvalidInput):
        js.compare_samples(me, [job.id] * (js.MAX_COMPARED + 1))


def test_base_validation_loss_is_the_quality_reference(me, tmp_path):
    from backend.adapters import get_model
    from backend.storage import get_object_store

    d = ready_dataset(me)
    job = jobs.create_job(me, d.id, submit=False)
    sink = DbSink(job.id, artifact_id="b" * 8 + "-0000-4000-8000-" + "0" * 12)
    sink.stage("training")
    sink.metrics([{"epoch": 0, "step": 0, "training_loss": None, "validation_loss": 3.42}])
    prefix = f"models/{sink.artifact_id}/"
    get_object_store().put_bytes(prefix + "adapter_model.safetensors", b"w")
    sink.completed({"adapter_dir": str(tmp_path), "final_validation_loss": 2.96,
                    "final_training_loss": 2.7, "first_train_loss": 3.6,
                    "base_validation_loss": 3.42,
                    "eval_samples": {"prompts": 3, "seconds": 4.5, "share": 0.03},
                    "uploaded": {"prefix": prefix, "sizes": {"adapter_model.safetensors": 1}}})
    m = get_model(me, jobs.get_job(me, job.id).artifact_id)
    q = m.quality_metrics
    assert q["base_validation_loss"] == 3.42 and q["reduction_reference"] == "base_validation_loss"
    assert q["loss_reduction"] == pytest.approx((3.42 - 2.96) / 3.42)
    assert q["convergence_quality"] == "good"
    assert m.training_summary["eval_samples_seconds"] == 4.5
    assert [p.step for p in jobs.job_metrics(me, job.id)] == [0]


def _s(step, index, answer, question="q", reference="r"):
    return SampleInfo(step=step, index=index, question=f"{question}{index}", prompt="p",
                      reference=f"{reference}{index}", answer=answer)


def test_by_step_and_base_vs_adapter():
    samples = [_s(4, 1, "b4"), _s(0, 0, "base0"), _s(4, 0, "a4"), _s(0, 1, "base1"),
               _s(8, 0, "a8")]
    assert {k: [x.answer for x in v] for k, v in by_step(samples).items()} == {
        0: ["base0", "base1"], 4: ["a4", "b4"], 8: ["a8"]}
    rows = base_vs_adapter(samples)
    assert [(r["index"], r["base"], r["adapter"], r["step"]) for r in rows] == [
        (0, "base0", "a8", 8), (1, "base1", None, 8)]
    assert rows[0]["reference"] == "r0" and rows[1]["question"] == "q1"
    assert [r["adapter"] for r in base_vs_adapter(samples, step=4)] == ["a4", "b4"]
    only_base = base_vs_adapter([_s(0, 0, "base0")])
    assert only_base == [{"index": 0, "question": "q0", "prompt": "p", "reference": "r0",
                          "key_fact": [], "base": "base0", "adapter": None, "step": None,
                          "base_rouge_l": 0.0, "base_exact_match": False, "base_fact": None,
                          "adapter_rouge_l": None, "adapter_exact_match": None,
                          "adapter_fact": None}]
    assert base_vs_adapter([]) == []


def test_side_by_side_aligns_runs_by_prompt_index():
    rows = side_by_side({"run a": [_s(9, 0, "a0"), _s(9, 1, "a1")],
                         "run b": [_s(6, 0, "b0"), _s(6, 1, "b1", question="other")],
                         "run c": []})
    assert [r["index"] for r in rows] == [0, 1]
    assert rows[0]["answers"] == {"run a": (9, "a0"), "run b": (6, "b0")}
    assert rows[0]["same_prompt"] and not rows[1]["same_prompt"]
    assert side_by_side({}) == []


def _f(step, index, answer, reference, fact):
    return SampleInfo(step=step, index=index, question=f"q{index}", prompt="p",
                      reference=reference, answer=answer, key_fact=[fact])


def test_scores_count_key_facts_and_closer_answers():
    samples = [_f(0, 0, "I am not sure.", "Returns are accepted within 45 days.", "45 days"),
               _f(9, 0, "Returns are accepted within 45 days.", "Returns are accepted within 45 days.",
                  "45 days"),
               _f(0, 1, "Call us at 1-800-555-0142.", "Our number is 1-800-555-0142.",
                  "1-800-555-0142"),
               _f(9, 1, "Email us.", "Our number is 1-800-555-0142.", "1-800-555-0142"),
               _f(0, 2, "no idea", "Use code STUDY15.", "STUDY15")]
    rows = base_vs_adapter(samples)
    assert [(r["base_fact"], r["adapter_fact"]) for r in rows] == [
        (False, True), (True, False), (False, None)]
    sc = scores(rows)
    assert (sc["base"]["facts"], sc["base"]["facts_total"]) == (1, 3)
    assert (sc["adapter"]["facts"], sc["adapter"]["facts_total"]) == (1, 2)
    assert (sc["compared"], sc["closer"]) == (2, 1)
    line = learning_line(sc)
    assert line.startswith(f"ROUGE-L {sc['base']['rouge_l']:.2f} → {sc['adapter']['rouge_l']:.2f}")
    assert "1 of 2 answers closer to the reference" in line and "key fact 1 → 1 of 2" in line
    best, worst = best_and_worst(rows, 1)
    assert [r["index"] for r in best] == [0] and [r["index"] for r in worst] == [1]
    assert learning_line(scores(base_vs_adapter(samples[:1]))) is None
