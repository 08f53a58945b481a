"""Direct Preference Optimisation (DPO), sigmoid loss: pure functions on tensors.

The policy is the LoRA model; the reference is the same model with its adapter disabled (no second
copy in memory). For a pair with chosen ``c`` and rejected ``r`` completions of one prompt::

    logratio_c = log π(c) − log π_ref(c)        logratio_r = log π(r) − log π_ref(r)
    loss       = −log σ(β · (logratio_c − logratio_r))          (mean over pairs)
    rewards/chosen = β · logratio_c             rewards/rejected = β · logratio_r

``log π(y)`` is the sum of the log-probabilities of the completion's tokens (labels not -100). The
metric names are TRL's (``rewards/chosen``, ``rewards/rejected``, ``rewards/accuracies``,
``rewards/margins``); ``tests/backend/training/test_dpo_trl.py`` checks equality with TRL's
``DPOTrainer`` on the same batch.
"""
from __future__ import annotations

from typing import Any

from backend.training.data import IGNORE_INDEX

LOSS_TYPES = ("sigmoid",)
REWARD_METRICS = ("rewards/chosen", "rewards/rejected", "rewards/accuracies", "rewards/margins")


def sequence_logps(logits, labels):
    """Per-row sum of next-token log-probabilities over positions whose label is not -100
    (float32; shape ``[batch]``)."""
    import torch

    logits = logits[:, :-1, :].float()
    targets = labels[:, 1:]
    mask = targets != IGNORE_INDEX
    safe = targets.masked_fill(~mask, 0)
    per_token = torch.log_softmax(logits, dim=-1).gather(-1, safe.unsqueeze(-1)).squeeze(-1)
    return (per_token * mask).sum(dim=1)


def dpo_loss(policy_chosen, policy_rejected, ref_chosen, ref_rejected, beta: float):
    """(per-pair losses, chosen rewards, rejected rewards) for the sigmoid DPO loss from per-pair
    sequence log-probabilities (tensors of shape ``[pairs]``). Rewards are detached."""
    import torch.nn.functional as F

    chosen_logratios = policy_chosen - ref_chosen
    rejected_logratios = policy_rejected - ref_rejected
    losses = -F.logsigmoid(beta * (chosen_logratios - rejected_logratios))
    return losses, (beta * chosen_logratios).detach(), (beta * rejected_logratios).detach()


def pair_stats(losses, chosen_rewards, rejected_rewards) -> dict[str, float]:
    """Sums over pairs (for reducing across micro-batches and workers): ``pairs``, ``loss``,
    ``chosen``, ``rejected``, ``correct``, ``margin``."""
    return {"pairs": float(losses.numel()), "loss": float(losses.detach().sum()),
            "chosen": float(chosen_rewards.sum()), "rejected": float(rejected_rewards.sum()),
            "correct": float((chosen_rewards > rejected_rewards).float().sum()),
            "margin": float((chosen_rewards - rejected_rewards).sum())}


STAT_KEYS = ("pairs", "loss", "chosen", "rejected", "correct", "margin")


def metrics_from_stats(stats: dict[str, float], prefix: str = "") -> dict[str, float | None]:
    """TRL-named means from summed :func:`pair_stats`: ``loss`` and the four ``rewards/*``
    (``prefix`` e.g. ``"eval_"`` as TRL names evaluation metrics). None values when no pair."""
    n = stats.get("pairs", 0.0)
    if not n:
        return {f"{prefix}{k}": None for k in ("loss", *REWARD_METRICS)}
    return {f"{prefix}loss": stats["loss"] / n, f"{prefix}rewards/chosen": stats["chosen"] / n,
            f"{prefix}rewards/rejected": stats["rejected"] / n,
            f"{prefix}rewards/accuracies": stats["correct"] / n,
            f"{prefix}rewards/margins": stats["margin"] / n}


def policy_and_reference_logps(model, inner, batch: dict[str, Any]):
    """(policy log-probs, reference log-probs) of each row of ``batch`` (``input_ids``,
    ``attention_mask``, ``labels``): the reference is ``inner`` (a PEFT model) with its adapter
    disabled, under no_grad; the policy keeps its graph. ``model`` may be a DDP wrapper of
    ``inner``."""
    import torch

    with torch.no_grad(), inner.disable_adapter():
        ref_logits = inner(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        ref = sequence_logps(ref_logits, batch["labels"])
    del ref_logits
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    return sequence_logps(logits, batch["labels"]), ref
