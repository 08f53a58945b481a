"""A DPO job on Ray Train: ``python -m ray_jobs.train_lora`` as a Ray job, two CPU workers (DDP),
the tiny model and examples/preference-demo.jsonl; every point carries TRL's rewards/* and the
held-out margin grows."""
from __future__ import annotations

import json

import pytest

from tests.ray_jobs.test_dpo_loop import DEMO, DPO, REWARDS


@pytest.mark.ray
def test_two_cpu_workers_train_dpo_end_to_end(ray_env, tmp_path):
    cfg = tmp_path / "config.json"
    cfg.write_text(json.dumps(DPO))
    events = tmp_path / "events.jsonl"
    args = ["--config", str(cfg), "--dataset", f"file://{DEMO}", "--workers", "2",
            "--output", str(tmp_path / "adapter"), "--storage-path", str(tmp_path / "runs"),
            "--name", "run", "--sink", json.dumps({"kind": "jsonl", "path": str(events)})]
    sid = ray_env.submit("ray_jobs.train_lora", args, kind="train", object_id="test",
                         extra_env={"HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"})
    status = ray_env.wait(sid, timeout_s=420)
    assert status == "SUCCEEDED", ray_env.logs(sid)[-4000:]
    lines = [json.loads(line) for line in events.read_text().splitlines()]
    [done] = [e for e in lines if e["event"] == "completed"]
    result = done["result"]
    assert result["workers"] == 2 and result["dataset"]["train_pairs"] == 48
    points = [p for e in lines if e["event"] == "metrics" for p in e["points"]]
    assert [p["step"] for p in points] == list(range(0, result["total_steps"] + 1))
    assert all(all(p[k] is not None for k in REWARDS) for p in points[1:])
    history = result["dpo"]["eval_history"]
    assert history[-1]["eval_rewards/margins"] > history[0]["eval_rewards/margins"]
    assert (tmp_path / "adapter" / "adapter_model.safetensors").exists()
