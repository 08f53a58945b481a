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
from typing import Any, BinaryIO, Iterable, Sequence
from urllib.parse import unquote, urlparse

from backend.errors import InvalidInput

IGNORE_INDEX = -100
GROUP_BATCHES = 50  # batches per length-sorting window (as HF LengthGroupedSampler); bigger = less
#                    padding, less randomness in batch composition

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

    def __len__(self) -> int:
        return len(self.input_ids)

    @property
    def trained_tokens(self) -> int:
        """Tokens the loss is computed on (assistant tokens kept after truncation)."""
        return sum(1 for label in self.labels[1:] if label != IGNORE_INDEX)


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

    ``turns`` are v4 turns (``role``/``content``). Rows longer than ``max_seq_length`` are cut
    (``truncated=True``). Raises InvalidInput (code ``no_assistant_tokens``) when the template marks
    no assistant token, and (code ``chat_template_not_prefix_stable``) when a template without
    ``{% generation %}`` renders earlier turns differently as the conversation grows.
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
    truncated = len(input_ids) > max_seq_length
    return Encoded(input_ids[:max_seq_length], labels[:max_seq_length], truncated)


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
    """Encode conversations (objects with ``.turns`` or plain turn lists); drop rows whose
    assistant tokens were all cut by truncation. Returns (encoded, counts) with counts
    ``conversations``, ``truncated``, ``dropped``, ``tokens``, ``trained_tokens``.
    Raises InvalidInput like :func:`encode_conversation`."""
    out: list[Encoded] = []
    counts = {"conversations": 0, "truncated": 0, "dropped": 0, "tokens": 0, "trained_tokens": 0}
    for conv in conversations:
        turns = conv.turns if hasattr(conv, "turns") else conv
        enc = encode_conversation(tokenizer, turns, max_seq_length)
        counts["conversations"] += 1
        counts["truncated"] += int(enc.truncated)
        if enc.trained_tokens == 0:
            counts["dropped"] += 1
            continue
        counts["tokens"] += len(enc)
        counts["trained_tokens"] += enc.trained_tokens
        out.append(enc)
    return out, counts


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


def load_split(source: str | os.PathLike | BinaryIO, fraction: float = 0.1, seed: int = 0
               ) -> tuple[list, list]:
    """Read a dataset (path, ``file://`` URL or binary file object) and split it into
    ``(train, validation)`` conversations with :func:`backend.datasets.formats.is_validation`.

    Raises InvalidInput for unreadable lines (see ``formats.iter_conversations``) or a bad
    fraction, FileNotFoundError when the path does not exist.
    """
    from backend.datasets.formats import is_validation, iter_conversations

    if isinstance(source, (str, os.PathLike)):
        with open(local_path(source, "dataset"), "rb") as fh:
            return load_split(fh, fraction, seed)
    train, val = [], []
    for _, conv in iter_conversations(source):
        (val if is_validation(conv.conversation_id, fraction, seed) else train).append(conv)
    return train, val


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
