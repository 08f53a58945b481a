"""DPO inside the per-worker loop (``config.method == "dpo"``): data, steps, evaluation.

The loop (:mod:`ray_jobs.worker.loop`) calls :func:`load_data` instead of the SFT encoding and
:func:`train` instead of the SFT epochs; setup (model, LoRA, optimizer, checkpoints restore) and the
finish (adapter save, upload, result) are shared. Each pair is encoded twice with the base model's
chat template (prompt + chosen, prompt + rejected; only the answer's tokens count). A micro-batch of
B pairs is one forward pass of 2B rows for the policy and one, adapter disabled and without
gradients, for the reference (:func:`backend.training.dpo.policy_and_reference_logps`). The loss
is the mean sigmoid DPO loss over the pairs of the optimizer step across workers and micro-batches.

Metric points carry ``training_loss`` (the DPO loss) and ``validation_loss`` (the held-out pairs'
DPO loss) like SFT, plus TRL's names: ``rewards/chosen``, ``rewards/rejected``,
``rewards/accuracies``, ``rewards/margins`` (training step) and ``eval_rewards/*`` (held-out).
"""
from __future__ import annotations

import contextlib
import math
import time
from typing import Any

from backend.datasets.preference import encode_pair, load_pairs
from backend.training.data import collate, local_path, make_batches, shard_batches
from backend.training.dpo import (
    STAT_KEYS,
    dpo_loss,
    metrics_from_stats,
    pair_stats,
    policy_and_reference_logps,
)
from ray_jobs.worker.checkpoints import save_checkpoint
from ray_jobs.worker.sinks import utc_now
from ray_jobs.worker.startup import phase
from ray_jobs.worker.state import Run, allreduce


def split_pairs(pairs: list, fraction: float, seed: int) -> tuple[list, list]:
    """(train, held out): the SFT split rule on the pairs' ids
    (:func:`backend.training.plan.held_out_indices`: round(fraction × pairs), at least 1 of 2 or
    more), the same on every worker and as the Configure page counts it."""
    from backend.training.plan import held_out_indices

    held = held_out_indices([p.pair_id for p in pairs], fraction, seed)
    return ([p for i, p in enumerate(pairs) if i not in held],
            [p for i, p in enumerate(pairs) if i in held])


def _encode(run: Run, pairs: list) -> tuple[list, int]:
    out, dropped = [], 0
    for pair in pairs:
        chosen, rejected = encode_pair(run.tokenizer, pair, run.cfg.max_seq_length)
        if chosen.trained_tokens == 0 or rejected.trained_tokens == 0:
            dropped += 1  # the prompt leaves no room for an answer within max_seq_length
            continue
        out.append((chosen, rejected))
    return out, dropped


def load_data(run: Run) -> None:
    """Read, split and encode the preference pairs; plan the steps. Raises InvalidInput naming the
    first bad line."""
    cfg, source = run.cfg, run.loop["dataset"]
    if isinstance(source, str) and source.startswith("store:"):
        from backend.storage import get_object_store

        with contextlib.closing(get_object_store().open(source[len("store:"):])) as fh:
            pairs = load_pairs(fh)
    else:
        with local_path(source, "dataset").open("rb") as fh:
            pairs = load_pairs(fh)
    train_pairs, val_pairs = split_pairs(pairs, cfg.validation_fraction, cfg.validation_seed)
    run.train, dropped = _encode(run, train_pairs)
    run.val, dropped_val = _encode(run, val_pairs)
    if not run.train:
        from backend.core.errors import InvalidInput

        raise InvalidInput("no preference pair fits max_seq_length", code="empty_dataset",
                           hint="raise max_seq_length or shorten the prompts")
    batches = math.ceil(len(run.train) / cfg.batch_size)
    per_worker = math.ceil(batches / run.world)
    run.steps_per_epoch = math.ceil(per_worker / cfg.gradient_accumulation_steps)
    run.total_steps = run.steps_per_epoch * cfg.num_epochs
    tokens = sum(len(c) + len(r) for c, r in run.train)
    run.counts = {"method": "dpo", "train_pairs": len(run.train), "validation_pairs": len(run.val),
                  "dropped": dropped + dropped_val, "train_tokens": tokens,
                  "steps_per_epoch": run.steps_per_epoch, "total_steps": run.total_steps,
                  # the SFT names the job figures and the adapter card read (a pair: one "row")
                  "train_conversations": len(run.train), "validation_conversations": len(run.val),
                  "tokens_to_train": tokens * cfg.num_epochs, "left_out": dropped + dropped_val,
                  "truncated": sum(int(c.truncated or r.truncated) for c, r in run.train)}
    run.sink.log("info", f"{len(run.train)} training and {len(run.val)} validation preference "
                 f"pairs; {run.total_steps} steps on {run.world} worker(s)", **run.counts)


def _batch(run: Run, indices: list[int], rows: list) -> dict[str, Any]:
    """2B rows: the chosen sequences of the pairs, then their rejected ones."""
    encoded = [rows[i][0] for i in indices] + [rows[i][1] for i in indices]
    batch = collate(encoded, run.tokenizer.pad_token_id)
    return {key: value.to(run.device) for key, value in batch.items()}


def _pair_terms(run: Run, model, batch: dict[str, Any]):
    policy, ref = policy_and_reference_logps(model, run.inner, batch)
    (pc, pr), (rc, rr) = policy.chunk(2), ref.chunk(2)
    return dpo_loss(pc, pr, rc, rr, run.cfg.dpo_beta)


def evaluate(run: Run) -> dict[str, float | None]:
    """The held-out pairs' loss and rewards (``eval_loss``, ``eval_rewards/*``), summed over
    workers; every rank must call it."""
    import torch

    stats = dict.fromkeys(STAT_KEYS, 0.0)
    run.inner.eval()
    with torch.no_grad():
        for indices in make_batches(run.val, run.cfg.batch_size, 0, 0)[run.rank::run.world]:
            part = pair_stats(*_pair_terms(run, run.inner, _batch(run, indices, run.val)))
            stats = {k: stats[k] + part[k] for k in STAT_KEYS}
    run.inner.train()
    stats = dict(zip(STAT_KEYS, allreduce([stats[k] for k in STAT_KEYS])))
    return metrics_from_stats(stats, "eval_")


def _optimizer_step(run: Run, micro: list, step_pairs: float) -> tuple[dict, float | None, float]:
    import torch

    run.model.train()
    stats = dict.fromkeys(STAT_KEYS, 0.0)
    for k, (indices, real) in enumerate(micro):
        batch = _batch(run, indices, run.train)
        syncing = k == len(micro) - 1 or not hasattr(run.model, "no_sync")
        with contextlib.nullcontext() if syncing else run.model.no_sync():
            losses, chosen, rejected = _pair_terms(run, run.model, batch)
            weight = run.world / max(step_pairs, 1.0) if real else 0.0  # padding: DDP's sake
            (losses.sum() * weight).backward()
        if real:
            part = pair_stats(losses, chosen, rejected)
            stats = {key: stats[key] + part[key] for key in STAT_KEYS}
    params = [p for p in run.inner.parameters() if p.requires_grad]
    grad_norm = float(torch.nn.utils.clip_grad_norm_(params, run.cfg.max_grad_norm))
    lr = run.scheduler.get_last_lr()[0]
    run.optimizer.step()
    run.scheduler.step()
    run.optimizer.zero_grad(set_to_none=True)
    return stats, grad_norm if math.isfinite(grad_norm) else None, lr


def _note_eval(run: Run, epoch: int, metrics: dict, epoch_end: bool) -> None:
    st = run.state
    loss = metrics["eval_loss"]
    if loss is None:
        return
    st["validation_loss_history"].append({"epoch": epoch + 1, "step": st["global_step"],
                                          "validation_loss": loss, "epoch_end": epoch_end})
    st.setdefault("dpo_eval_history", []).append({"step": st["global_step"], **metrics})
    if st["best_validation_loss"] is None or loss < st["best_validation_loss"]:
        st["best_validation_loss"], st["best_epoch"] = loss, epoch + 1
    run.sink.log("info", f"held-out pairs at step {st['global_step']}: loss {loss:.4f}, reward "
                 f"accuracy {metrics['eval_rewards/accuracies']:.3f}, margin "
                 f"{metrics['eval_rewards/margins']:.4f}")


def train(run: Run, progress_args) -> None:
    """The DPO epochs (replaces the SFT ones); reports points and checkpoints like SFT.
    ``progress_args(run, epoch, point)`` gives the loop's progress tuple for the metric buffer."""
    cfg, st = run.cfg, run.state
    run.sink.stage("training")
    run.train_started = time.monotonic()
    if st["global_step"] == 0 and run.val:
        base = evaluate(run)  # adapter just initialised (B = 0): policy = reference
        st["dpo_eval_history"] = [{"step": 0, **base}]
        run.buffer.add({"epoch": 0, "step": 0, "training_loss": None,
                        "validation_loss": base["eval_loss"], "timestamp": utc_now(), **base})
    lengths = [len(c) + len(r) for c, r in run.train]
    for epoch in range(st["epoch"], cfg.num_epochs):
        batches = shard_batches(make_batches(lengths, cfg.batch_size, cfg.seed, epoch),
                                run.rank, run.world)
        accum = cfg.gradient_accumulation_steps
        steps = [batches[i:i + accum] for i in range(0, len(batches), accum)]
        pairs = allreduce([float(sum(len(idx) for idx, real in step if real)) for step in steps])
        first = st["step_in_epoch"] if epoch == st["epoch"] else 0
        for s in range(first, len(steps)):
            _one_step(run, epoch, steps[s], pairs[s], s == len(steps) - 1, progress_args)


def _one_step(run: Run, epoch: int, micro: list, step_pairs: float, last_in_epoch: bool,
              progress_args) -> None:
    cfg, st = run.cfg, run.state
    t0 = time.perf_counter()
    stats, grad_norm, lr = _optimizer_step(run, micro, step_pairs)
    stats = dict(zip(STAT_KEYS, allreduce([stats[k] for k in STAT_KEYS])))
    tokens = allreduce([float(sum(len(run.train[i][0]) + len(run.train[i][1])
                                  for idx, real in micro if real for i in idx))])[0]
    step_s = time.perf_counter() - t0
    st["global_step"] += 1
    st["step_in_epoch"] += 1
    if st["global_step"] == run.start_step + 1:
        phase(run.sink, "first_step", step=st["global_step"])
    st["tokens_processed"] += int(tokens)
    train_metrics = metrics_from_stats(stats)
    train_loss = train_metrics["loss"] or 0.0
    st["epoch_loss_sum"] += stats["loss"]
    st["epoch_trained_tokens"] += int(stats["pairs"])  # DPO: pairs, the loss is a mean per pair
    eval_metrics: dict = {}
    every_eval = cfg.eval_every_steps
    if last_in_epoch or (every_eval and st["global_step"] % every_eval == 0):
        if last_in_epoch and epoch == cfg.num_epochs - 1:
            run.sink.stage("validating")
        eval_metrics = evaluate(run) if run.val else {}
        if eval_metrics:
            _note_eval(run, epoch, eval_metrics, last_in_epoch)
    if last_in_epoch:
        st["train_loss_history"].append({"epoch": epoch + 1, "training_loss": st["epoch_loss_sum"]
                                         / max(st["epoch_trained_tokens"], 1)})
        st.update(epoch=epoch + 1, step_in_epoch=0, epoch_loss_sum=0.0, epoch_trained_tokens=0)
    point = {"epoch": epoch + 1, "step": st["global_step"], "training_loss": train_loss,
             "validation_loss": eval_metrics.get("eval_loss"), "learning_rate": lr,
             "gradient_norm": grad_norm, "throughput": tokens / step_s if step_s > 0 else None,
             "gpu_utilization": None, "tokens_processed": st["tokens_processed"],
             "timestamp": utc_now(), **{k: v for k, v in train_metrics.items() if k != "loss"},
             **eval_metrics, **run.gpu.gather(run.rank, run.world, allreduce)}
    run.buffer.add(point, progress_args(run, epoch, point))
    every = cfg.checkpoint_every_steps
    if st["global_step"] == run.total_steps or (st["global_step"] % every == 0 if every
                                                 else last_in_epoch):
        run.buffer.flush()
        save_checkpoint(run, train_loss, eval_metrics.get("eval_loss"))


def result_section(run: Run) -> dict[str, Any]:
    """The ``dpo`` section of the training result: β, loss type and the held-out history."""
    history = run.state.get("dpo_eval_history", [])
    return {"beta": run.cfg.dpo_beta, "loss_type": run.cfg.dpo_loss_type,
            "eval_history": history, "final_eval": history[-1] if history else None}
