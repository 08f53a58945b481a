"""Dataset statistics and token counting (pure: no I/O).

Lengths are kept as a ``{tokens: count}`` histogram, so memory grows with the number of distinct
conversation lengths, not with the number of conversations; percentiles are exact (nearest rank).
"""
from __future__ import annotations

import math
from array import array
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Iterator

from backend.core.errors import InvalidInput
from backend.training.plan import held_out_count, split_key

CountTokens = Callable[[list[str]], list[int]]
WHITESPACE_TOKENIZER = "whitespace (approximate)"
NO_TOKENIZER = "none (token counting skipped)"
HISTOGRAM_BINS = 20
_WORD_CHUNK = 1 << 16
LONG_TEXT_CHARS = 256 * 1024  # longer texts are counted in whitespace-aligned pieces


@dataclass
class DatasetStats:
    """Statistics of the conversations that passed validation (lines with errors are not counted).

    Token fields are None when token counting was skipped; ``tokenizer`` names what counted them.
    """

    conversations: int = 0
    training_pairs: int = 0
    validation_pairs: int = 0
    total_turns: int = 0
    total_tokens: int | None = None
    assistant_tokens: int | None = None
    avg_turns_per_conversation: float = 0.0
    avg_tokens_per_turn: float | None = None
    length_percentiles: dict[str, int] | None = None
    length_histogram: list[dict[str, int]] = field(default_factory=list)
    tokenizer: str = NO_TOKENIZER
    lines: int = 0
    token_counting: str = "text"  # "templated": counted with the chat template, as trained
    truncation: dict[str, int] | None = None  # templated only: what max_seq_length cuts

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def percentile(length_counts: dict[int, int], q: float) -> int:
    """Nearest-rank ``q``-th percentile (0 < q <= 100) of a ``{value: count}`` table; 0 when empty."""
    total = sum(length_counts.values())
    if total == 0:
        return 0
    rank = max(1, math.ceil(q / 100.0 * total))
    seen = 0
    for value in sorted(length_counts):
        seen += length_counts[value]
        if seen >= rank:
            return value
    return max(length_counts)  # pragma: no cover - unreachable, rank <= total


def histogram(length_counts: dict[int, int], bins: int = HISTOGRAM_BINS) -> list[dict[str, int]]:
    """Equal-width bins from the minimum to the maximum: ``[{bin_start, bin_end, count}]``, start
    inclusive, end exclusive, integer edges (so there may be fewer than ``bins`` bins); [] when
    empty."""
    if not length_counts:
        return []
    low, high = min(length_counts), max(length_counts)
    width = max(1, math.ceil((high - low + 1) / bins))
    out = [{"bin_start": low + i * width, "bin_end": low + (i + 1) * width, "count": 0}
           for i in range(math.ceil((high - low + 1) / width))]
    for value, count in length_counts.items():
        out[(value - low) // width]["count"] += count
    return out


class StatsAccumulator:
    """Adds up accepted conversations; :meth:`finish` returns :class:`DatasetStats`."""

    def __init__(self, tokenizer: str | None, fraction: float | None = None, seed: int = 0):
        self.tokenizer = tokenizer  # None: tokens are not counted
        self.conversations = self.training_pairs = self.validation_pairs = self.turns = 0
        self.tokens = self.assistant_tokens = 0
        self.length_counts: dict[int, int] = {}
        # the exact validation split (backend.training.plan): split keys and assistant turns of
        # every conversation passed to add_split, in file order; decided in finish()
        self.fraction, self.seed = fraction, seed
        self.split_keys, self.split_pairs = bytearray(), array("q")

    def add(self, conversations: int, turns: int, assistant_turns: int) -> None:
        """Count accepted conversations (in bulk: totals of several are fine)."""
        self.conversations += conversations
        self.turns += turns
        self.training_pairs += assistant_turns

    def add_validation_pairs(self, n: int) -> None:
        self.validation_pairs += n

    def add_split(self, conversation_ids: list[str], n_assistant: list[int]) -> None:
        """Remember accepted conversations (file order) for the exact validation split."""
        for cid in conversation_ids:
            self.split_keys += split_key(cid, self.seed)
        self.split_pairs.extend(n_assistant)

    def merge_split(self, other: "StatsAccumulator") -> None:
        """Append ``other``'s split entries (a later range of the same file)."""
        self.split_keys += other.split_keys
        self.split_pairs.extend(other.split_pairs)

    def held_out(self) -> tuple[int, int]:
        """(conversations, assistant turns) the trainer holds out of what add_split saw:
        :func:`backend.training.plan.held_out_indices`'s split. (0, 0) without a fraction."""
        n = len(self.split_pairs)
        k = held_out_count(n, self.fraction) if self.fraction is not None else 0
        if k == 0:
            return 0, 0
        keys = [(bytes(self.split_keys[8 * i:8 * i + 8]), i) for i in range(n)]
        keys.sort()
        return k, sum(self.split_pairs[i] for _, i in keys[:k])

    def add_tokens(self, tokens: int, assistant_tokens: int) -> None:
        """Tokens of one accepted conversation (its length for the distribution)."""
        self.tokens += tokens
        self.assistant_tokens += assistant_tokens
        self.length_counts[tokens] = self.length_counts.get(tokens, 0) + 1

    def finish(self, lines: int) -> DatasetStats:
        if self.fraction is not None and self.split_pairs:
            self.validation_pairs = self.held_out()[1]
        stats = DatasetStats(conversations=self.conversations, training_pairs=self.training_pairs,
                             validation_pairs=self.validation_pairs, total_turns=self.turns,
                             lines=lines, tokenizer=self.tokenizer or NO_TOKENIZER)
        if self.conversations:
            stats.avg_turns_per_conversation = round(self.turns / self.conversations, 2)
        if self.tokenizer is not None:
            stats.total_tokens, stats.assistant_tokens = self.tokens, self.assistant_tokens
            stats.avg_tokens_per_turn = round(self.tokens / self.turns, 2) if self.turns else 0.0
            stats.length_percentiles = {f"p{q}": percentile(self.length_counts, q)
                                        for q in (10, 50, 90)}
            stats.length_percentiles["max"] = max(self.length_counts, default=0)
            stats.length_histogram = histogram(self.length_counts)
        return stats


# ----- token counting ----------------------------------------------------------------------------
def count_words(text: str) -> int:
    """Whitespace-separated words in ``text``, in bounded extra memory even for huge texts."""
    if len(text) <= _WORD_CHUNK:
        return len(text.split())
    count = 0
    for start in range(0, len(text), _WORD_CHUNK):
        chunk = text[start:start + _WORD_CHUNK]
        count += len(chunk.split())
        nxt = start + _WORD_CHUNK
        if nxt < len(text) and not chunk[-1].isspace() and not text[nxt].isspace():
            count -= 1  # a word straddles the chunk boundary: counted twice
    return count


def whitespace_counter(texts: list[str]) -> list[int]:
    """The default ``count_tokens``: words per text (an approximation of tokens)."""
    return [count_words(t) for t in texts]


def split_long_text(text: str, size: int = LONG_TEXT_CHARS) -> Iterator[str]:
    """Yield ``text`` in pieces of about ``size`` characters, each cut just before whitespace (so
    word-based tokenizers count the same tokens up to the boundaries)."""
    start = 0
    while len(text) - start > size:
        cut = start + size
        end = min(len(text), cut + 1024)
        while cut < end and not text[cut].isspace():
            cut += 1
        yield text[start:cut]
        start = cut
    yield text[start:]


def tokenizer_counter(tokenizer: Any) -> CountTokens:
    """Wrap a Hugging Face fast tokenizer or a ``tokenizers.Tokenizer`` as a batched ``count_tokens``
    (``encode_batch`` without special tokens, truncation or padding). The callable carries a
    ``tokenizer_name`` attribute. Raises InvalidInput for an object that cannot encode batches."""
    backend = getattr(tokenizer, "backend_tokenizer", tokenizer)
    name = getattr(tokenizer, "name_or_path", "") or type(tokenizer).__name__
    if hasattr(backend, "encode_batch"):
        if getattr(backend, "truncation", None) or getattr(backend, "padding", None):
            from tokenizers import Tokenizer  # a copy: the caller's settings stay as they are

            backend = Tokenizer.from_str(backend.to_str())
            backend.no_truncation()
            backend.no_padding()
        encode = getattr(backend, "encode_batch_fast", None) or backend.encode_batch

        def count(texts: list[str]) -> list[int]:
            return [len(enc) for enc in encode(texts, add_special_tokens=False)]
    elif callable(tokenizer):  # a slow (Python) transformers tokenizer
        def count(texts: list[str]) -> list[int]:
            ids = tokenizer(texts, add_special_tokens=False, truncation=False)["input_ids"]
            return [len(x) for x in ids]
    else:
        raise InvalidInput(f"cannot count tokens with {type(tokenizer).__name__}: expected a "
                           "tokenizers.Tokenizer or a transformers tokenizer")
    count.tokenizer_name = name  # type: ignore[attr-defined]
    return count


class TokenBatcher:
    """Collects the turn texts of conversations and counts them with ``count_tokens`` in batches.

    ``on_counted(key, per_turn_counts)`` is called for every added conversation, in order, when its
    batch is counted. A conversation with a text longer than LONG_TEXT_CHARS is counted on its own,
    in pieces, so one call never gets much more than ``batch_chars`` characters.
    """

    def __init__(self, count_tokens: CountTokens, on_counted: Callable[[Any, list[int]], None],
                 batch_texts: int = 512, batch_chars: int = 1 << 20):
        self.count_tokens, self.on_counted = count_tokens, on_counted
        self.batch_texts, self.batch_chars = batch_texts, batch_chars
        self.texts: list[str] = []
        self.pending: list[tuple[Any, int]] = []  # (key, number of turns)
        self.chars = 0

    def add(self, key: Any, texts: list[str]) -> None:
        chars = sum(map(len, texts))
        if chars > LONG_TEXT_CHARS and max(map(len, texts)) > LONG_TEXT_CHARS:
            self.flush()
            self.on_counted(key, [self._count_long(t) for t in texts])
            return
        self.texts += texts
        self.pending.append((key, len(texts)))
        self.chars += chars
        if len(self.texts) >= self.batch_texts or self.chars >= self.batch_chars:
            self.flush()

    def _count_long(self, text: str) -> int:
        total, group, size = 0, [], 0
        for piece in split_long_text(text):
            group.append(piece)
            size += len(piece)
            if size >= self.batch_chars:
                total += sum(self._count(group))
                group, size = [], 0
        return total + (sum(self._count(group)) if group else 0)

    def _count(self, texts: list[str]) -> list[int]:
        counts = self.count_tokens(texts)
        if len(counts) != len(texts):
            raise InvalidInput(f"count_tokens returned {len(counts)} counts for {len(texts)} texts")
        return counts

    def flush(self) -> None:
        """Count everything collected so far and report it."""
        if not self.pending:
            return
        counts = self._count(self.texts)
        pos = 0
        for key, n in self.pending:
            self.on_counted(key, counts[pos:pos + n])
            pos += n
        self.texts, self.pending, self.chars = [], [], 0
