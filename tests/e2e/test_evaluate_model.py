"""`brightrun models evaluate` end to end on the session's real Ray head with the tiny model:
train a few steps, evaluate on a 3-conversation dataset (the evaluation runs as a Ray job), check
the stored answers and their scores against ``rouge-score``; a cancelled evaluation stops its Ray
job and stays cancelled; a Ray job that died is reconciled to failed."""
import json
import time

import pytest
from rouge_score import rouge_scorer

from backend.accounts.users import ensure_local_user
from backend.cli import main
from backend.evaluations import service as ev
from tests.backend.test_evaluations import THREE
from tests.fixtures.paths import SAMPLE_DATA

pytestmark = pytest.mark.ray
FAST = ["--set", "learning_rate=0.02", "--set", "batch_size=1", "--set", "max_seq_length=512",
        "--set", "warmup_steps=0", "--set", "lora_dropout=0", "--set", "validation_fraction=0.3",
        "--set", "num_epochs=1"]


def _run(capsys, *argv):
    rc = main(list(argv))
    out = capsys.readouterr().out
    return rc, (json.loads(out) if out.strip().startswith(("{", "[")) else out)


def _upload(capsys, path, name):
    rc, info = _run(capsys, "datasets", "upload", str(path), "--name", name, "--wait",
                    "--timeout", "300", "--json")
    assert rc == 0 and info["status"] == "ready", info
    return info["id"]


def _trained_model(capsys, tmp_path):
    train = _upload(capsys, SAMPLE_DATA / "sample-v4.jsonl", "train")
    rc, job = _run(capsys, "jobs", "create", "--dataset", train, "--preset", "conservative",
                   *FAST, "--wait", "--timeout", "600", "--json")
    assert rc == 0 and job["status"] == "completed", (job.get("error_message"), job)
    test_file = tmp_path / "three.jsonl"
    test_file.write_bytes(THREE)
    return job["artifact_id"], _upload(capsys, test_file, "three")


def test_evaluate_on_ray_records_scored_answers(ray_env, capsys, tmp_path):
    model_id, test_id = _trained_model(capsys, tmp_path)
    t0 = time.monotonic()
    rc, out = _run(capsys, "models", "evaluate", model_id, "--dataset", test_id, "--wait",
                   "--timeout", "300", "--json")
    took = time.monotonic() - t0
    assert rc == 0 and out["status"] == "completed", out
    assert out["external_job_id"].startswith("brightrun-evaluate-")
    assert ray_env.wait(out["external_job_id"], timeout_s=30) == "SUCCEEDED"
    full = ev.get_evaluation(ensure_local_user(), out["id"], rows=True)
    assert full["conversations"] == 3 and len(full["rows"]) == 3
    assert full["base_loss"] > 0 and full["adapter_loss"] > 0
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
    for r in full["rows"]:
        for who in ("base", "adapter"):
            want = scorer.score(r["reference"], r[who])["rougeL"].fmeasure if r[who].strip() \
                else 0.0
            assert r[f"{who}_rouge_l"] == pytest.approx(want, abs=1e-9)
    rc, shown = _run(capsys, "models", "show", model_id, "--json")
    assert [e["id"] for e in shown["evaluations"]] == [out["id"]]
    with capsys.disabled():
        print(f"\nevaluation on Ray: {took:.1f} s wall, timings {full['timings']}")


def test_cancelled_evaluation_leaves_nothing_running(ray_env, capsys, tmp_path):
    model_id, test_id = _trained_model(capsys, tmp_path)
    rc, out = _run(capsys, "models", "evaluate", model_id, "--dataset", test_id, "--json")
    assert rc == 0 and out["status"] == "queued", out
    rc, cancelled = _run(capsys, "models", "evaluate-cancel", out["id"], "--json")
    assert rc == 0 and cancelled["status"] == "cancelled"
    assert ray_env.wait(out["external_job_id"], timeout_s=60) in ("STOPPED", "SUCCEEDED")
    time.sleep(1)
    me = ensure_local_user()
    assert ev.get_evaluation(me, out["id"])["status"] == "cancelled"
    assert ev.get_evaluation(me, out["id"], rows=True)["rows"] == []
    # a Ray job that died under a queued/running evaluation: reconciled to failed
    rc, second = _run(capsys, "models", "evaluate", model_id, "--dataset", test_id, "--json")
    ray_env.stop(second["external_job_id"])
    assert ray_env.wait(second["external_job_id"], timeout_s=60) in ("STOPPED", "SUCCEEDED")
    ev.reconcile_evaluations()
    got = ev.get_evaluation(me, second["id"])
    assert got["status"] in ("failed", "completed"), got
    if got["status"] == "failed":
        assert second["external_job_id"] in got["error_message"]
    assert not ev.list_evaluations(me, status="running")
    assert not ev.list_evaluations(me, status="queued")
