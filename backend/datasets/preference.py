"""Preference (DPO) datasets: one ``prompt`` / ``chosen`` / ``rejected`` row per JSONL line.

Accepted as TRL accepts them:

- standard: ``{"prompt": "…", "chosen": "…", "rejected": "…"}``;
- conversational: ``prompt`` a list of ``{"role", "content"}`` messages (system/user/assistant,
  ending with a user turn), ``chosen`` / ``rejected`` each a list of assistant messages (or one
  string);
- implicit prompt: no ``prompt``; ``chosen`` and ``rejected`` are whole conversations whose shared
  leading messages are the prompt and whose last message is the assistant's answer.

Optional keys: ``id``, ``conversation_id``, ``metadata``. Every problem is reported with its line
number; :func:`load_pairs` raises on the first one. Pure except for reading the file object.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, BinaryIO, Iterator

import orjson

from backend.core.errors import InvalidInput

PREFERENCE = "preference"
LABEL = "Preference pairs for DPO (prompt / chosen / rejected)"
KEYS = ("prompt", "chosen", "rejected")
OPTIONAL = ("id", "conversation_id", "metadata")
_ROLES = ("system", "user", "assistant")


def is_preference(obj: Any) -> bool:
    """True when a parsed line looks like a preference row (has ``chosen`` or ``rejected``)."""
    return isinstance(obj, dict) and ("chosen" in obj or "rejected" in obj)


@dataclass
class PreferencePair:
    """One pair: the prompt as v4 turns (ending with a user turn) and the two answers."""

    line: int
    prompt: list[dict[str, str]]
    chosen: str
    rejected: str
    pair_id: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)

    def turns(self, which: str) -> list[dict[str, str]]:
        """The conversation the model is scored on: prompt + the ``chosen``/``rejected`` answer."""
        return [*self.prompt, {"role": "assistant", "content": getattr(self, which)}]

    def preview(self) -> dict[str, Any]:
        return {"line": self.line, "id": self.pair_id, "prompt": self.prompt,
                "chosen": self.chosen, "rejected": self.rejected}


def _kind(value: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean", int: "a number",
            float: "a number", type(None): "null"}.get(type(value), type(value).__name__)


def _messages(value: Any, key: str, errors: list[str]) -> list[dict[str, str]] | None:
    if not isinstance(value, list) or not value:
        errors.append(f"`{key}` must be a string or a non-empty list of messages, got "
                      f"{'an empty list' if value == [] else _kind(value)}")
        return None
    out = []
    for i, msg in enumerate(value, 1):
        if not isinstance(msg, dict) or not isinstance(msg.get("role"), str) \
                or not isinstance(msg.get("content"), str):
            errors.append(f"`{key}` message {i} must be an object with string `role` and `content`")
            return None
        if msg["role"] not in _ROLES:
            errors.append(f"`{key}` message {i} has role {msg['role']!r}; expected one of "
                          f"{', '.join(_ROLES)}")
            return None
        if not msg["content"].strip():
            errors.append(f"`{key}` message {i} is empty")
            return None
        out.append({"role": msg["role"], "content": msg["content"]})
    return out


def _answer(value: Any, key: str, errors: list[str]) -> str | None:
    """An answer: a non-empty string, or a list of assistant messages (joined)."""
    if isinstance(value, str):
        if not value.strip():
            errors.append(f"`{key}` is empty")
            return None
        return value
    msgs = _messages(value, key, errors)
    if msgs is None:
        return None
    if any(m["role"] != "assistant" for m in msgs):
        errors.append(f"`{key}` must hold only assistant messages when `prompt` is given")
        return None
    return "\n".join(m["content"] for m in msgs)


def _prompt(value: Any, errors: list[str]) -> list[dict[str, str]] | None:
    if isinstance(value, str):
        if not value.strip():
            errors.append("`prompt` is empty")
            return None
        return [{"role": "user", "content": value}]
    msgs = _messages(value, "prompt", errors)
    if msgs is not None and msgs[-1]["role"] != "user":
        errors.append("`prompt` must end with a user message")
        return None
    return msgs


def _implicit(obj: dict, errors: list[str]) -> tuple[list, str, str] | None:
    chosen = _messages(obj["chosen"], "chosen", errors)
    rejected = _messages(obj["rejected"], "rejected", errors)
    if chosen is None or rejected is None:
        return None
    if chosen[-1]["role"] != "assistant" or rejected[-1]["role"] != "assistant":
        errors.append("without `prompt`, `chosen` and `rejected` must end with an assistant message")
        return None
    if chosen[:-1] != rejected[:-1] or not chosen[:-1]:
        errors.append("without `prompt`, `chosen` and `rejected` must share the same leading "
                      "messages (the prompt) and differ only in the last one")
        return None
    return chosen[:-1], chosen[-1]["content"], rejected[-1]["content"]


def parse_pair(obj: Any, line: int) -> tuple[PreferencePair | None, list[str]]:
    """The pair of one parsed line, or None with the problems (plain messages, no line number)."""
    errors: list[str] = []
    if not isinstance(obj, dict):
        return None, [f"a line must be a JSON object, got {_kind(obj)}"]
    for key in ("chosen", "rejected"):
        if key not in obj:
            errors.append(f"missing required key `{key}`")
    for key in obj:
        if key not in KEYS and key not in OPTIONAL:
            errors.append(f"unknown key `{key}` for a preference row (allowed: "
                          f"{', '.join(KEYS + OPTIONAL)})")
    if errors:
        return None, errors
    if "prompt" in obj:
        prompt = _prompt(obj["prompt"], errors)
        chosen = _answer(obj["chosen"], "chosen", errors)
        rejected = _answer(obj["rejected"], "rejected", errors)
        parts = None if errors else (prompt, chosen, rejected)
    else:
        parts = _implicit(obj, errors)
    meta = obj.get("metadata", {})
    if not isinstance(meta, dict):
        errors.append(f"`metadata` must be an object, got {_kind(meta)}")
    if errors or parts is None:
        return None, errors
    prompt, chosen, rejected = parts
    if chosen.strip() == rejected.strip():
        return None, ["`chosen` and `rejected` are the same answer: the pair teaches nothing"]
    pair_id = obj.get("id", obj.get("conversation_id", f"line-{line}"))
    return PreferencePair(line, prompt, chosen, rejected, str(pair_id), meta), []


def iter_rows(fileobj: BinaryIO) -> Iterator[tuple[int, PreferencePair | None, list[str]]]:
    """(line number, pair or None, problems) for every non-blank line of a binary file object."""
    for line_no, raw in enumerate(fileobj, 1):
        if isinstance(raw, str):
            raise InvalidInput("open the dataset file in binary mode ('rb')")
        if not raw.strip():
            continue
        try:
            obj = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            yield line_no, None, [f"invalid JSON: {exc}"]
            continue
        pair, problems = parse_pair(obj, line_no)
        yield line_no, pair, problems


@dataclass
class PreferenceReport:
    """Result of :func:`validate_preferences`: ``errors`` are ``(line, message)``."""

    pairs: int
    errors: list[tuple[int, str]]
    preview: list[dict[str, Any]]
    tokens: dict[str, Any] | None = None

    @property
    def ok(self) -> bool:
        return not self.errors and self.pairs > 0


def validate_preferences(fileobj: BinaryIO, tokenizer: Any = None, max_seq_length: int = 2048,
                         preview_rows: int = 5) -> PreferenceReport:
    """Check every line (never stops at the first problem); with ``tokenizer`` (the base model's)
    also count tokens with its chat template (:func:`count_tokens`)."""
    pairs: list[PreferencePair] = []
    errors: list[tuple[int, str]] = []
    for line_no, pair, problems in iter_rows(fileobj):
        errors.extend((line_no, p) for p in problems)
        if pair is not None:
            pairs.append(pair)
    tokens = count_tokens(tokenizer, pairs, max_seq_length) if tokenizer is not None and pairs \
        else None
    return PreferenceReport(len(pairs), errors, [p.preview() for p in pairs[:preview_rows]], tokens)


def load_pairs(fileobj: BinaryIO) -> list[PreferencePair]:
    """Every pair of the file; raises InvalidInput (code ``invalid_preference_row``) naming the
    first bad line."""
    pairs = []
    for line_no, pair, problems in iter_rows(fileobj):
        if problems:
            raise InvalidInput(f"line {line_no}: {problems[0]}", code="invalid_preference_row")
        pairs.append(pair)
    if not pairs:
        raise InvalidInput("the preference dataset has no pairs", code="empty_dataset")
    return pairs


def encode_pair(tokenizer: Any, pair: PreferencePair, max_seq_length: int):
    """(chosen, rejected) :class:`~backend.training.data.Encoded` with the base model's chat
    template; only the answer's tokens are trained (labels of the prompt are -100)."""
    from backend.training.data import encode_conversation

    return (encode_conversation(tokenizer, pair.turns("chosen"), max_seq_length),
            encode_conversation(tokenizer, pair.turns("rejected"), max_seq_length))


def count_tokens(tokenizer: Any, pairs: list[PreferencePair], max_seq_length: int) -> dict[str, Any]:
    """Token counts with the base model's template: ``pairs``, ``tokens`` (chosen + rejected
    sequences), ``answer_tokens`` (trained), ``max_pair_tokens`` and ``truncated`` pairs."""
    total = answers = longest = truncated = 0
    for pair in pairs:
        chosen, rejected = encode_pair(tokenizer, pair, max_seq_length)
        total += len(chosen) + len(rejected)
        answers += chosen.trained_tokens + rejected.trained_tokens
        longest = max(longest, chosen.full_length + rejected.full_length)
        truncated += int(chosen.truncated or rejected.truncated)
    return {"pairs": len(pairs), "tokens": total, "answer_tokens": answers,
            "max_pair_tokens": longest, "truncated": truncated}


def to_validation_report(report: PreferenceReport, tokenizer_name: str | None = None):
    """The :class:`~backend.datasets.validation.ValidationReport` the dataset service stores for a
    preference file: one error issue (code ``invalid_preference_row``) per bad line, a pair counted
    as a conversation and a training pair, templated token counts when measured."""
    from backend.datasets.stats import DatasetStats
    from backend.datasets.validation import Issue, ValidationReport

    issues = [Issue(line, "invalid_preference_row", "error", message,
                    "Each line needs `prompt`, `chosen` and `rejected` (see docs/training.md, DPO).")
              for line, message in report.errors]
    tokens = report.tokens or {}
    stats = DatasetStats(conversations=report.pairs, training_pairs=report.pairs,
                         total_turns=report.pairs * 2, total_tokens=tokens.get("tokens"),
                         assistant_tokens=tokens.get("answer_tokens"),
                         avg_turns_per_conversation=2.0 if report.pairs else 0.0,
                         tokenizer=tokenizer_name or "none",
                         lines=report.pairs + len({line for line, _ in report.errors}),
                         token_counting="templated" if tokens else "text")
    return ValidationReport(format=PREFERENCE, ok=report.ok, error_count=len(issues),
                            warning_count=0, issues=issues[:100],
                            issue_counts={"invalid_preference_row": len(issues)} if issues else {},
                            stats=stats, preview=report.preview)


def first_row_is_preference(fileobj: BinaryIO) -> bool:
    """Whether the first non-blank line of a binary file is a preference row (reads ≤ 64 lines)."""
    for _, raw in zip(range(64), fileobj):
        if raw.strip():
            try:
                return is_preference(orjson.loads(raw))
            except orjson.JSONDecodeError:
                return False
    return False
