"""bench/gpu_check.py runs end to end: on CPU with the tiny model (``--smoke``, CI), and the full
check on a GPU (marker ``gpu``)."""
from __future__ import annotations

import importlib.util
import json

import pytest

from tests.fixtures.paths import REPO


def _script():
    spec = importlib.util.spec_from_file_location("gpu_check", REPO / "bench" / "gpu_check.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_smoke_run_trains_both_ways_and_predicts_memory(tmp_path):
    import torch

    out = tmp_path / "check.json"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert _script().main(["--smoke", "--out", str(out), "--steps", "4", "--batch", "2",
                               "--only", "seq128-ckpt"]) == 0
    finally:
        torch.set_num_threads(threads)
    report = json.loads(out.read_text())
    [row] = report["configs"]
    assert row["gradient_checkpointing"] is True and row["max_seq_length"] == 128
    assert row["product"]["steps"] == row["trainer"]["steps"] == 4
    assert row["product"]["precision"]["gradient_checkpointing"] is True
    assert row["product"]["precision"]["base_dtype"] == "float32"  # CPU: fp32
    assert row["product"]["tokens_per_s"] > 0 and row["trainer"]["tokens_per_s"] > 0
    assert row["product_vs_trainer_tokens_per_s"] > 0
    assert row["trainer"]["sampling"] in ({"train_sampling_strategy": "group_by_length"},
                                          {"group_by_length": True})
    assert row["predicted"]["allocated_gb"] > row["predicted"]["base_weights_gb"] > 0
    assert row["product"]["peak_allocated_gb"] is None  # no GPU: nothing to hold it against


@pytest.mark.gpu
def test_full_check_on_a_gpu(tmp_path):
    out = tmp_path / "check.json"
    assert _script().main(["--out", str(out), "--steps", "8"]) == 0
    report = json.loads(out.read_text())
    for row in report["configs"]:
        assert row["product"]["precision"]["base_dtype"] == "bfloat16"
        assert row["product"]["peak_allocated_gb"] > row["predicted"]["base_weights_gb"]
        assert abs(row["product"]["memory_off_by_percent"]) < 50  # the goal is 15 %
