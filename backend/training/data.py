"""Training data: conversations → token ids with assistant-only labels → length-grouped batches.

Formatting is the tokenizer's own chat template (``apply_chat_template``), so what we train on is
exactly what the model will see at inference. Labels are the input ids on assistant tokens — the
assistant's content and its end-of-turn token, as marked by the template's ``{% generation %}``
block — and ``-100`` (ignored by the loss) everywhere else.

Batching: length-grouped with dynamic padding (see ``docs/training.md``). Within a shuffled window
of ``batch_size * GROUP_BATCHES`` conversations we sort by length and cut batches, so each batch
holds conversations of similar length and is padded only to its own longest row. We do not pack
several conversations into one row: ``LlamaForCausalLM`` on CPU (sdpa/eager) would let packed
conversations attend to each other unless a block-diagonal mask is built, which costs more than the
little padding that length grouping leaves.
"""
from __future__ import annotations

import os
import random
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence
from urllib.parse import unquote, urlparse

from backend.core.errors import InvalidInput
from backend.training.plan import GROUP_BATCHES, ConversationTokens, TrainPlan, held_out_indices, plan_run  # noqa: F401

IGNORE_INDEX = -100
# GROUP_BATCHES (batches per length-sorting window, as HF LengthGroupedSampler; bigger = less
# padding, less randomness in batch composition) lives in backend/training/plan.py with the step count

# Used only when a base model ships no chat template at all (plain pretrained checkpoints).
FALLBACK_CHAT_TEMPLATE = (
    "{{- bos_token or '' }}"
    "{%- for message in messages %}"
    "{{- '### ' + message['role'] | capitalize + ':\\n' }}"
    "{%- if message['role'] == 'assistant' %}"
    "{%- generation %}{{- message['content'] | trim + eos_token }}{%- endgeneration %}"
    "{%- else %}{{- message['content'] | trim }}{%- endif %}"
    "{{- '\\n\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '### Assistant:\\n' }}{%- endif %}"
)
_GENERATION_TAG = re.compile(r"{%-?\s*generation\s*-?%}")


@dataclass(frozen=True)
class Encoded:
    """One tokenised conversation: ``labels`` is ``input_ids`` with non-assistant tokens at -100."""

    input_ids: list[int]
    labels: list[int]
    truncated: bool
    full_length: int = 0   # tokens before truncation (0: not recorded)
    full_trained: int = 0  # assistant tokens before truncation (0: not recorded)

    def __len__(self) -> int:
        return len(self.input_ids)

    @property
    def trained_tokens(self) -> int:
        """Tokens the loss is computed on (assistant tokens kept after truncation)."""
        return sum(1 for label in self.labels[1:] if label != IGNORE_INDEX)

    @property
    def counts(self) -> ConversationTokens:
        """This conversation's token counts for :func:`backend.training.plan.plan_run`."""
        trained = self.trained_tokens
        return ConversationTokens(tokens=len(self) if trained else 0, trained=trained,
                                  full_tokens=max(self.full_length, len(self)),
                                  full_trained=max(self.full_trained, trained))


def ensure_chat_template(tokenizer) -> str:
    """Make sure ``tokenizer`` can mark assistant tokens; returns how: ``generation`` (the template
    has ``{% generation %}``), ``prefix`` (spans found by rendering growing prefixes) or
    ``fallback`` (the model had no template; a plain ``### Role:`` template was installed).
    Raises nothing."""
    template = tokenizer.chat_template
    if isinstance(template, dict):
        template = template.get("default")
    if not template:
        tokenizer.chat_template = FALLBACK_CHAT_TEMPLATE
        return "fallback"
    return "generation" if _GENERATION_TAG.search(template) else "prefix"


def encode_conversation(tokenizer, turns: list[dict[str, str]], max_seq_length: int) -> Encoded:
    """Tokenise one conversation with the chat template; train only on assistant tokens.

    ``turns`` are v4 turns (``role``/``content``). Turn-aware truncation: a conversation longer
    than ``max_seq_length`` keeps its leading tokens up to the end of the last assistant turn that
    ends within ``max_seq_length`` (that turn's end-of-turn token included), so no assistant turn
    is ever cut inside (``truncated=True``). When not even the first assistant turn fits, the
    result is empty (``trained_tokens == 0``: the conversation is left out). Raises InvalidInput
    (code ``no_assistant_tokens``) when the template marks no assistant token, and (code
    ``chat_template_not_prefix_stable``) when a template without ``{% generation %}`` renders
    earlier turns differently as the conversation grows.
    """
    if max_seq_length < 2:
        raise InvalidInput(f"max_seq_length must be at least 2, got {max_seq_length}")
    if ensure_chat_template(tokenizer) == "prefix":
        input_ids, mask = _prefix_mask(tokenizer, turns)
    else:
        out = tokenizer.apply_chat_template(turns, tokenize=True, return_dict=True,
                                            return_assistant_tokens_mask=True)
        input_ids, mask = list(out["input_ids"]), list(out["assistant_masks"])
    if not any(mask):
        raise InvalidInput("the chat template marked no assistant token in this conversation",
                           code="no_assistant_tokens",
                           hint="every conversation needs at least one assistant turn")
    labels = [tok if m else IGNORE_INDEX for tok, m in zip(input_ids, mask)]
    full_trained = sum(1 for label in labels[1:] if label != IGNORE_INDEX)
    if len(input_ids) <= max_seq_length:
        return Encoded(input_ids, labels, False, len(input_ids), full_trained)
    cut = keep_length(mask, max_seq_length)
    return Encoded(input_ids[:cut], labels[:cut], True, len(input_ids), full_trained)


def keep_length(mask: Sequence[int], max_seq_length: int) -> int:
    """Tokens kept by turn-aware truncation: the end of the last assistant span (a run of 1s in
    ``mask``) that ends within ``max_seq_length``; 0 when none does. Raises nothing."""
    keep = 0
    for i in range(1, min(len(mask), max_seq_length) + 1):
        if mask[i - 1] and (i == len(mask) or not mask[i]):
            keep = i
    return keep


def _prefix_mask(tokenizer, turns: list[dict[str, str]]) -> tuple[list[int], list[int]]:
    """Assistant mask for templates without generation tags: an assistant turn's characters are
    what rendering ``turns[:i+1]`` adds to rendering ``turns[:i]`` with a generation prompt, less
    the whitespace the template puts after the turn's end token (ChatML's newline after
    ``<|im_end|>`` is layout the model never generates)."""
    full = tokenizer.apply_chat_template(turns, tokenize=False)
    spans = []
    for i, turn in enumerate(turns):
        if turn["role"] != "assistant":
            continue
        before = tokenizer.apply_chat_template(turns[:i], tokenize=False,
                                               add_generation_prompt=True)
        upto = tokenizer.apply_chat_template(turns[: i + 1], tokenize=False)
        if not (full.startswith(upto) and upto.startswith(before)):
            raise InvalidInput("the base model's chat template is not prefix-stable, so assistant "
                               "tokens cannot be located", code="chat_template_not_prefix_stable",
                               hint="use a chat template with {% generation %} markers")
        spans.append((len(before), len(before) + len(upto[len(before):].rstrip())))
    enc = tokenizer(full, add_special_tokens=False, return_offsets_mapping=True)
    mask = [int(any(s < end and e > start for s, e in spans) and end > start)
            for start, end in enc["offset_mapping"]]
    return list(enc["input_ids"]), mask


def encode_all(tokenizer, conversations: Iterable[Any], max_seq_length: int
               ) -> tuple[list[Encoded], dict[str, int]]:
    """Encode conversations (objects with ``.turns`` or plain turn lists); leave out rows with no
    assistant turn within ``max_seq_length``. Returns (encoded, counts) with counts
    ``conversations``, ``truncated`` (kept but shortened), ``dropped`` (left out), ``tokens``,
    ``trained_tokens``.
    Raises InvalidInput like :func:`encode_conversation`."""
    out: list[Encoded] = []
    counts = {"conversations": 0, "truncated": 0, "dropped": 0, "tokens": 0, "trained_tokens": 0}
    for conv in conversations:
        turns = conv.turns if hasattr(conv, "turns") else conv
        enc = encode_conversation(tokenizer, turns, max_seq_length)
        counts["conversations"] += 1
        counts["truncated"] += int(enc.truncated and enc.trained_tokens > 0)
        if enc.trained_tokens == 0:
            counts["dropped"] += 1
            continue
        counts["tokens"] += len(enc)
        counts["trained_tokens"] += enc.trained_tokens
        out.append(enc)
    return out, counts


def encode_and_plan(tokenizer, train_convs: Sequence[Any], val_convs: Sequence[Any], config: Any,
                    workers: int = 1) -> tuple[list[Encoded], list[Encoded], TrainPlan]:
    """Encode both splits as the trainer trains them and plan the run
    (:func:`backend.training.plan.plan_run`): returns (training rows, validation rows, plan),
    left-out rows removed. ``config`` is a TrainingConfig. Raises InvalidInput like
    :func:`encode_conversation` and :func:`~backend.training.plan.plan_run`."""
    def enc(conv: Any) -> Encoded:
        return encode_conversation(tokenizer, conv.turns if hasattr(conv, "turns") else conv,
                                   config.max_seq_length)

    train, val = [enc(c) for c in train_convs], [enc(c) for c in val_convs]
    plan = plan_run([e.counts for e in train + val],
                    frozenset(range(len(train), len(train) + len(val))),
                    batch_size=config.batch_size,
                    gradient_accumulation_steps=config.gradient_accumulation_steps,
                    num_epochs=config.num_epochs, workers=workers,
                    eval_every_steps=config.eval_every_steps,
                    checkpoint_every_steps=config.checkpoint_every_steps)
    return ([e for e in train if e.trained_tokens], [e for e in val if e.trained_tokens], plan)


def make_batches(encoded: Sequence[Encoded | int], batch_size: int, seed: int, epoch: int
                 ) -> list[list[int]]:
    """Length-grouped batches of indices into ``encoded`` for one epoch; same inputs, same batches.

    Shuffle all rows (seeded by ``seed`` and ``epoch``), sort each window of
    ``batch_size * GROUP_BATCHES`` rows by length, cut it into batches, then shuffle the batch
    order.
    Raises InvalidInput when ``batch_size`` < 1.
    """
    if batch_size < 1:
        raise InvalidInput(f"batch_size must be at least 1, got {batch_size}")
    lengths = [e if isinstance(e, int) else len(e) for e in encoded]
    rng = random.Random(seed * 1_000_003 + epoch)
    order = list(range(len(lengths)))
    rng.shuffle(order)
    window = batch_size * GROUP_BATCHES
    batches: list[list[int]] = []
    for start in range(0, len(order), window):
        chunk = sorted(order[start:start + window], key=lambda i: (-lengths[i], i))
        batches += [chunk[j:j + batch_size] for j in range(0, len(chunk), batch_size)]
    rng.shuffle(batches)
    return batches


def shard_batches(batches: list[list[int]], rank: int, world_size: int
                  ) -> list[tuple[list[int], bool]]:
    """This worker's batches as ``(indices, real)``: round-robin, padded with ``real=False``
    repeats so every worker runs the same number of steps (DDP and ``ray.train.report`` are
    collective). Padding batches must contribute no loss. Raises InvalidInput for a bad rank."""
    if not 0 <= rank < world_size:
        raise InvalidInput(f"rank {rank} is not in a world of {world_size} workers")
    if not batches:
        return []
    per_worker = -(-len(batches) // world_size)
    out = []
    for k in range(per_worker):
        i = k * world_size + rank
        out.append((batches[i], True) if i < len(batches) else (batches[i % len(batches)], False))
    return out


def padding_efficiency(encoded: Sequence[Encoded | int], batches: list[list[int]]) -> float:
    """Real tokens / tokens after padding each batch to its longest row (1.0 = no padding)."""
    lengths = [e if isinstance(e, int) else len(e) for e in encoded]
    real = sum(lengths[i] for b in batches for i in b)
    padded = sum(len(b) * max(lengths[i] for i in b) for b in batches if b)
    return real / padded if padded else 1.0


def collate(encoded_list: Sequence[Encoded], pad_id: int) -> dict[str, Any]:
    """Right-pad a batch to its longest row: ``input_ids``, ``attention_mask``, ``labels``
    (padding: ``pad_id`` / 0 / -100) as int64 tensors. Raises InvalidInput for an empty batch."""
    import torch

    if not encoded_list:
        raise InvalidInput("cannot collate an empty batch")
    width = max(len(e) for e in encoded_list)
    ids = torch.full((len(encoded_list), width), pad_id, dtype=torch.long)
    labels = torch.full((len(encoded_list), width), IGNORE_INDEX, dtype=torch.long)
    mask = torch.zeros((len(encoded_list), width), dtype=torch.long)
    for row, enc in enumerate(encoded_list):
        n = len(enc)
        ids[row, :n] = torch.tensor(enc.input_ids, dtype=torch.long)
        labels[row, :n] = torch.tensor(enc.labels, dtype=torch.long)
        mask[row, :n] = 1
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def local_path(source: str | os.PathLike, what: str = "path") -> Path:
    """A local path from a plain path or ``file://`` URL. Raises InvalidInput (code
    ``unsupported_url``) for any other URL scheme; ``what`` names the thing in the message."""
    text = os.fspath(source)
    if text.startswith("file://"):
        return Path(unquote(urlparse(text).path))
    if "://" in text:
        raise InvalidInput(f"{what} {text!r} is not a local path or file:// URL",
                           code="unsupported_url")
    return Path(text).expanduser()
