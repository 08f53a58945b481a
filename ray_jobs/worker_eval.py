"""Evaluation in the per-worker loop: the mean token loss over the held-out split (all workers)
and the bookkeeping of validation losses (history, best epoch)."""
from __future__ import annotations

from backend.training.data import IGNORE_INDEX, collate, make_batches
from ray_jobs.losses import trained_loss_sum
from ray_jobs.worker_state import Run, allreduce


def evaluate(run: Run) -> float | None:
    """Mean token loss over the assistant tokens of the whole validation split (all workers)."""
    import torch

    if not run.val:
        return None
    batches = make_batches(run.val, run.cfg.batch_size, 0, 0)[run.rank::run.world]
    run.inner.eval()
    total, count = 0.0, 0
    with torch.no_grad():
        for indices in batches:
            batch = collate([run.val[i] for i in indices], run.tokenizer.pad_token_id)
            batch = {key: value.to(run.device) for key, value in batch.items()}
            total += float(trained_loss_sum(run.inner, run.inner, batch))
            count += int((batch["labels"][:, 1:] != IGNORE_INDEX).sum())
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
