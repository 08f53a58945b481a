"""What a GPU job records (precision, attention, peak memory per worker) and the memory prediction
held against the measured peak on the next estimate; synthetic results: no GPU in CI."""
import pytest

from backend.accounts.users import create_user
from backend.jobs import service as jobs
from backend.jobs.db_sink import DbSink
from tests.backend.jobs.test_jobs import me, ready_dataset  # noqa: F401 (fixture)

PRECISION = {"device": "cuda", "base_dtype": "bfloat16", "trainable_dtype": "float32",
             "tf32": True, "attn_implementation": "sdpa", "gradient_checkpointing": False}


def _finish(actor, job_id, tmp_path, peak):
    adapter = tmp_path / job_id
    adapter.mkdir()
    (adapter / "adapter_model.safetensors").write_bytes(b"x" * 10)
    sink = DbSink(job_id)
    sink.stage("initializing")
    sink.stage("training")
    sink.completed({"adapter_dir": str(adapter), "first_train_loss": 3.0, "final_train_loss": 2.0,
                    "final_val_loss": 2.1, "best_val_loss": 2.1, "best_epoch": 1,
                    "tokens_processed": 1000, "avg_throughput": 50.0, "model_params": 1_000_000,
                    "precision": PRECISION, "gpu_peak_allocated_gb": peak,
                    "gpu_workers": [{"rank": 0, "utilization": 91.0, "memory_used_gb": 1.0,
                                     "peak_allocated_gb": peak}]})
    return jobs.get_job(actor, job_id)


def test_the_next_estimate_says_how_far_the_memory_prediction_was(me, tmp_path):  # noqa: F811
    from backend.adapters import get_model

    d = ready_dataset(me)
    config = jobs.build_config("balanced")
    before = jobs.estimate_for_dataset(me, d.id, config, "A100-80GB", 1)
    assert before["memory_check"] is None
    job = jobs.create_job(me, d.id, hardware_id="A100-80GB", submit=False)
    predicted = job.estimate["vram"]["allocated_gb"]
    assert predicted > job.estimate["vram"]["base_weights_gb"] > 0
    peak = predicted * 1.25  # synthetic measurement: the prediction was 20 % under
    done = _finish(me, job.id, tmp_path, peak)
    summary = get_model(me, done.artifact_id).training_summary
    assert summary["attn_implementation"] == "sdpa" and summary["precision"] == PRECISION
    assert summary["gpu_peak_allocated_gb"] == pytest.approx(peak)
    assert summary["predicted_allocated_gb"] == pytest.approx(predicted)
    assert summary["memory_error_percent"] == pytest.approx(-20.0)
    check = jobs.estimate_for_dataset(me, d.id, config, "A100-80GB", 1)["memory_check"]
    assert check["hardware_id"] == "A100-80GB"
    assert (check["predicted_gb"], check["measured_gb"]) == pytest.approx((predicted, peak))
    assert check["error_percent"] == pytest.approx(-20.0)
    assert jobs.estimate_for_dataset(me, d.id, config, "H100-80GB", 1)["memory_check"] is None
    assert jobs.estimate_for_dataset(me, d.id, config, "cpu-local", 1)["memory_check"] is None
    other = create_user("b@x.io", "B", "password-b")  # another user's jobs never show up
    theirs = ready_dataset(other)
    assert jobs.estimate_for_dataset(other, theirs.id, config, "A100-80GB",
                                     1)["memory_check"] is None


@pytest.mark.parametrize("override,stored,trains", [(None, None, False), (True, True, True),
                                                    (False, False, False)])
def test_the_job_keeps_the_setting_and_trains_as_decided(me, tmp_path, override,  # noqa: F811
                                                          stored, trains):
    from ray_jobs.driver.train_job import recipe_for_job

    d = ready_dataset(me)
    overrides = {} if override is None else {"gradient_checkpointing": override}
    job = jobs.create_job(me, d.id, hardware_id="A100-80GB", overrides=overrides, submit=False)
    assert job.hyperparameters["gradient_checkpointing"] is stored  # "train again" keeps auto
    assert job.gpu_config["gradient_checkpointing"] is trains  # the tiny model fits: auto = off
    assert job.estimate["vram"]["gradient_checkpointing"] is trains
    recipe = recipe_for_job(job.id)
    assert recipe.config.gradient_checkpointing is trains and recipe.use_gpu


def test_cli_estimate_says_whether_checkpointing_is_on(me, capsys):  # noqa: F811
    from backend.cli import main

    d = ready_dataset(me)
    args = ["jobs", "estimate", "--dataset", d.id, "--gpu", "A100-80GB"]
    assert main(args) == 0
    assert "gradient checkpointing off" in capsys.readouterr().out
    assert main(args + ["--set", "gradient_checkpointing=true"]) == 0
    assert "gradient checkpointing on" in capsys.readouterr().out
