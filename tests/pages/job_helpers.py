"""Jobs for page tests, created through the jobs service (``submit=False``) and driven through the
progress sink the training Ray job uses (``backend.jobs.db_sink.DbSink``)."""
from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from backend.db.models import TrainingJob, utcnow
from backend.db.session import session_scope
from backend.jobs import service as jobs
from backend.jobs.db_sink import DbSink


def new_job(actor, dataset_id: str, name: str | None = None, **kwargs):
    """A queued job (not submitted to Ray)."""
    return jobs.create_job(actor, dataset_id, name=name, submit=False, **kwargs)


def run_job(job_id: str, steps: int = 6, *, started_minutes_ago: float = 0.0,
            validation_every: int = 3, start: bool = True) -> DbSink:
    """Move a job to training (unless ``start`` is False: it already trains), write metric
    points, logs and progress; returns the sink."""
    sink = DbSink(job_id)
    if start:
        _start(sink, job_id, started_minutes_ago)
    points = []
    for i in range(1, steps + 1):
        p = {"epoch": (i - 1) * 2 // steps, "step": i, "training_loss": 3.0 - 0.25 * i,
             "learning_rate": 2e-4 * min(1.0, i / 3), "throughput": 900.0 + 10 * i,
             "gradient_norm": 1.0 / i, "tokens_processed": 500 * i}
        if i % validation_every == 0:
            p["validation_loss"] = 3.1 - 0.25 * i
        points.append(p)
    sink.log("info", "loaded 12 conversations (1 held out for validation)")
    sink.log("warning", "2 conversation(s) truncated at max_seq_length")
    sink.metrics(points)
    sink.flush_logs()
    last = points[-1]
    sink.progress(last["epoch"], steps, steps * 2, 50.0,
                  {"training_loss": last["training_loss"], "learning_rate": last["learning_rate"],
                   "throughput": last["throughput"]}, 120.0)
    return sink


def _start(sink: DbSink, job_id: str, started_minutes_ago: float) -> None:
    sink.stage("initializing")
    if started_minutes_ago:
        with session_scope() as s:
            s.get(TrainingJob, job_id).started_at = utcnow() - timedelta(
                minutes=started_minutes_ago)
    sink.stage("training")


def fake_adapter(folder: Path, real: bool = False, base_dir: Path | None = None) -> Path:
    """An adapter folder: a real (tiny) PEFT LoRA adapter when ``real``, else placeholder files."""
    folder.mkdir(parents=True, exist_ok=True)
    if not real:
        (folder / "adapter_model.safetensors").write_bytes(b"x" * 100)
        (folder / "adapter_config.json").write_text("{}")
        (folder / "tokenizer.json").write_text("{}")
        return folder
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(base_dir, local_files_only=True)
    peft = get_peft_model(model, LoraConfig(r=4, lora_alpha=64, init_lora_weights=False,
                                            target_modules=["q_proj", "v_proj", "o_proj"]))
    peft.save_pretrained(folder)
    AutoTokenizer.from_pretrained(base_dir, local_files_only=True).save_pretrained(folder)
    return folder


def complete_job(job_id: str, adapter_dir: Path, sink: DbSink | None = None) -> str:
    """Finish a running job with ``adapter_dir`` as its adapter; returns the model id."""
    sink = sink or DbSink(job_id)
    sink.stage("validating")
    sink.completed({"adapter_dir": str(adapter_dir), "first_train_loss": 3.0,
                    "final_train_loss": 1.4, "final_val_loss": 1.5, "best_val_loss": 1.45,
                    "best_epoch": 1, "tokens_processed": 3000, "avg_throughput": 950.0,
                    "model_params": 264768, "duration_s": 95.0, "total_steps": 12})
    return jobs.get_job(_owner(job_id), job_id).artifact_id


def _owner(job_id: str):
    from backend.accounts.users import get_user

    with session_scope() as s:
        user_id = s.get(TrainingJob, job_id).user_id
    return get_user(user_id)


def finished_job(actor, dataset_id: str, tmp_path: Path, name: str = "run", *, real=False,
                 base_dir: Path | None = None, **kwargs):
    """A job taken through training to completion; returns (job id, model id)."""
    job = new_job(actor, dataset_id, name=name, **kwargs)
    sink = run_job(job.id)
    model_id = complete_job(job.id, fake_adapter(tmp_path / f"adapter-{job.id[:8]}", real,
                                                 base_dir), sink)
    return job.id, model_id
