"""The trainer's plan of a run, as one pure function both the trainer and the estimator call.

From each conversation's templated token counts (after turn-aware truncation, see
:func:`backend.training.data.encode_conversation`) and the config, :func:`plan_run` gives what the
run will do: the exact validation split, the conversations trained on, the optimizer steps per
epoch and in all (batches as :func:`backend.training.data.make_batches` cuts them, shared round-robin
between workers as :func:`~backend.training.data.shard_batches` does, grouped by gradient
accumulation), the tokens to train, the evaluations and checkpoints. ``ray_jobs/worker/loop.py``
trains by this plan and the estimate (``backend/training/estimation.py``) is built on it, so the
estimate's steps, held-out count and tokens are the run's (docs/estimation.md).

The validation split (:func:`held_out_count`, :func:`held_out_indices`): exactly
``round(fraction × n)`` conversations (halves round up), at least 1 when n ≥ 2 and fraction > 0,
never all of them; which ones is decided by a seeded hash of each conversation id, so every process
picks the same ones.
"""
from __future__ import annotations

import hashlib
import math
from dataclasses import asdict, dataclass
from typing import Any, Sequence

from backend.core.errors import InvalidInput

GROUP_BATCHES = 50  # batches per length-sorting window; the same constant make_batches uses


# ----- the validation split ----------------------------------------------------------------------
def held_out_count(n: int, fraction: float) -> int:
    """Conversations held out of ``n`` at ``fraction``: round(fraction × n) (halves up), at least
    1 when n ≥ 2 and fraction > 0, at most n − 1 (one conversation is always trained on).
    Raises InvalidInput when ``fraction`` is not in [0, 1] or ``n`` < 0."""
    if not 0.0 <= fraction <= 1.0:
        raise InvalidInput(f"validation fraction {fraction} is not between 0 and 1")
    if n < 0:
        raise InvalidInput(f"a dataset cannot have {n} conversations")
    if n < 2 or fraction == 0.0:
        return 0
    return min(n - 1, max(1, math.floor(fraction * n + 0.5)))


def split_key(conversation_id: str, seed: int = 0) -> bytes:
    """The 8-byte key that orders conversations for the split: BLAKE2b(f"{seed}:{id}")[:8]."""
    return hashlib.blake2b(f"{seed}:{conversation_id}".encode(), digest_size=8).digest()


def held_out_indices(conversation_ids: Sequence[str], fraction: float, seed: int = 0
                     ) -> frozenset[int]:
    """Positions of the conversations held out for validation: the :func:`held_out_count`
    smallest :func:`split_key` values (ties by position). Same ids, fraction and seed → same
    split, in any process. Raises InvalidInput like :func:`held_out_count`."""
    k = held_out_count(len(conversation_ids), fraction)
    if k == 0:
        return frozenset()
    prefix = hashlib.blake2b(f"{seed}:".encode(), digest_size=8)
    keys = []
    for i, cid in enumerate(conversation_ids):
        h = prefix.copy()
        h.update(cid.encode())
        keys.append((h.digest(), i))
    keys.sort()
    return frozenset(i for _, i in keys[:k])


# ----- batches and steps -------------------------------------------------------------------------
def batches_per_epoch(n: int, batch_size: int) -> int:
    """Batches :func:`backend.training.data.make_batches` cuts from ``n`` conversations: every
    window of ``batch_size × GROUP_BATCHES`` is cut into batches of ``batch_size``.
    Raises InvalidInput when ``batch_size`` < 1."""
    if batch_size < 1:
        raise InvalidInput(f"batch_size must be at least 1, got {batch_size}")
    window = batch_size * GROUP_BATCHES
    full, rest = divmod(max(0, n), window)
    return full * GROUP_BATCHES + -(-rest // batch_size)


def steps_per_epoch(n_train: int, batch_size: int, workers: int = 1,
                    gradient_accumulation_steps: int = 1) -> int:
    """Optimizer steps per epoch: each worker runs ceil(batches / workers) batches (padded so all
    run the same), ``gradient_accumulation_steps`` of them per step (a short last group is a
    step too). Raises InvalidInput for a non-positive batch size, workers or accumulation."""
    if workers < 1 or gradient_accumulation_steps < 1:
        raise InvalidInput("workers and gradient_accumulation_steps must be at least 1")
    per_worker = -(-batches_per_epoch(n_train, batch_size) // workers)
    return -(-per_worker // gradient_accumulation_steps)


def event_steps(total_steps: int, steps_in_epoch: int, every: int | None, *,
                at_epoch_ends: bool) -> list[int]:
    """Global steps at which an event (evaluation, checkpoint) happens: every ``every`` steps, plus
    each epoch's last step when ``at_epoch_ends`` (or when ``every`` is None), plus the last step
    for checkpoints (callers add it). Raises nothing."""
    steps = set(range(every, total_steps + 1, every)) if every else set()
    if at_epoch_ends or not every:
        steps |= set(range(steps_in_epoch, total_steps + 1, steps_in_epoch or 1))
    return sorted(s for s in steps if 0 < s <= total_steps)


# ----- the plan ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class ConversationTokens:
    """One conversation as the trainer encodes it: ``tokens`` kept (templated, after turn-aware
    truncation), ``trained`` assistant tokens the loss counts, and before truncation
    ``full_tokens`` / ``full_trained``. ``tokens == 0`` means left out (no assistant turn fits)."""

    tokens: int
    trained: int
    full_tokens: int
    full_trained: int

    @property
    def truncated(self) -> bool:
        return self.tokens < self.full_tokens

    @property
    def left_out(self) -> bool:
        return self.trained == 0


@dataclass(frozen=True)
class TrainPlan:
    """What a run does (names shared by the estimate, the trainer's log and ``jobs show --json``).

    Conversation counts are after leaving out those with no assistant turn within
    ``max_seq_length`` (``left_out``, both splits); ``truncated`` counts kept-but-shortened ones;
    ``trained_tokens_cut`` the assistant tokens truncation and leaving out lose.
    """

    conversations: int
    train_conversations: int
    validation_conversations: int
    truncated: int
    left_out: int
    trained_tokens_cut: int
    steps_per_epoch: int
    total_steps: int
    epochs: int
    workers: int
    tokens_per_epoch: int
    tokens_to_train: int
    trained_tokens_to_train: int
    validation_tokens: int
    evaluations: int
    eval_tokens: int
    checkpoints: int
    tokens_cut: int = 0  # tokens (both splits) truncation and leaving out lose

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def kept_fraction(self) -> float:
        """Share of the dataset's templated tokens kept after truncation."""
        kept = self.tokens_per_epoch + self.validation_tokens
        return kept / (kept + self.tokens_cut) if kept + self.tokens_cut else 1.0


def plan_run(conversations: Sequence[ConversationTokens], held_out: frozenset[int] | set[int], *,
             batch_size: int, gradient_accumulation_steps: int, num_epochs: int, workers: int = 1,
             eval_every_steps: int | None = None, checkpoint_every_steps: int | None = None
             ) -> TrainPlan:
    """The run's plan for ``conversations`` (in file order) with the positions in ``held_out``
    kept for validation (see :func:`held_out_indices`). Raises InvalidInput (code
    ``empty_dataset``) when no training conversation is left, or for bad batch settings."""
    train = [c for i, c in enumerate(conversations) if i not in held_out and not c.left_out]
    val = [c for i, c in enumerate(conversations) if i in held_out and not c.left_out]
    if not train:
        raise InvalidInput("the training split has no usable conversation", code="empty_dataset",
                           hint="add conversations, lower validation_fraction or raise "
                                "max_seq_length")
    spe = steps_per_epoch(len(train), batch_size, workers, gradient_accumulation_steps)
    total = spe * num_epochs
    per_epoch = sum(c.tokens for c in train)
    val_tokens = sum(c.tokens for c in val)
    evaluations = len(event_steps(total, spe, eval_every_steps, at_epoch_ends=True)) if val else 0
    ckpt = set(event_steps(total, spe, checkpoint_every_steps, at_epoch_ends=False)) | {total}
    return TrainPlan(
        conversations=len(conversations), train_conversations=len(train),
        validation_conversations=len(val),
        truncated=sum(1 for c in conversations if c.truncated and not c.left_out),
        left_out=sum(1 for c in conversations if c.left_out),
        trained_tokens_cut=sum(c.full_trained - c.trained for c in conversations),
        steps_per_epoch=spe, total_steps=total, epochs=num_epochs, workers=workers,
        tokens_per_epoch=per_epoch, tokens_to_train=per_epoch * num_epochs,
        trained_tokens_to_train=sum(c.trained for c in train) * num_epochs,
        validation_tokens=val_tokens, evaluations=evaluations,
        eval_tokens=val_tokens * evaluations, checkpoints=len(ckpt),
        tokens_cut=sum(c.full_tokens - c.tokens for c in conversations))


def plan_for_config(conversations: Sequence[ConversationTokens], conversation_ids: Sequence[str],
                    config: Any, workers: int = 1, validation_seed: int = 0) -> TrainPlan:
    """:func:`plan_run` with the split and settings of a TrainingConfig-like ``config``.
    Raises InvalidInput like :func:`plan_run`, or when the lists differ in length."""
    if len(conversations) != len(conversation_ids):
        raise InvalidInput(f"{len(conversations)} token counts for {len(conversation_ids)} ids")
    return plan_run(conversations,
                    held_out_indices(conversation_ids, config.validation_fraction,
                                     validation_seed),
                    batch_size=config.batch_size,
                    gradient_accumulation_steps=config.gradient_accumulation_steps,
                    num_epochs=config.num_epochs, workers=workers,
                    eval_every_steps=config.eval_every_steps,
                    checkpoint_every_steps=config.checkpoint_every_steps)


def approximate_plan(conversations: int, total_tokens: int, assistant_tokens: int, kept: float,
                     config: Any, workers: int = 1) -> TrainPlan:
    """The plan from dataset totals alone, when each conversation's tokens are not at hand: the
    exact split count and step rule, token totals scaled by the share trained on and by ``kept``
    (the share truncation keeps). Raises InvalidInput like :func:`steps_per_epoch`."""
    n = max(1, conversations)
    held = held_out_count(conversations, config.validation_fraction)
    train = max(1, conversations - held)
    spe = steps_per_epoch(train, config.batch_size, workers, config.gradient_accumulation_steps)
    total = spe * config.num_epochs
    per_epoch = round(total_tokens * train / n * kept)
    val_tokens = round(total_tokens * held / n * kept)
    evaluations = len(event_steps(total, spe, config.eval_every_steps, at_epoch_ends=True)) \
        if held else 0
    ckpt = set(event_steps(total, spe, config.checkpoint_every_steps, at_epoch_ends=False))
    return TrainPlan(
        conversations=conversations, train_conversations=train, validation_conversations=held,
        truncated=0, left_out=0, trained_tokens_cut=0, steps_per_epoch=spe, total_steps=total,
        epochs=config.num_epochs, workers=workers, tokens_per_epoch=per_epoch,
        tokens_to_train=per_epoch * config.num_epochs,
        trained_tokens_to_train=round(assistant_tokens * train / n * kept) * config.num_epochs,
        validation_tokens=val_tokens, evaluations=evaluations,
        eval_tokens=val_tokens * evaluations, checkpoints=len(ckpt | {total}),
        tokens_cut=round(total_tokens * (1 - kept)))
