"""N CPU ranks forked by the job's driver (ray_jobs.driver.local_group): DDP over gloo that really keeps
the ranks in step, rank 0's result back in the driver, retries from the newest checkpoint, no retry
of bad input, a killed rank stopping the group — no Ray anywhere."""
from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest

from ray_jobs.driver.local_group import RankFailed, run_group
from ray_jobs.train_lora import main
from ray_jobs.worker.runtime import (
    COMPLETE_MARKER,
    TEST_WORKER_RESOURCE_VAR,
    InProcessRuntime,
    driver_cpus,
    runtime_kind,
)
from tests.ray_jobs.test_train_lora import FAST, SAMPLE_V4, _split_seed


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("RAY_ADDRESS", raising=False)  # a run by hand on its own machine
    monkeypatch.delenv(TEST_WORKER_RESOURCE_VAR, raising=False)


@pytest.mark.parametrize("workers, gpu, local, environ, kind", [
    (1, False, True, {}, "in_driver"),
    (1, False, False, {}, "in_driver"),
    (2, False, True, {}, "local_group"),
    (4, False, True, {}, "local_group"),
    (2, False, False, {}, "ray_train"),  # a remote cluster: workers on other nodes
    (2, False, True, {TEST_WORKER_RESOURCE_VAR: "node2"}, "ray_train"),  # the two-node test
    (1, True, True, {}, "ray_train"),  # GPU jobs always
    (2, True, True, {}, "ray_train"),
])
def test_runtime_kind(workers, gpu, local, environ, kind):
    assert runtime_kind(workers, gpu, local, environ) == kind


def test_driver_is_scheduled_with_the_cpus_it_trains_on():
    assert driver_cpus("in_driver", 1) == 1
    assert driver_cpus("local_group", 3) == 3
    assert driver_cpus("ray_train", 3) == 0


def _events(path: Path) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for line in path.read_text().splitlines():
        event = json.loads(line)
        out.setdefault(event["event"], []).append(event)
    return out


def _argv(tmp_path: Path, config: dict, *extra: str) -> list[str]:
    (tmp_path / "config.json").write_text(json.dumps(config))
    return ["--config", str(tmp_path / "config.json"), "--dataset", SAMPLE_V4, "--workers", "2",
            "--output", str(tmp_path / "adapter"), "--storage-path", str(tmp_path / "runs"),
            "--name", "run", "--sink", json.dumps({"kind": "jsonl",
                                                   "path": str(tmp_path / "events.jsonl")}),
            *extra]


def _recording_loop(folder: Path):
    """train_loop_per_worker, then each rank saves its trainable (LoRA) weights to ``folder``."""
    def train(loop, runtime):
        import torch

        from ray_jobs.worker.loop import train_loop_per_worker

        models, prepare = [], runtime.prepare_model
        runtime.prepare_model = lambda model: models.append(model) or prepare(model)
        value = train_loop_per_worker(loop, runtime=runtime)
        torch.save({k: v.detach().clone() for k, v in models[0].named_parameters()
                    if v.requires_grad}, folder / f"rank{runtime.rank}.pt")
        return value
    return train


def test_two_ranks_train_in_step_and_rank_0_result_reaches_the_driver(tmp_path):
    import torch

    events = tmp_path / "events.jsonl"
    loop = {"config": dict(FAST, validation_seed=_split_seed(), num_epochs=2), "dataset": SAMPLE_V4,
            "output": str(tmp_path / "adapter"), "sink": {"kind": "jsonl", "path": str(events)},
            "metrics_every_steps": 3}
    pids: list[int] = []
    result = run_group(2, loop, InProcessRuntime(str(tmp_path / "runs"), "run"),
                       on_start=pids.extend, train=_recording_loop(tmp_path))
    assert len(set(pids)) == 2 and os.getpid() not in pids
    assert result["workers"] == 2 and result["device"] == "cpu"
    assert (tmp_path / "adapter" / "adapter_model.safetensors").is_file()
    ups = [e["meta"] for e in _events(events)["log"] if e["meta"].get("phase") == "worker_up"]
    assert sorted((m["rank"], m["pid"]) for m in ups) == list(enumerate(pids))
    rank0, rank1 = (torch.load(tmp_path / f"rank{r}.pt") for r in (0, 1))
    assert rank0.keys() == rank1.keys() and any("lora_B" in k for k in rank0)
    # each rank trained on its own share of the batches: only DDP's averaged gradients keep them
    # identical, and training moved them (LoRA B starts at zero)
    assert all(torch.equal(rank0[k], rank1[k]) for k in rank0)
    assert any(float(v.abs().sum()) > 0 for k, v in rank0.items() if "lora_B" in k)


def test_a_failed_rank_restarts_the_group_from_the_last_checkpoint(tmp_path):
    import ray

    config = dict(FAST, validation_seed=_split_seed(), num_epochs=2, checkpoint_every_steps=2)
    assert main(_argv(tmp_path, config, "--fail-at-step", "3")) == 0
    assert not ray.is_initialized()  # no cluster was started or joined
    of = _events(tmp_path / "events.jsonl")
    assert [e["step"] for e in of["resumed"]] == [2]
    messages = [e["message"] for e in of["log"]]
    assert ("worker 1 failed: RuntimeError: injected failure at step 3 (fail_at_step), "
            "restarting from the last checkpoint (retry 1 of 2)") in messages
    groups = [e["meta"] for e in of["log"] if e["meta"].get("phase") == "worker_group"]
    assert len(groups) == 2 and all(g["mode"] == "local processes" for g in groups)
    [done] = of["completed"]
    steps = [p["step"] for e in of["metrics"] for p in e["points"]]
    assert steps == list(range(0, done["result"]["total_steps"] + 1))  # 0: the base model
    kept = sorted(p.name for p in (tmp_path / "runs" / "run").iterdir())
    assert all((tmp_path / "runs" / "run" / k / COMPLETE_MARKER).exists() for k in kept)
    assert done["result"]["last_checkpoint"].endswith(kept[-1])
    assert done["result"]["workers"] == 2


def test_a_rerun_resumes_every_rank_from_the_newest_checkpoint(tmp_path):
    config = dict(FAST, validation_seed=_split_seed(), num_epochs=2, checkpoint_every_steps=2)
    # no retries left: the run fails after step 3, its checkpoint at step 2 persisted
    assert main(_argv(tmp_path, config, "--fail-at-step", "3", "--max-failures", "0")) == 1
    of = _events(tmp_path / "events.jsonl")
    assert "injected failure at step 3" in of["failed"][0]["message"]
    assert [c["step"] for c in of["checkpoint"]] == [2]
    (tmp_path / "events.jsonl").unlink()
    assert main(_argv(tmp_path, config)) == 0
    of = _events(tmp_path / "events.jsonl")
    assert [e["step"] for e in of["resumed"]] == [2]
    [done] = of["completed"]
    steps = [p["step"] for e in of["metrics"] for p in e["points"]]
    assert steps == list(range(3, done["result"]["total_steps"] + 1))


def test_bad_input_is_not_retried(tmp_path):
    config = dict(FAST, validation_seed=_split_seed(), base_model="nobody/no-such-model")
    assert main(_argv(tmp_path, config)) == 2
    of = _events(tmp_path / "events.jsonl")
    assert "no-such-model" in of["failed"][0]["message"]
    assert not any("restarting" in e["message"] for e in of["log"])
    assert len([e for e in of["log"] if e["meta"].get("phase") == "worker_group"]) == 1


def _kill_rank_1(loop, runtime):
    import torch.distributed as dist

    dist.barrier()
    if runtime.rank == 1:
        os.kill(os.getpid(), signal.SIGKILL)
    time.sleep(60)  # rank 0 would wait here: the driver must stop it


def test_a_killed_rank_stops_the_others(tmp_path):
    pids: list[int] = []
    started = time.monotonic()
    with pytest.raises(RankFailed, match="worker 1 failed: killed by SIGKILL"):
        run_group(2, {}, InProcessRuntime(str(tmp_path), "run"), on_start=pids.extend,
                  train=_kill_rank_1)
    assert time.monotonic() - started < 30
    for pid in pids:  # reaped: no process left behind
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


def _rank_1_lost_during_a_checkpoint(loop, runtime):
    """Both ranks commit step 2; at step 4 rank 1 dies while rank 0 copies the checkpoint."""
    folder = Path(loop["folder"])
    (folder / "weights").write_text("step 2")
    runtime.report({"step": 2}, str(folder) if runtime.rank == 0 else None, "checkpoint_0000002")
    if runtime.rank == 1:
        os.kill(os.getpid(), signal.SIGKILL)
    # rank 0 carries on to its copy as if the driver's SIGTERM had not reached it yet (it is
    # SIGKILLed STOP_WAIT_S later): rank 1 is gone before rank 0 reaches the barrier
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    time.sleep(0.5)
    (folder / "weights").write_text("step 4")
    runtime.report({"step": 4}, str(folder), "checkpoint_0000004")
    time.sleep(60)  # not reached: the barrier fails, or the driver kills this rank


def test_a_checkpoint_is_committed_only_once_every_rank_reached_it(tmp_path):
    """Ray Train's rule: a rank lost before the checkpoint's barrier leaves it uncommitted, so
    the restart resumes from the one before (which the job recorded), never from one the job
    could not record."""
    (tmp_path / "src").mkdir()
    store = InProcessRuntime(str(tmp_path / "runs"), "run")
    with pytest.raises(RankFailed, match="worker 1 failed"):
        run_group(2, {"folder": str(tmp_path / "src")}, store,
                  train=_rank_1_lost_during_a_checkpoint)
    newest = store.get_checkpoint()
    assert newest is not None and newest.path.endswith("checkpoint_0000002")
    assert (Path(newest.path) / "weights").read_text() == "step 2"
    run = tmp_path / "runs" / "run"
    assert not (run / "checkpoint_0000004" / COMPLETE_MARKER).exists()
    # committing a later checkpoint clears the uncommitted copy a failed attempt left behind
    (tmp_path / "src" / "weights").write_text("step 6")
    store.report({}, str(tmp_path / "src"), "checkpoint_0000006")
    assert sorted(p.name for p in run.iterdir()) == ["checkpoint_0000002", "checkpoint_0000006"]
