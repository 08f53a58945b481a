"""A dataset's templated token counts: every conversation encoded as the trainer encodes it.

The trainer trains on what the base model's chat template makes of each conversation
(:func:`backend.training.data.encode_conversation`: special tokens, role headers, end-of-turn
tokens, turn-aware truncation at ``max_seq_length``). The estimate and the dataset statistics count
the same tokens: :func:`dataset_tokens` reads the dataset file once per (file, base model,
``max_seq_length``) and keeps the counts in this process (a small LRU), so the Configure page can
re-plan on every change of batch size, workers or epochs without reading the file again.

The counts are also kept on disk (``$BRIGHTRUN_HOME/cache/token-counts/``, one small JSON file per
key), written by whoever counts first — usually the dataset's validation job, which counts with the
default base model — so a fresh dashboard process plans without importing ``transformers`` or
loading a tokenizer. The disk key holds everything the counts depend on: the dataset object (key
and size), the base model's resolved folder and its tokenizer files (size, mtime), the length, and
the source of the code that encodes (so a change to the encoding never reads stale counts).
"""
from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
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

    from backend.base_models.registry import resolve_base_model
    from backend.core.config import get_settings

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
    disk = disk_key(storage_key, size, base_model, max_seq_length)
    counted = _read_disk(disk)
    if counted is None:
        tokenizer = load_tokenizer(base_model)
        with contextlib.closing(store.open(storage_key)) as fh:
            counted = count_stream(fh, tokenizer, max_seq_length,
                                   tokenizer_name(base_model, tokenizer))
        _write_disk(disk, counted)
    _remember(key, counted)
    return counted


def remember_counts(storage_key: str, size: int, base_model: str, tokens: DatasetTokens) -> None:
    """Keep counts made elsewhere (the validation job) for :func:`dataset_tokens`: in this process
    and on disk. Raises nothing."""
    _remember((storage_key, size, base_model, tokens.max_seq_length), tokens)
    _write_disk(disk_key(storage_key, size, base_model, tokens.max_seq_length), tokens)


def _remember(key: tuple, tokens: DatasetTokens) -> None:
    with _lock:
        _cache[key] = tokens
        _cache.move_to_end(key)
        while len(_cache) > CACHE_ENTRIES:
            _cache.popitem(last=False)


# ----- on disk -----------------------------------------------------------------------------------
@functools.lru_cache(maxsize=1)
def _code_stamp() -> str:
    """The source of the code whose output the counts are (encoding, counting)."""
    from backend.training import data

    digest = hashlib.sha256()
    for module_file in (data.__file__, __file__):
        digest.update(Path(module_file).read_bytes())
    return digest.hexdigest()[:16]


def _counts_dir() -> Path:
    from backend.core.config import get_settings

    return get_settings().home / "cache" / "token-counts"


def disk_key(storage_key: str, size: int, base_model: str, max_seq_length: int) -> str | None:
    """The file name of these counts on disk; None when the base model is not on this machine (or
    anything else keeps its tokenizer files from being read). Imports no ``transformers``."""
    try:
        from backend.base_models.registry import resolve_base_model
        from backend.core.config import get_settings

        where = resolve_base_model(base_model, get_settings().home)
        folder = Path(where)
        files = sorted(f for f in folder.iterdir() if f.is_file() and (
            f.name.startswith("tokenizer") or f.name.startswith("chat_template")
            or f.name == "special_tokens_map.json")) if folder.is_dir() else []
        stamps = [(f.name, f.stat().st_size, f.stat().st_mtime_ns) for f in files]
        raw = json.dumps([_code_stamp(), storage_key, size, base_model, where, stamps,
                          max_seq_length])
    except Exception:  # noqa: BLE001 - no disk cache for this key; counting still works
        return None
    return hashlib.sha256(raw.encode()).hexdigest()[:32] + ".json"


def _read_disk(name: str | None) -> DatasetTokens | None:
    if not name:
        return None
    try:
        raw = json.loads((_counts_dir() / name).read_text())
        return DatasetTokens(tuple(raw["ids"]),
                             tuple(ConversationTokens(*c) for c in raw["counts"]),
                             raw["tokenizer"], int(raw["max_seq_length"]))
    except Exception:  # noqa: BLE001 - missing or unreadable: count again
        return None


def _write_disk(name: str | None, tokens: DatasetTokens) -> None:
    """Write atomically (temporary file, then rename): a reader never sees half a file."""
    if not name:
        return
    try:
        folder = _counts_dir()
        folder.mkdir(parents=True, exist_ok=True)
        body = json.dumps({"ids": list(tokens.ids), "tokenizer": tokens.tokenizer,
                           "max_seq_length": tokens.max_seq_length,
                           "counts": [[c.tokens, c.trained, c.full_tokens, c.full_trained]
                                      for c in tokens.conversations]})
        tmp = folder / f".{name}.{os.getpid()}.tmp"
        tmp.write_text(body)
        os.replace(tmp, folder / name)
    except OSError:
        pass  # a read-only or full home: the counts stay in this process only


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
