"""A dataset's templated token counts: every conversation encoded as the trainer encodes it.

The trainer trains on what the base model's chat template makes of each conversation
(:func:`backend.training.data.encode_conversation`: special tokens, role headers, end-of-turn
tokens, turn-aware truncation at ``max_seq_length``). The estimate and the dataset statistics count
the same tokens: :func:`dataset_tokens` reads the dataset file once per (file, base model,
``max_seq_length``) and keeps the counts in this process (a small LRU), so the Configure page can
re-plan on every change of batch size, workers or epochs without reading the file again.
"""
from __future__ import annotations

import contextlib
import functools
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, BinaryIO

from backend.datasets.stats import histogram, percentile
from backend.training.plan import ConversationTokens

EXACT_PLAN_MAX_BYTES = 64 * 2**20  # larger files: the estimate approximates the plan
CACHE_ENTRIES = 32
_cache: OrderedDict[tuple, "DatasetTokens"] = OrderedDict()
_lock = threading.Lock()


@dataclass(frozen=True)
class DatasetTokens:
    """Per conversation in file order: its id and its templated token counts."""

    ids: tuple[str, ...]
    conversations: tuple[ConversationTokens, ...]
    tokenizer: str
    max_seq_length: int


@functools.lru_cache(maxsize=4)
def load_tokenizer(base_model: str):
    """The (fast) tokenizer of ``base_model`` resolved locally, with its chat template. Raises
    InvalidInput when the model is not on this machine."""
    from transformers import AutoTokenizer

    from backend.config import get_settings
    from backend.training.base_models import resolve_base_model

    path = resolve_base_model(base_model, get_settings().home)
    return AutoTokenizer.from_pretrained(path, local_files_only=True)


def count_stream(fileobj: BinaryIO, tokenizer: Any, max_seq_length: int, name: str = ""
                 ) -> DatasetTokens:
    """Encode every conversation of a JSONL stream with ``tokenizer``'s chat template. Raises
    InvalidInput like ``formats.iter_conversations`` and ``data.encode_conversation``."""
    from backend.datasets.formats import iter_conversations
    from backend.training.data import encode_conversation

    ids, counts = [], []
    for _, conv in iter_conversations(fileobj):
        ids.append(conv.conversation_id)
        counts.append(encode_conversation(tokenizer, conv.turns, max_seq_length).counts)
    return DatasetTokens(tuple(ids), tuple(counts), name, max_seq_length)


def dataset_tokens(storage_key: str, base_model: str, max_seq_length: int) -> DatasetTokens | None:
    """The templated counts of the dataset file at ``storage_key`` (cached per file, size, model
    and length); None when the file is larger than EXACT_PLAN_MAX_BYTES. Raises InvalidInput
    (model not here, unreadable file), NotFound (no such object)."""
    from backend.storage import get_object_store

    store = get_object_store()
    size = store.size(storage_key)
    if size > EXACT_PLAN_MAX_BYTES:
        return None
    key = (storage_key, size, base_model, max_seq_length)
    with _lock:
        if key in _cache:
            _cache.move_to_end(key)
            return _cache[key]
    tokenizer = load_tokenizer(base_model)
    with contextlib.closing(store.open(storage_key)) as fh:
        counted = count_stream(fh, tokenizer, max_seq_length, tokenizer_name(base_model, tokenizer))
    with _lock:
        _cache[key] = counted
        while len(_cache) > CACHE_ENTRIES:
            _cache.popitem(last=False)
    return counted


def tokenizer_name(base_model: str, tokenizer: Any) -> str:
    """How counts were made, for the statistics' ``tokenizer`` field."""
    return f"{base_model} ({type(tokenizer).__name__}, vocab {len(tokenizer)}) with its chat template"


def token_statistics(tokens: DatasetTokens) -> dict[str, Any]:
    """The statistics' token fields from templated counts (lengths before truncation) and what
    truncation at ``max_seq_length`` does: ``truncation`` = {max_seq_length, truncated (kept but
    shortened), left_out, trained_tokens_cut, tokens_cut}. Raises nothing."""
    convs = tokens.conversations
    lengths: dict[int, int] = {}
    for c in convs:
        lengths[c.full_tokens] = lengths.get(c.full_tokens, 0) + 1
    pct = {f"p{q}": percentile(lengths, q) for q in (10, 50, 90)}
    pct["max"] = max(lengths, default=0)
    return {
        "total_tokens": sum(c.full_tokens for c in convs),
        "assistant_tokens": sum(c.full_trained for c in convs),
        "length_percentiles": pct, "length_histogram": histogram(lengths),
        "tokenizer": tokens.tokenizer, "token_counting": "templated",
        "truncation": {"max_seq_length": tokens.max_seq_length,
                       "truncated": sum(1 for c in convs if c.truncated and not c.left_out),
                       "left_out": sum(1 for c in convs if c.left_out),
                       "trained_tokens_cut": sum(c.full_trained - c.trained for c in convs),
                       "tokens_cut": sum(c.full_tokens - c.tokens for c in convs)},
    }
