"""DPO in the per-worker loop (ray_jobs/worker/dpo.py) on the tiny model, one worker in process:
TRL-named metrics on every point, held-out rewards, the adapter loads in PEFT, a bad row stops it."""
from __future__ import annotations

import json

import pytest

from backend.core.errors import InvalidInput
from ray_jobs.worker.runtime import InProcessRuntime
from ray_jobs.worker.sinks import CollectingSink
from tests.fixtures.paths import REPO

DEMO = REPO / "examples" / "preference-demo.jsonl"
DPO = {"base_model": "brightrun/tiny-llama", "method": "dpo", "dpo_beta": 0.1,
       "learning_rate": 5e-3, "batch_size": 4, "num_epochs": 2,
       "lora_rank": 8, "lora_alpha": 16, "lora_dropout": 0.0, "max_seq_length": 256,
       "warmup_steps": 0, "validation_fraction": 0.2}
REWARDS = ("rewards/chosen", "rewards/rejected", "rewards/accuracies", "rewards/margins")


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def _run(tmp_path, dataset, config=DPO):
    import torch

    from ray_jobs.worker.loop import train_loop_per_worker

    sink = CollectingSink()
    loop = {"config": config, "dataset": str(dataset), "output": str(tmp_path / "adapter"),
            "home": str(tmp_path / "home"), "metrics_every_steps": 3, "sink": sink}
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        result = train_loop_per_worker(loop, runtime=InProcessRuntime(str(tmp_path / "runs"), "r"))
    finally:
        torch.set_num_threads(threads)
    return result, sink


def test_dpo_job_trains_reports_trl_metrics_and_saves_a_peft_adapter(tmp_path):
    result, sink = _run(tmp_path, DEMO)
    steps = [p for p in sink.points if p["step"] > 0]
    assert len(steps) == result["total_steps"] == 2 * 12  # 48 train pairs / 4 per step, 2 epochs
    for p in steps:
        assert all(p[k] is not None for k in REWARDS) and p["training_loss"] > 0
    base = sink.points[0]
    assert base["step"] == 0 and base["eval_rewards/margins"] == pytest.approx(0.0, abs=1e-6)
    assert base["eval_loss"] == pytest.approx(0.6931, abs=1e-3)  # policy = reference: log 2
    history = result["dpo"]["eval_history"]
    assert [h["step"] for h in history] == [0, 12, 24] and result["dpo"]["beta"] == 0.1
    assert history[-1]["eval_rewards/margins"] > history[0]["eval_rewards/margins"]
    assert result["dataset"]["train_pairs"] == 48 and result["dataset"]["validation_pairs"] == 12
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from backend.base_models.registry import resolve_base_model

    base = AutoModelForCausalLM.from_pretrained(resolve_base_model(DPO["base_model"],
                                                                   str(tmp_path / "home")))
    model = PeftModel.from_pretrained(base, tmp_path / "adapter")
    assert model.peft_config["default"].r == 8
    assert json.loads((tmp_path / "adapter" / "training_result.json").read_text())["dpo"]


def test_a_bad_preference_row_stops_the_job_with_its_line(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"prompt": "a", "chosen": "b", "rejected": "c"}) + "\n"
                   + json.dumps({"prompt": "a", "chosen": "b"}) + "\n")
    with pytest.raises(InvalidInput, match="line 2: missing required key `rejected`"):
        _run(tmp_path, bad)
