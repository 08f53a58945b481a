"""One CPU worker trains in the job's own process (ray_jobs.worker.runtime.InProcessRuntime): same
results as Ray Train, checkpoints where Ray Train keeps them, retry from the newest checkpoint."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from ray_jobs.train_lora import main
from ray_jobs.worker.runtime import COMPLETE_MARKER, InProcessRuntime
from ray_jobs.worker.sinks import CollectingSink
from tests.ray_jobs.test_train_lora import FAST, SAMPLE_V4, _fit_local, _split_seed


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def _checkpoint_folder(tmp_path: Path, step: int) -> Path:
    folder = tmp_path / f"src-{step}"
    folder.mkdir()
    (folder / "state.json").write_text(json.dumps({"step": step}))
    return folder


def test_checkpoints_are_kept_newest_last_and_half_copied_ones_ignored(tmp_path):
    rt = InProcessRuntime(str(tmp_path / "runs"), "run", keep=2)
    assert rt.get_checkpoint() is None
    for step in (2, 4, 6):
        rt.report({"step": step}, str(_checkpoint_folder(tmp_path, step)),
                  f"checkpoint_step_{step:07d}")
    run = tmp_path / "runs" / "run"
    assert sorted(p.name for p in run.iterdir()) == ["checkpoint_step_0000004",
                                                     "checkpoint_step_0000006"]
    (run / "checkpoint_step_0000008").mkdir()  # a copy that died before its marker
    latest = rt.get_checkpoint()
    assert latest.path.endswith("checkpoint_step_0000006")
    with latest.as_directory() as folder:
        assert json.loads((Path(folder) / "state.json").read_text()) == {"step": 6}
    rt.report({"step": 9}, None, "checkpoint_step_0000009")  # metrics only: nothing stored
    assert rt.get_checkpoint().path == latest.path


@pytest.mark.s3
def test_checkpoints_on_s3_round_trip(s3_env, tmp_path):
    from backend.storage import get_object_store

    path, filesystem = get_object_store().ray_storage("checkpoints/in-process")
    rt = InProcessRuntime(path, "run", filesystem, keep=1)
    for step in (1, 2):
        rt.report({}, str(_checkpoint_folder(tmp_path, step)), f"checkpoint_step_{step:07d}")
    latest = rt.get_checkpoint()
    assert latest.path.endswith("run/checkpoint_step_0000002")
    with latest.as_directory() as folder:
        assert sorted(p.name for p in Path(folder).iterdir()) == [COMPLETE_MARKER, "state.json"]
        assert json.loads((Path(folder) / "state.json").read_text()) == {"step": 2}
    assert len(InProcessRuntime(path, "run", filesystem)._complete()) == 1


def test_in_process_loop_gives_what_ray_train_gives(tmp_path):
    import torch

    from ray_jobs.worker.loop import train_loop_per_worker

    config = dict(FAST, validation_seed=_split_seed(), num_epochs=2)
    ray_sink = CollectingSink()
    ray_result = _fit_local(tmp_path / "ray", config, ray_sink)
    sink = CollectingSink()
    loop = {"config": config, "dataset": SAMPLE_V4, "output": str(tmp_path / "adapter"),
            "home": str(tmp_path / "ray" / "home"), "metrics_every_steps": 3, "sink": sink}
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        result = train_loop_per_worker(loop, runtime=InProcessRuntime(str(tmp_path / "runs"),
                                                                      "run"))
    finally:
        torch.set_num_threads(threads)
    assert [p["training_loss"] for p in sink.points] == pytest.approx(
        [p["training_loss"] for p in ray_sink.points], abs=1e-6)
    assert result["final_validation_loss"] == pytest.approx(ray_result["final_validation_loss"],
                                                            abs=1e-6)
    assert [c["step"] for c in sink.of("checkpoint")] == [c["step"] for c in
                                                          ray_sink.of("checkpoint")]


def test_one_worker_run_retries_from_its_last_checkpoint_without_ray(tmp_path):
    import ray

    config = dict(FAST, validation_seed=_split_seed(), num_epochs=2, checkpoint_every_steps=2)
    (tmp_path / "config.json").write_text(json.dumps(config))
    events = tmp_path / "events.jsonl"
    argv = ["--config", str(tmp_path / "config.json"), "--dataset", SAMPLE_V4, "--workers", "1",
            "--output", str(tmp_path / "adapter"), "--storage-path", str(tmp_path / "runs"),
            "--name", "run", "--fail-at-step", "3",
            "--sink", json.dumps({"kind": "jsonl", "path": str(events)})]
    assert main(argv) == 0
    assert not ray.is_initialized()  # no cluster was started or joined
    log = [json.loads(line) for line in events.read_text().splitlines()]
    of = {name: [e for e in log if e["event"] == name] for name in
          ("resumed", "checkpoint", "metrics", "completed", "log")}
    [resumed] = of["resumed"]
    assert resumed["step"] == 2
    # the base model was measured once, before the first attempt's first step
    assert [e["step"] for e in log if e["event"] == "samples"].count(0) == 1
    assert [p["step"] for e in of["metrics"] for p in e["points"]].count(0) == 1
    assert any("restarting from the last checkpoint (retry 1 of 2)" in e["message"]
               for e in of["log"])
    [done] = of["completed"]
    steps = [p["step"] for e in of["metrics"] for p in e["points"]]
    assert steps == list(range(0, done["result"]["total_steps"] + 1))  # 0: the base model
    kept = sorted(p.name for p in (tmp_path / "runs" / "run").iterdir())
    assert len(kept) == 2 and all((tmp_path / "runs" / "run" / k / COMPLETE_MARKER).exists()
                                  for k in kept)
    assert done["result"]["last_checkpoint"].endswith(kept[-1])
    assert (tmp_path / "adapter" / "adapter_model.safetensors").is_file()
