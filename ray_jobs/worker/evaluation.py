"""Evaluation in the per-worker loop: the mean token loss over the held-out split (all workers),
the bookkeeping of validation losses (history, best epoch), the base model's loss and answers
before the first step (step 0) and the evaluation samples at each evaluation (rank 0)."""
from __future__ import annotations

import time

from backend.training.data import make_batches
from ray_jobs.worker.checkpoints import elapsed
from ray_jobs.worker.losses import eval_loss_totals
from ray_jobs.worker.sinks import utc_now
from ray_jobs.worker.state import Run, allreduce

SAMPLES_BUDGET = 0.10  # most of a run's time the evaluation samples may take (between the ends)


def evaluate(run: Run) -> float | None:
    """Mean token loss over the assistant tokens of the whole validation split (all workers)."""
    if not run.val:
        return None
    batches = make_batches(run.val, run.cfg.batch_size, 0, 0)[run.rank::run.world]
    run.inner.eval()
    total, count = eval_loss_totals(run.inner, run.val, batches, run.tokenizer.pad_token_id,
                                    run.device)
    run.inner.train()
    total, count = allreduce([total, float(count)])
    return total / count if count else None


def note_validation(run: Run, epoch: int, val_loss: float | None, epoch_end: bool) -> None:
    st = run.state
    if val_loss is None:
        return
    st["validation_loss_history"].append({"epoch": epoch + 1, "step": st["global_step"],
                                          "validation_loss": val_loss, "epoch_end": epoch_end})
    if st["best_validation_loss"] is None or val_loss < st["best_validation_loss"]:
        st["best_validation_loss"], st["best_epoch"] = val_loss, epoch + 1


# ----- the base model (step 0) and evaluation samples -------------------------------------------
def choose_sample_prompts(run: Run, val_conversations: list) -> None:
    """Fix the run's evaluation prompts from the held-out conversations (rank 0 only), rendered
    with the tokenizer's chat template: all of them up to ``loop["eval_samples_max"]`` (default
    64) are answered by the base model (step 0) and at the last step, the first
    ``loop["eval_samples"]`` (default 3; 0: no samples at all) at the evaluations between."""
    from ray_jobs.worker.samples import PROMPT_CAP, PROMPT_COUNT, choose_prompts, render

    count = int(run.loop.get("eval_samples", PROMPT_COUNT))
    cap = max(count, int(run.loop.get("eval_samples_max", PROMPT_CAP)))
    if run.rank != 0 or count <= 0:
        return
    run.prompts = render(run.tokenizer, choose_prompts(val_conversations, cap))
    run.loop["eval_samples"] = count


def measure_base(run: Run) -> None:
    """Before the first step: the base model's validation loss (adapter disabled; every worker)
    is recorded in the state and sent as the metric point of step 0, and the base model's answers
    to the evaluation prompts as the samples of step 0. Skipped when already recorded (resume)."""
    st = run.state
    if "base_validation_loss" in st:
        return
    with run.inner.disable_adapter():
        loss = evaluate(run)
    st["base_validation_loss"] = loss
    if loss is not None:
        run.buffer.add({"epoch": 0, "step": 0, "training_loss": None, "validation_loss": loss,
                        "learning_rate": None, "gradient_norm": None, "throughput": None,
                        "gpu_utilization": None, "tokens_processed": 0, "timestamp": utc_now()})
        run.sink.log("info", f"base model validation loss {loss:.4f} (step 0, before training)")
    record_samples(run, 0)


def record_samples(run: Run, step: int) -> None:
    """Rank 0: greedy answers to the evaluation prompts (the base model's at step 0), sent to the
    sink; the time spent is added to ``state["eval_samples_s"]`` and logged. An evaluation between
    the first and the last is skipped (and logged) when its samples would take the samples' share
    of the run past ``loop["eval_samples_budget"]`` (default :data:`SAMPLES_BUDGET`)."""
    from ray_jobs.worker.samples import PROMPT_COUNT, generate, sink_items, within_budget

    if run.rank != 0 or not run.prompts:
        return
    st = run.state
    spent = float(st.get("eval_samples_s", 0.0))
    last = float(st.get("eval_samples_last_s", 0.0))
    budget = run.loop.get("eval_samples_budget", SAMPLES_BUDGET)
    if not (step == 0 or step == run.total_steps
            or within_budget(spent, last, elapsed(run), budget)):
        run.sink.log("info", f"evaluation samples skipped at step {step}: they would take more "
                     f"than {budget:.0%} of the run's time so far")
        return
    ends = step == 0 or step == run.total_steps
    prompts = run.prompts if ends else \
        run.prompts[:int(run.loop.get("eval_samples", PROMPT_COUNT))]
    t0, c0 = time.perf_counter(), time.process_time()
    answers = generate(run.inner, run.tokenizer, prompts, adapter=step > 0,
                       max_prompt_tokens=run.cfg.max_seq_length)
    took = time.perf_counter() - t0
    st["eval_samples_s"], st["eval_samples_last_s"] = spent + took, took
    st["eval_samples_cpu_s"] = st.get("eval_samples_cpu_s", 0.0) + time.process_time() - c0
    run.sink.samples(step, sink_items(prompts, answers))
    run.sink.log("info", f"evaluation samples at step {step}: {len(answers)} answers in "
                 f"{took:.2f} s ({st['eval_samples_s']:.1f} s so far)",
                 eval_samples_s=round(took, 4))


def learning_summary(run: Run, duration_s: float) -> dict:
    """The result's ``base_validation_loss`` and ``eval_samples``: prompts, seconds (wall) and
    their share of the run's duration, and the same in process CPU time (the steadier clock on a
    busy machine; ``cpu_share`` only for a run that did not resume, whose CPU time is all here)."""
    st = run.state
    spent = float(st.get("eval_samples_s", 0.0))
    cpu = float(st.get("eval_samples_cpu_s", 0.0))
    run_cpu = time.process_time() - run.cpu_started
    return {"base_validation_loss": st.get("base_validation_loss"),
            "eval_samples": {"prompts": len(run.prompts), "seconds": round(spent, 4),
                             "share": round(spent / duration_s, 4) if duration_s > 0 else None,
                             "cpu_seconds": round(cpu, 4), "run_cpu_seconds": round(run_cpu, 4),
                             "cpu_share": round(cpu / run_cpu, 4)
                             if run_cpu > 0 and run.start_step == 0 else None}}
