"""Training loss of a step: next-token cross-entropy over the trained (assistant) tokens only.

:func:`trained_loss_sum` computes the logits — vocabulary-sized, the largest tensor of a step
(8 × 2048 × 128k fp32 ≈ 8.4 GB for a Llama-3 vocabulary) — only at positions whose next label
is trained, through a forward pre-hook on the output layer, so DDP and PEFT wrappers are untouched.
:func:`token_loss_sum` is the same sum from full logits (the reference; tests compare the two).
"""
from __future__ import annotations

from typing import Any

from backend.training.data import IGNORE_INDEX, collate


def token_loss_sum(logits, labels):
    """Sum of next-token cross-entropy over positions whose label is not -100 (float32)."""
    import torch.nn.functional as F

    shifted = logits[:, :-1, :].reshape(-1, logits.shape[-1]).float()
    return F.cross_entropy(shifted, labels[:, 1:].reshape(-1), ignore_index=IGNORE_INDEX,
                           reduction="sum")


_ROWS = "_brightrun_rows"  # attribute of the output layer: positions to compute logits for


def _select_rows(module, args):
    rows = getattr(module, _ROWS, None)
    return None if rows is None else (args[0][rows],)


def install_row_selection(model) -> None:
    """Let :func:`trained_loss_sum` apply the output layer only where a label is trained (a
    forward pre-hook on ``get_output_embeddings()``: DDP and PEFT wrappers are untouched)."""
    model.get_output_embeddings().register_forward_pre_hook(_select_rows)


def trained_loss_sum(model, inner, batch: dict[str, Any]):
    """:func:`token_loss_sum` of ``model``'s logits, computing the logits (vocabulary-sized, the
    largest tensor of a step) only at positions whose next label is trained: not for padding,
    system or user tokens. ``inner`` is the unwrapped PEFT model (its output layer has the hook of
    :func:`install_row_selection`; without it this falls back to every position)."""
    import torch
    import torch.nn.functional as F

    labels = batch["labels"]
    rows = torch.zeros_like(labels, dtype=torch.bool)
    rows[:, :-1] = labels[:, 1:] != IGNORE_INDEX
    head = inner.get_output_embeddings()
    setattr(head, _ROWS, rows)
    try:
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    finally:
        setattr(head, _ROWS, None)
    if logits.dim() == 3:  # the architecture did not call its output layer as a module
        return token_loss_sum(logits, labels)
    return F.cross_entropy(logits.float(), labels[:, 1:][rows[:, :-1]], reduction="sum")


def eval_loss_totals(model, examples: list, batches: list, pad_id: int, device) -> tuple[float, int]:
    """``(summed next-token loss, trained-token count)`` of ``model`` over ``batches`` (index lists
    into the encoded ``examples``), without gradients: what validation loss (every worker's share,
    then all-reduced) and an evaluation's loss (``ray_jobs.evaluate_model``) divide."""
    import torch

    total, count = 0.0, 0
    with torch.no_grad():
        for indices in batches:
            batch = collate([examples[i] for i in indices], pad_id)
            batch = {key: value.to(device) for key, value in batch.items()}
            total += float(trained_loss_sum(model, model, batch))
            count += int((batch["labels"][:, 1:] != IGNORE_INDEX).sum())
    return total, count
