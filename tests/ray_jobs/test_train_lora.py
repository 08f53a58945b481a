"""The LoRA recipe: sinks, schedule, command line, the per-worker loop (in-process, Ray Train's
local mode) and real distributed runs on the session Ray head (marked ``ray``)."""
from __future__ import annotations

import io
import json
import math
from pathlib import Path

import pytest

from backend.core.errors import InvalidInput
from ray_jobs.train_lora import main
from ray_jobs.worker.loop import TrainConfig, lr_lambda
from ray_jobs.worker.sinks import (
    METRIC_FIELDS,
    CollectingSink,
    JsonLinesSink,
    MetricBuffer,
    NullSink,
    PrintSink,
    ProgressSink,
    make_sink,
)
from tests.fixtures.paths import SAMPLE_DATA

SAMPLE_V4 = str(SAMPLE_DATA / "sample-v4.jsonl")
STAGES_IN_ORDER = ["initializing", "training", "validating", "saving"]
# a high learning rate so that a few steps on 5 conversations visibly lower the loss
FAST = {"learning_rate": 0.02, "batch_size": 1, "num_epochs": 4, "lora_rank": 8,
        "lora_alpha": 16, "lora_dropout": 0.0, "max_seq_length": 512, "warmup_steps": 0,
        "validation_fraction": 0.3}


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def _split_seed(fraction: float = 0.3) -> int:
    """A validation seed that holds out 1-2 of the 5 sample conversations."""
    from backend.datasets.formats import load_split

    for seed in range(50):
        train, val = load_split(SAMPLE_V4, fraction, seed)
        if 1 <= len(val) <= 2:
            return seed
    raise AssertionError("no seed splits the sample")


# ----- sinks -------------------------------------------------------------------------------------
def test_make_sink_registry():
    assert isinstance(make_sink({"kind": "print"}), PrintSink)
    assert isinstance(make_sink(None), PrintSink)
    assert isinstance(make_sink({"kind": "null"}), NullSink)
    collecting = CollectingSink()
    assert make_sink(collecting) is collecting
    for sink in (PrintSink(), NullSink(), collecting, JsonLinesSink(path="/tmp/x")):
        assert isinstance(sink, ProgressSink)
    with pytest.raises(InvalidInput) as err:
        make_sink({"kind": "carrier-pigeon"})
    assert "print" in err.value.message and err.value.code == "unknown_sink"
    with pytest.raises(InvalidInput):
        make_sink({"kind": "jsonl"})  # no path


def test_print_and_jsonl_sinks_write_one_json_object_per_event(tmp_path):
    stream = io.StringIO()
    path = tmp_path / "events.jsonl"
    for sink in (PrintSink(stream), make_sink({"kind": "jsonl", "path": str(path)})):
        sink.stage("training")
        sink.metrics([{"step": 1, "training_loss": 2.0}])
        sink.checkpoint(1, 1, 2.0, "/ckpt", 10)
        sink.failed("boom", "trace")
    for text in (stream.getvalue(), path.read_text()):
        events = [json.loads(line) for line in text.splitlines()]
        assert [e["event"] for e in events] == ["stage", "metrics", "checkpoint", "failed"]
        assert events[1]["points"] == [{"step": 1, "training_loss": 2.0}]


def test_metric_buffer_flushes_every_n_points_or_t_seconds():
    now = [0.0]
    sink = CollectingSink()
    buffer = MetricBuffer(sink, every_steps=3, every_s=10.0, clock=lambda: now[0])
    buffer.add({"step": 1}, progress=(1, 1, 9, 0.0, {"step": 1}, None))
    assert [len(p["points"]) for p in sink.of("metrics")] == [1]  # the first point at once
    for step in (2, 3):
        buffer.add({"step": step}, progress=(1, step, 9, 0.0, {"step": step}, None))
    assert len(sink.of("metrics")) == 1
    buffer.add({"step": 4})
    assert [len(p["points"]) for p in sink.of("metrics")] == [1, 3]
    assert sink.of("progress")[-1]["step"] == 3  # the latest progress given
    now[0] = 11.0
    buffer.add({"step": 5})  # time's up: flush a single point
    assert [p["step"] for p in sink.points] == [1, 2, 3, 4, 5]
    buffer.flush()
    assert len(sink.of("metrics")) == 3  # nothing buffered: no empty batch


def test_metric_buffer_with_fast_steps_flushes_at_most_once_per_min_interval():
    now = [0.0]
    sink = CollectingSink()
    buffer = MetricBuffer(sink, every_steps=3, every_s=10.0, clock=lambda: now[0],
                          min_interval_s=1.0)
    for step in range(1, 9):  # 8 fast steps in 0.4 s: only the first point goes out
        now[0] = step * 0.05
        buffer.add({"step": step})
    assert [len(p["points"]) for p in sink.of("metrics")] == [1]
    now[0] = 1.2
    buffer.add({"step": 9})  # a full buffer and a second since the last write
    assert [len(p["points"]) for p in sink.of("metrics")] == [1, 8]


# ----- schedule and configuration ----------------------------------------------------------------
def test_learning_rate_schedule_warms_up_then_decays_to_zero():
    linear = lr_lambda(warmup=4, total=14, kind="linear")
    assert [round(linear(s), 2) for s in range(5)] == [0.2, 0.4, 0.6, 0.8, 1.0]
    assert linear(9) == pytest.approx(0.5) and linear(14) == 0.0
    cosine = lr_lambda(warmup=0, total=10, kind="cosine")
    assert cosine(0) == 1.0 and cosine(5) == pytest.approx(0.5) and cosine(10) == pytest.approx(0)


def test_config_is_the_job_training_config_plus_recipe_knobs():
    from backend.training.config import TrainingConfig

    job = TrainingConfig(learning_rate=1e-4, target_modules=["q_proj"])
    cfg = TrainConfig(**job.model_dump(), lr_scheduler="cosine")
    assert cfg.learning_rate == 1e-4 and cfg.validation_seed == 0
    with pytest.raises(InvalidInput):
        TrainConfig(learning_rat=1e-4)


def test_cli_refuses_bad_input_with_exit_status_2(tmp_path, capsys):
    good = tmp_path / "good.json"
    good.write_text(json.dumps(FAST))
    bad_json = tmp_path / "bad.json"
    bad_json.write_text("{not json")
    bad_value = tmp_path / "value.json"
    bad_value.write_text(json.dumps({"learning_rate": -1, "num_epochs": 0}))
    cases = [
        (["--config", str(bad_json), "--dataset", SAMPLE_V4], "cannot read config"),
        (["--config", str(bad_value), "--dataset", SAMPLE_V4], "learning_rate"),
        (["--config", str(good), "--dataset", str(tmp_path / "none.jsonl")], "does not exist"),
        (["--config", str(good), "--dataset", SAMPLE_V4, "--workers", "0"], "--workers"),
    ]
    for argv, message in cases:
        assert main(argv) == 2
        assert message in capsys.readouterr().err


# ----- the worker loop, in-process ---------------------------------------------------------------
def _fit_local(tmp_path: Path, config: dict, sink: CollectingSink, **loop):
    """Run train_loop_per_worker in this process (Ray Train local mode: no cluster)."""
    import torch
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    from ray_jobs.worker.loop import train_loop_per_worker

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        trainer = TorchTrainer(
            train_loop_per_worker,
            train_loop_config={"config": config, "dataset": SAMPLE_V4, "sink": sink,
                               "output": str(tmp_path / "adapter"), "home": str(tmp_path / "home"),
                               "metrics_every_steps": 3, **loop},
            scaling_config=ScalingConfig(num_workers=0),
            run_config=RunConfig(name="local", storage_path=str(tmp_path / "runs")))
        return trainer.fit().return_value
    finally:
        torch.set_num_threads(threads)


def test_worker_loop_reports_every_step_once_and_saves_the_adapter(tmp_path):
    sink = CollectingSink()
    config = dict(FAST, validation_seed=_split_seed(), gradient_accumulation_steps=2,
                  eval_every_steps=3, num_epochs=3)
    result = _fit_local(tmp_path, config, sink, eval_samples_budget=1.0)  # samples at every eval

    stages = [e["stage"] for e in sink.of("stage")]
    assert stages == STAGES_IN_ORDER
    base, *points = sink.points
    # step 0: the base model's validation loss, measured before the first step
    assert base["step"] == 0 and base["training_loss"] is None
    assert base["validation_loss"] == result["base_validation_loss"] > points[-1]["validation_loss"]
    steps_per_epoch = math.ceil(result["dataset"]["train_conversations"] / 2)
    assert [p["step"] for p in points] == list(range(1, 3 * steps_per_epoch + 1))
    assert all(set(p) == set(METRIC_FIELDS) for p in points)
    assert [p["epoch"] for p in points] == [1 + i // steps_per_epoch for i in range(len(points))]
    evaluated = [p["step"] for p in points if p["validation_loss"] is not None]
    expected = {s for s in range(1, len(points) + 1) if s % 3 == 0 or s % steps_per_epoch == 0}
    assert evaluated == sorted(expected)
    assert all(p["throughput"] > 0 and p["gradient_norm"] > 0 for p in points)
    assert [p["tokens_processed"] for p in points] == sorted(p["tokens_processed"] for p in points)
    assert [c["step"] for c in sink.of("checkpoint")] == [steps_per_epoch * e for e in (1, 2, 3)]
    assert sink.of("progress")[-1]["percent"] == 100.0

    assert result["total_steps"] == len(points)
    assert result["final_validation_loss"] == points[-1]["validation_loss"]
    assert result["perplexity"] == pytest.approx(math.exp(result["final_validation_loss"]))
    assert result["best_validation_loss"] == min(p["validation_loss"] for p in points
                                                 if p["validation_loss"] is not None)
    assert [h["epoch"] for h in result["train_loss_history"]] == [1, 2, 3]
    assert result["total_tokens_processed"] == points[-1]["tokens_processed"]
    # evaluation samples: the base model's answers at step 0, then one set at every evaluation
    samples = sink.of("samples")
    assert [e["step"] for e in samples] == [0, *evaluated]
    for event in samples:
        assert [i["index"] for i in event["items"]] == list(range(result["eval_samples"]["prompts"]))
        assert all(i["reference"] and i["question"] and i["prompt"] for i in event["items"])
    assert result["eval_samples"]["prompts"] == min(3, result["dataset"]["validation_conversations"])
    assert 0 < result["eval_samples"]["seconds"] < result["duration_seconds"]
    cost = result["eval_samples"]
    assert 0 < cost["cpu_seconds"] < cost["run_cpu_seconds"] and 0 < cost["cpu_share"] < 1
    out = tmp_path / "adapter"
    for name in ("adapter_model.safetensors", "adapter_config.json", "tokenizer.json",
                 "tokenizer_config.json", "training_result.json"):
        assert (out / name).is_file(), name
    adapter_config = json.loads((out / "adapter_config.json").read_text())
    assert adapter_config["r"] == 8
    assert adapter_config["base_model_name_or_path"] == "brightrun/tiny-llama"  # never a path
    readme = (out / "README.md").read_text()
    assert "`brightrun/tiny-llama`" in readme and "PeftModel.from_pretrained" in readme
    assert str(tmp_path) not in readme
    assert result["files"]["README.md"] == (out / "README.md").stat().st_size


# ----- real Ray runs -----------------------------------------------------------------------------
def _submit(gateway, tmp_path: Path, config: dict, extra: list[str], timeout_s: float = 420):
    """Run ``python -m ray_jobs.train_lora`` as a Ray job; returns (status, events, logs)."""
    cfg = tmp_path / "config.json"
    cfg.write_text(json.dumps(config))
    events = tmp_path / "events.jsonl"
    args = ["--config", str(cfg), "--dataset", f"file://{SAMPLE_V4}", "--workers", "2",
            "--output", str(tmp_path / "adapter"), "--storage-path", str(tmp_path / "runs"),
            "--name", "run", "--sink", json.dumps({"kind": "jsonl", "path": str(events)})] + extra
    sid = gateway.submit("ray_jobs.train_lora", args, kind="train", object_id="test",
                         extra_env={"HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"})
    status = gateway.wait(sid, timeout_s=timeout_s)
    logs = gateway.logs(sid)
    lines = events.read_text().splitlines() if events.exists() else []
    return status, [json.loads(line) for line in lines], logs


def _of(events: list[dict], name: str) -> list[dict]:
    return [e for e in events if e["event"] == name]


def _validation_loss(base: str, adapter: Path, fraction: float, seed: int,
                     max_seq_length: int) -> float:
    """Mean loss over the assistant tokens of the validation split, one conversation at a time,
    with plain transformers + PEFT (nothing from our training code but the data encoding)."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from backend.datasets.formats import load_split
    from backend.training.data import encode_conversation

    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base), str(adapter))
    model.eval()
    tokenizer = AutoTokenizer.from_pretrained(str(adapter))
    _, val = load_split(SAMPLE_V4, fraction, seed)
    total, count = 0.0, 0
    with torch.no_grad():
        for conv in val:
            enc = encode_conversation(tokenizer, conv.turns, max_seq_length)
            out = model(input_ids=torch.tensor([enc.input_ids]),
                        labels=torch.tensor([enc.labels]))
            n = enc.trained_tokens
            total += float(out.loss) * n
            count += n
    return total / count


@pytest.mark.ray
def test_two_cpu_workers_train_a_lora_adapter_end_to_end(ray_env, brightrun_home, tmp_path):
    seed = _split_seed()
    config = dict(FAST, validation_seed=seed, num_epochs=5, target_modules=["q_proj", "v_proj"])
    status, events, logs = _submit(ray_env, tmp_path, config, [])
    assert status == "SUCCEEDED", logs[-4000:]

    [done] = _of(events, "completed")
    result = done["result"]
    assert [e["stage"] for e in _of(events, "stage")] == STAGES_IN_ORDER
    assert result["workers"] == 2
    history = [h["training_loss"] for h in result["train_loss_history"]]
    assert len(history) == 5 and history[-1] < history[0] - 0.3, history
    points = [p for e in _of(events, "metrics") for p in e["points"]]
    assert [p["step"] for p in points] == list(range(0, result["total_steps"] + 1))

    adapter = tmp_path / "adapter"
    assert {"adapter_model.safetensors", "adapter_config.json", "tokenizer.json"} <= {
        p.name for p in adapter.iterdir()}
    from backend.base_models.tiny_model import ensure_tiny_model

    base = str(ensure_tiny_model(brightrun_home))
    reproduced = _validation_loss(base, adapter, FAST["validation_fraction"], seed,
                                  FAST["max_seq_length"])
    assert reproduced == pytest.approx(result["final_validation_loss"], abs=1e-3)
    assert result["perplexity"] == pytest.approx(math.exp(reproduced), rel=1e-3)


@pytest.mark.ray
@pytest.mark.slow
def test_a_failed_worker_resumes_from_the_last_checkpoint(ray_env, tmp_path):
    config = dict(FAST, validation_seed=_split_seed(), num_epochs=3)
    status, events, logs = _submit(ray_env, tmp_path, config, ["--fail-at-step", "3"])
    assert status == "SUCCEEDED", logs[-4000:]

    [resumed] = _of(events, "resumed")
    checkpoints = [c["step"] for c in _of(events, "checkpoint")]
    assert resumed["step"] == max(s for s in checkpoints if s < 3)
    assert any("injected failure" in e["message"] for e in _of(events, "log")
               if e["level"] == "error")
    # the failure struck before step 3 was reported, so every step arrives exactly once; in
    # general points after the checkpoint may arrive twice and `resumed` tells the sink so
    steps = [p["step"] for e in _of(events, "metrics") for p in e["points"]]
    [done] = _of(events, "completed")
    assert steps == list(range(0, done["result"]["total_steps"] + 1))  # 0: the base model
    assert done["result"]["final_validation_loss"] is not None
