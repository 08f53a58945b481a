"""The per-worker LoRA training loop run by Ray Train's ``TorchTrainer`` (one copy per worker).

``train_loop_per_worker(loop_config)`` — keys of ``loop_config``:

- ``config``: the hyperparameters, validated by :class:`TrainConfig` (the job's TrainingConfig
  fields plus ``lr_scheduler`` and ``validation_seed``; unknown keys are an error);
- ``dataset``: local path or ``file://`` URL of the JSONL dataset, or ``store:KEY`` for an object of
  the configured object store (every worker reads it);
- ``output``: local folder (or ``file://`` URL) for the final adapter + tokenizer (rank 0 writes);
  may be empty with ``upload_prefix``: rank 0 then uses a temporary folder of its own node;
- ``sink``: sink spec for :func:`ray_jobs.worker.sinks.make_sink` (rank 0 only; default print);
- ``home``: BrightRun home for the tiny model (default ``$BRIGHTRUN_HOME``);
- ``checkpoint_root``: where Ray persists checkpoints (only used to report checkpoint URIs);
- ``metrics_every_steps`` / ``metrics_every_s`` / ``metrics_min_interval_s``: how often buffered
  metric points are flushed (every N points but at most once per min interval, or every T s);
- ``upload_prefix``: when set, rank 0 also uploads the adapter folder to the configured object store
  under that prefix (so it works whichever node rank 0 ran on) and says so in the result;
- ``use_gpu``: the job's hardware is a GPU (``gpu_config.use_gpu``); decides device and dtypes
  (:mod:`ray_jobs.worker.precision`: fp32 on CPU whatever the host has, bf16 base weights on GPU);
- ``fail_at_step``: fault injection for tests — the last rank raises after that step on a run's
  first attempt (one that did not start from a checkpoint).

Every worker encodes the whole dataset, builds the same length-grouped batches for the epoch and
takes a disjoint round-robin share of them (padded so all workers run the same steps). The loss is
the mean cross-entropy over the assistant tokens of the whole optimizer step across all workers and
accumulation micro-batches. Rank 0 reports progress; all ranks call ``ray.train.report`` at the same
steps (it is a barrier), only rank 0 attaches checkpoint files. Rank 0 returns the result dict.
"""
from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

from backend.core.errors import InvalidInput
from backend.datasets.formats import load_split
from backend.training.data import (
    IGNORE_INDEX,
    collate,
    encode_and_plan,
    local_path,
    make_batches,
    padding_efficiency,
    shard_batches,
)
from ray_jobs.worker import dpo
from ray_jobs.worker.adapter_card import write_adapter_card
from ray_jobs.worker.checkpoints import elapsed, reseed, restore, save_checkpoint
from ray_jobs.worker.evaluation import (
    choose_sample_prompts,
    evaluate,
    learning_summary,
    measure_base,
    note_validation,
    record_samples,
)
from ray_jobs.worker.losses import install_row_selection, token_loss_sum, trained_loss_sum  # noqa: F401
from ray_jobs.worker.precision import attention_in_use
from ray_jobs.worker.runtime import RayTrainRuntime
from ray_jobs.worker.sinks import MetricBuffer, NullSink, ProgressSink, make_sink, utc_now
from ray_jobs.worker.startup import phase
from ray_jobs.worker.state import Run as _Run
from ray_jobs.worker.state import TrainConfig, allreduce

RESULT_FILE = "training_result.json"


def train_loop_per_worker(loop_config: dict[str, Any], runtime: Any = None
                          ) -> dict[str, Any] | None:
    """Train a LoRA adapter on this worker's share of the data (see module docstring).

    Returns the result dict on rank 0 and None elsewhere. Raises InvalidInput for a bad config,
    base model or dataset; any training error is logged to the sink by rank 0 and re-raised so
    Ray can retry from the last checkpoint. ``runtime`` (``ray_jobs.worker.runtime``) is where the
    Ray Train calls go: Ray Train when omitted (a TorchTrainer worker), or the driver's own
    :class:`~ray_jobs.worker.runtime.InProcessRuntime`.
    """
    loop_started = time.time()
    rt = runtime or RayTrainRuntime()
    rank, world = rt.context()
    sink = make_sink(loop_config.get("sink")) if rank == 0 else NullSink()
    run = _Run(cfg=TrainConfig(**loop_config.get("config", {})), loop=loop_config, rank=rank,
               world=world, sink=sink, rt=rt)
    try:
        _announce(loop_config, run.sink, rank, loop_started)
        _setup(run)
        _train(run)
        return _finish(run)
    except Exception as exc:
        _log_failure(loop_config, sink, rank, exc)
        raise


def _announce(loop_config: dict[str, Any], sink: ProgressSink, rank: int, at: float) -> None:
    """Every rank logs its ``worker_up`` phase (rank and process id) in the job log: rank 0 on
    its sink, the others on one of their own (written at once)."""
    if rank != 0:
        sink = make_sink(loop_config.get("sink"))
    phase(sink, "worker_up", at=at, rank=rank, pid=os.getpid())
    if rank != 0:
        getattr(sink, "flush_logs", lambda: None)()


def _log_failure(loop_config: dict[str, Any], sink: ProgressSink, rank: int, exc: Exception
                 ) -> None:
    """Record a worker's error in the job log (any rank: the failing one may not be rank 0)."""
    try:
        if rank != 0:
            sink = make_sink(loop_config.get("sink"))
        sink.log("error", f"worker {rank} failed: {type(exc).__name__}: {exc}",
                 stack=traceback.format_exc())
    except Exception:  # noqa: BLE001 - never hide the original error
        pass


# ----- setup -------------------------------------------------------------------------------------
def _setup(run: _Run) -> None:
    import torch
    from transformers import AutoTokenizer

    from backend.base_models.registry import resolve_base_model

    cfg = run.cfg
    phase(run.sink, "imports")
    run.sink.stage("initializing")
    torch.manual_seed(cfg.seed)
    path = resolve_base_model(cfg.base_model, run.loop.get("home"))
    run.tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    if run.tokenizer.pad_token_id is None:
        run.tokenizer.pad_token = run.tokenizer.eos_token
    _load_data(run)
    phase(run.sink, "data")
    load_model(run, path)
    build_optimizer(run)
    restore(run)
    reseed(run)
    phase(run.sink, "model")
    run.buffer = MetricBuffer(run.sink, int(run.loop.get("metrics_every_steps", 10)),
                              float(run.loop.get("metrics_every_s", 5.0)),
                              min_interval_s=float(run.loop.get("metrics_min_interval_s", 1.0)))


def _load_data(run: _Run) -> None:
    cfg = run.cfg
    if cfg.method == "dpo":
        return dpo.load_data(run)
    source = run.loop["dataset"]
    if isinstance(source, str) and source.startswith("store:"):
        from backend.storage import get_object_store

        with contextlib.closing(get_object_store().open(source[len("store:"):])) as fh:
            train_convs, val_convs = load_split(fh, cfg.validation_fraction, cfg.validation_seed)
    else:
        train_convs, val_convs = load_split(source, cfg.validation_fraction,
                                            cfg.validation_seed)
    run.train, run.val, plan = encode_and_plan(run.tokenizer, train_convs, val_convs, cfg,
                                               run.world)
    choose_sample_prompts(run, val_convs)
    batches = make_batches(run.train, cfg.batch_size, cfg.seed, 0)
    run.steps_per_epoch, run.total_steps = plan.steps_per_epoch, plan.total_steps
    run.counts = {**plan.to_dict(), "train_tokens": plan.tokens_per_epoch,
                  "train_trained_tokens": plan.trained_tokens_to_train // cfg.num_epochs,
                  "dropped": plan.left_out,
                  "padding_efficiency": round(padding_efficiency(run.train, batches), 4)}
    run.sink.log("info", f"{len(run.train)} training and {len(run.val)} validation conversations; "
                 f"{run.total_steps} steps on {run.world} worker(s)", **run.counts)
    if not run.val:
        run.sink.log("warning", "the validation split is empty: no validation loss will be "
                     "reported (raise validation_fraction)")


def load_model(run: _Run, path: str) -> None:
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from ray_jobs.worker import precision
    from ray_jobs.worker.gpu_metrics import GpuMonitor

    cfg = run.cfg  # device and dtypes from the job's hardware, not from the host (precision.py)
    run.precision = precision.for_job(bool(run.loop.get("use_gpu")), cfg.gradient_checkpointing)
    base = AutoModelForCausalLM.from_pretrained(path, local_files_only=True,
                                                **precision.load_kwargs(run.precision))
    lora = LoraConfig(r=cfg.lora_rank, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
                      target_modules=cfg.target_modules, task_type="CAUSAL_LM")
    run.inner = get_peft_model(base, lora)
    precision.prepare(run.precision, run.inner)
    install_row_selection(run.inner)
    run.model = run.rt.prepare_model(run.inner)
    run.device = run.rt.device()
    run.gpu = GpuMonitor(run.device)


def build_optimizer(run: _Run) -> None:
    import torch

    cfg = run.cfg
    params = [p for p in run.inner.parameters() if p.requires_grad]
    run.optimizer = torch.optim.AdamW(params, lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
    warmup = cfg.warmup_for(run.total_steps)
    if warmup >= run.total_steps:
        warmup = run.total_steps // 10
        run.sink.log("warning", f"warmup_steps {cfg.warmup_steps} ≥ the run's {run.total_steps} "
                     f"steps; warming up for {warmup} steps instead")
    run.scheduler = torch.optim.lr_scheduler.LambdaLR(
        run.optimizer, lr_lambda(warmup, run.total_steps, cfg.lr_scheduler))
    run.state = {"global_step": 0, "epoch": 0, "step_in_epoch": 0, "tokens_processed": 0,
                 "best_validation_loss": None, "best_epoch": None, "epoch_loss_sum": 0.0,
                 "epoch_trained_tokens": 0, "train_loss_history": [],
                 "validation_loss_history": [], "elapsed_s": 0.0, "warmup_steps": warmup}


def lr_lambda(warmup: int, total: int, kind: str):
    """Multiplier of the peak learning rate at each step: linear warmup from ~0 over ``warmup``
    steps, then linear or cosine decay to 0 at ``total``. Raises nothing."""
    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / (warmup + 1)
        progress = (step - warmup) / max(1, total - warmup)
        progress = min(1.0, progress)
        if kind == "cosine":
            return 0.5 * (1.0 + math.cos(math.pi * progress))
        return 1.0 - progress
    return factor


# ----- training ----------------------------------------------------------------------------------
def _train(run: _Run) -> None:
    cfg, st = run.cfg, run.state
    if cfg.method == "dpo":
        return dpo.train(run, _progress_args)
    run.sink.stage("training")
    measure_base(run)
    run.train_started = time.monotonic()
    for epoch in range(st["epoch"], cfg.num_epochs):
        batches = shard_batches(make_batches(run.train, cfg.batch_size, cfg.seed, epoch),
                                run.rank, run.world)
        accum = cfg.gradient_accumulation_steps
        steps = [batches[i:i + accum] for i in range(0, len(batches), accum)]
        trained = allreduce([float(sum(run.train[i].trained_tokens for idx, real in step
                                        if real for i in idx)) for step in steps])
        first = st["step_in_epoch"] if epoch == st["epoch"] else 0
        for s in range(first, len(steps)):
            _one_step(run, epoch, steps[s], trained[s], last_in_epoch=s == len(steps) - 1)


def _one_step(run: _Run, epoch: int, micro: list, trained_tokens: float, last_in_epoch: bool
              ) -> None:
    cfg, st = run.cfg, run.state
    t0 = time.perf_counter()
    loss_sum, real_tokens, grad_norm, lr = optimizer_step(run, micro, trained_tokens)
    loss_sum, real_tokens = allreduce([loss_sum, float(real_tokens)])
    step_s = time.perf_counter() - t0
    st["global_step"] += 1
    st["step_in_epoch"] += 1
    if st["global_step"] == run.start_step + 1:
        phase(run.sink, "first_step", step=st["global_step"])
    if run.loop.get("fail_at_step") == st["global_step"] and run.start_step == 0 \
            and run.rank == run.world - 1:
        raise RuntimeError(f"injected failure at step {st['global_step']} (fail_at_step)")
    st["tokens_processed"] += int(real_tokens)
    st["epoch_loss_sum"] += loss_sum
    st["epoch_trained_tokens"] += int(trained_tokens)
    train_loss = loss_sum / max(trained_tokens, 1.0)
    final_epoch = epoch == cfg.num_epochs - 1
    val_loss = None
    final_step = st["global_step"] == run.total_steps
    every_eval = cfg.eval_every_steps
    if last_in_epoch or (every_eval and st["global_step"] % every_eval == 0):
        if last_in_epoch and final_epoch:
            run.sink.stage("validating")
        val_loss = evaluate(run)
        note_validation(run, epoch, val_loss, last_in_epoch)
        record_samples(run, st["global_step"])
    if last_in_epoch:
        st["train_loss_history"].append(
            {"epoch": epoch + 1, "training_loss": st["epoch_loss_sum"]
             / max(st["epoch_trained_tokens"], 1)})
        st.update(epoch=epoch + 1, step_in_epoch=0, epoch_loss_sum=0.0, epoch_trained_tokens=0)
    point = {"epoch": epoch + 1, "step": st["global_step"], "training_loss": train_loss,
             "validation_loss": val_loss, "learning_rate": lr, "gradient_norm": grad_norm,
             "throughput": real_tokens / step_s if step_s > 0 else None,
             "gpu_utilization": None, "tokens_processed": st["tokens_processed"],
             "timestamp": utc_now(), **run.gpu.gather(run.rank, run.world, allreduce)}
    run.buffer.add(point, _progress_args(run, epoch, point))
    every = cfg.checkpoint_every_steps
    if final_step or (st["global_step"] % every == 0 if every else last_in_epoch):
        run.buffer.flush()
        save_checkpoint(run, train_loss, val_loss)


def optimizer_step(run: _Run, micro: list, trained_tokens: float
                    ) -> tuple[float, int, float | None, float]:
    """Forward/backward every micro-batch of one step, then clip and step. Returns this worker's
    (loss sum, non-padding tokens, gradient norm before clipping, learning rate used)."""
    import torch

    run.model.train()
    loss_total, real_tokens = 0.0, 0
    for k, (indices, real) in enumerate(micro):
        batch = collate([run.train[i] for i in indices], run.tokenizer.pad_token_id)
        if real:
            real_tokens += int(batch["attention_mask"].sum())
        else:
            batch["labels"].fill_(IGNORE_INDEX)  # padding batch: runs for DDP's sake, adds nothing
        batch = {key: value.to(run.device) for key, value in batch.items()}
        syncing = k == len(micro) - 1 or not hasattr(run.model, "no_sync")
        with contextlib.nullcontext() if syncing else run.model.no_sync():
            loss_sum = trained_loss_sum(run.model, run.inner, batch)
            (loss_sum * run.world / max(trained_tokens, 1.0)).backward()
        loss_total += float(loss_sum.detach())
    params = [p for p in run.inner.parameters() if p.requires_grad]
    grad_norm = float(torch.nn.utils.clip_grad_norm_(params, run.cfg.max_grad_norm))
    lr = run.scheduler.get_last_lr()[0]
    run.optimizer.step()
    run.scheduler.step()
    run.optimizer.zero_grad(set_to_none=True)
    return loss_total, real_tokens, grad_norm if math.isfinite(grad_norm) else None, lr


def _progress_args(run: _Run, epoch: int, point: dict[str, Any]) -> tuple:
    st = run.state
    done = st["global_step"] - run.start_step
    elapsed = time.monotonic() - run.train_started
    remaining = run.total_steps - st["global_step"]
    eta = elapsed / done * remaining if done > 0 else None
    percent = round(100.0 * st["global_step"] / max(run.total_steps, 1), 2)
    return (epoch + 1, st["global_step"], run.total_steps, percent, point, eta)


# ----- checkpoints and output --------------------------------------------------------------------
def _finish(run: _Run) -> dict[str, Any] | None:
    """Rank 0 saves the adapter and tokenizer to ``output`` and returns the result dict."""
    run.buffer.flush()
    run.gpu_final = run.gpu.gather(run.rank, run.world, allreduce)  # a collective: every rank
    if run.rank != 0:
        return None
    run.sink.stage("saving")
    prefix = run.loop.get("upload_prefix")
    if not run.loop.get("output") and not prefix:
        raise InvalidInput("loop_config has no `output` folder", code="invalid_output")
    # no output folder: rank 0 writes to a folder of its own node, uploads it and removes it
    # (the driver's paths may be on another machine)
    out = local_path(run.loop["output"], "output") if run.loop.get("output") \
        else Path(tempfile.mkdtemp(prefix="brightrun-adapter-"))
    out.mkdir(parents=True, exist_ok=True)
    run.inner.save_pretrained(out)
    run.tokenizer.save_pretrained(out)
    result = _result(run, out)
    result["files"].update(write_adapter_card(out, result, run.cfg.base_model, run.loop.get("home"),
                                              run.loop.get("card")))
    (out / RESULT_FILE).write_text(json.dumps(result, indent=2))
    result["files"][RESULT_FILE] = (out / RESULT_FILE).stat().st_size
    if prefix:
        from backend.storage import get_object_store

        result["uploaded"] = {"prefix": prefix,
                              "sizes": get_object_store().upload_dir(out, prefix)}
        run.sink.log("info", f"adapter uploaded once, by rank 0, to {prefix}")
        if not run.loop.get("output"):
            shutil.rmtree(out, ignore_errors=True)
    else:
        run.sink.log("info", f"adapter saved to {out}")
    getattr(run.sink, "flush_logs", lambda: None)()  # rank 0's buffered lines: before it exits
    return result


def _result(run: _Run, out: Path) -> dict[str, Any]:
    st = run.state
    vals = [v for v in st["validation_loss_history"] if v["epoch_end"]]
    final_val = vals[-1]["validation_loss"] if vals else None
    history = st["train_loss_history"]
    duration = elapsed(run)
    return {
        "final_training_loss": history[-1]["training_loss"] if history else None,
        "final_validation_loss": final_val,
        "best_validation_loss": st["best_validation_loss"], "best_epoch": st["best_epoch"],
        "perplexity": math.exp(final_val) if final_val is not None and final_val < 50 else None,
        "train_loss_history": history, "validation_loss_history": st["validation_loss_history"],
        "total_tokens_processed": st["tokens_processed"], "total_steps": st["global_step"],
        "total_epochs": run.cfg.num_epochs, "duration_seconds": duration,
        "training_seconds": time.monotonic() - run.train_started + run.elapsed_before,
        "avg_throughput": st["tokens_processed"] / duration if duration > 0 else None,
        "final_learning_rate": run.scheduler.get_last_lr()[0], "workers": run.world,
        "device": str(run.device), "dataset": run.counts,
        "precision": {**run.precision.to_dict(),
                      "attn_implementation": attention_in_use(run.inner)
                      or run.precision.attn_implementation},
        "gpu_peak_allocated_gb": run.gpu_final.get("gpu_peak_allocated_gb"),
        "gpu_workers": run.gpu_final.get("gpu_workers"), "config": run.cfg.model_dump(),
        "output": str(out),
        "files": {p.name: p.stat().st_size for p in sorted(out.iterdir()) if p.is_file()},
        **learning_summary(run, duration),
        **({"dpo": dpo.result_section(run)} if run.cfg.method == "dpo" else {}),
    }
