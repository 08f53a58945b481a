"""The training loop logs its start-up phases, in order, once, on rank 0."""
from __future__ import annotations

import pytest

from ray_jobs.worker.runtime import InProcessRuntime
from ray_jobs.worker.sinks import CollectingSink
from ray_jobs.worker.startup import PHASES, phase
from tests.ray_jobs.test_train_lora import FAST, SAMPLE_V4, _split_seed


def test_phase_rejects_unknown_names():
    with pytest.raises(KeyError):
        phase(CollectingSink(), "warp_drive")


def test_loop_logs_its_start_up_phases_in_order(tmp_path, monkeypatch):
    import torch

    from ray_jobs.worker.loop import train_loop_per_worker

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    sink = CollectingSink()
    loop = {"config": dict(FAST, validation_seed=_split_seed(), num_epochs=1),
            "dataset": SAMPLE_V4, "output": str(tmp_path / "adapter"),
            "home": str(tmp_path / "home"), "sink": sink}
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        train_loop_per_worker(loop, runtime=InProcessRuntime(str(tmp_path / "runs"), "run"))
    finally:
        torch.set_num_threads(threads)
    logged = [(e["meta"]["phase"], e["meta"]["at"]) for e in sink.of("log")
              if "phase" in e["meta"]]
    names = [name for name, _ in logged]
    assert names == ["worker_up", "imports", "data", "model", "first_step"]
    assert [t for _, t in logged] == sorted(t for _, t in logged)
    assert all(list(PHASES).index(a) < list(PHASES).index(b) for a, b in zip(names, names[1:]))
