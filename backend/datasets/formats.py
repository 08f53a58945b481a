"""Dataset formats: detection, structural checks and normalisation to v4 turns (pure).

Every supported JSONL format holds one conversation per line and is normalised to a
:class:`Conversation` with ``turns`` as ``[{"role": "system"|"user"|"assistant", "content": str}]``.
See ``docs/dataset-formats.md`` for examples of each format and how it maps to turns.

Nothing here does I/O except reading the file object handed to :func:`iter_conversations`.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, BinaryIO, Iterator, NamedTuple

import orjson

from backend.core.errors import InvalidInput
from backend.training.data import local_path
from backend.training.plan import held_out_indices

V4 = "brightrun_lora_v4"
V3 = "brightrun_lora_v3"
OPENAI = "openai_chat"
SHAREGPT = "sharegpt"
ALPACA = "alpaca"

FORMATS: tuple[str, ...] = (V4, V3, OPENAI, SHAREGPT, ALPACA)
FORMAT_LABELS: dict[str, str] = {
    V4: "BrightRun LoRA v4 (conversation_id + turns)",
    V3: "BrightRun LoRA v3, legacy (conversation_id + training_pairs)",
    OPENAI: "OpenAI chat (messages with role/content)",
    SHAREGPT: "ShareGPT (conversations with from/value)",
    ALPACA: "Alpaca (instruction / input / output)",
}
# The key whose presence identifies a format, in detection order.
MAIN_KEY: dict[str, str] = {V4: "turns", V3: "training_pairs", OPENAI: "messages",
                            SHAREGPT: "conversations", ALPACA: "instruction"}
REQUIRED_KEYS: dict[str, tuple[str, ...]] = {
    V4: ("conversation_id", "turns"), V3: ("conversation_id", "training_pairs"),
    OPENAI: ("messages",), SHAREGPT: ("conversations",), ALPACA: ("instruction", "output"),
}
OPTIONAL_KEYS: dict[str, tuple[str, ...]] = {
    V4: ("metadata",), V3: ("system_prompt", "metadata"),
    OPENAI: ("conversation_id", "id", "metadata"),
    SHAREGPT: ("conversation_id", "id", "system", "metadata"),
    ALPACA: ("input", "system", "conversation_id", "id", "metadata"),
}
ROLES = ("system", "user", "assistant")


@dataclass(frozen=True)
class MessageSpec:
    """How one message of a list-of-messages format is spelled."""

    list_key: str
    role_key: str
    content_key: str
    optional_keys: tuple[str, ...]
    role_map: dict[str, str]


MESSAGE_SPECS: dict[str, MessageSpec] = {
    V4: MessageSpec("turns", "role", "content", (), {r: r for r in ROLES}),
    OPENAI: MessageSpec("messages", "role", "content", ("name", "weight"),
                        {"system": "system", "developer": "system", "user": "user",
                         "assistant": "assistant"}),
    SHAREGPT: MessageSpec("conversations", "from", "value", ("weight",),
                          {"system": "system", "human": "user", "user": "user", "gpt": "assistant",
                           "assistant": "assistant", "model": "assistant"}),
}

Problem = tuple[str, str, str | None]  # (code, message, suggestion or None for the code's default)


@dataclass
class Conversation:
    """One conversation normalised to v4 turns."""

    conversation_id: str
    turns: list[dict[str, str]]
    metadata: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"conversation_id": self.conversation_id, "turns": self.turns,
                "metadata": self.metadata}


def detect_format(obj: dict) -> str | None:
    """The format id of one parsed line (by its identifying key), or None when no format matches."""
    for fmt, key in MAIN_KEY.items():
        if key in obj:
            return fmt
    return None


# ----- rules on roles, binary sniffing -------------------------------------------------------
class RoleCheck(NamedTuple):
    problems: list[tuple[str, str]]  # (code, message), errors and warnings
    n_assistant: int
    has_error: bool


_ROLE_CACHE: dict[tuple[str, ...], RoleCheck] = {}


def check_roles(roles: tuple[str, ...]) -> RoleCheck:
    """Rules on a normalised role sequence: an optional system turn first, then user/assistant
    alternating starting with user, at least one assistant turn (errors); no system prompt is a
    warning. Pure and cached per role sequence."""
    hit = _ROLE_CACHE.get(roles)
    if hit is not None:
        return hit
    problems: list[tuple[str, str]] = []
    start = 1 if roles and roles[0] == "system" else 0
    n_assistant = roles.count("assistant")
    if n_assistant == 0:
        problems.append(("no_assistant_turn", "the conversation has no assistant turn"))
    for i, role in enumerate(roles[start:]):
        expected = "user" if i % 2 == 0 else "assistant"
        if role != expected:
            problems.append(("roles_not_alternating",
                             f"turn {start + i + 1} is {role} where {expected} was expected "
                             "(optional system first, then user/assistant alternating)"))
            break
    if start == 0:
        problems.append(("missing_system_prompt", "no system prompt"))
    result = RoleCheck(problems, n_assistant,
                       any(code != "missing_system_prompt" for code, _ in problems))
    if len(_ROLE_CACHE) < 10_000:
        _ROLE_CACHE[roles] = result
    return result


_MAGIC = ((b"\x1f\x8b", "a gzip archive: decompress it first"),
          (b"PK\x03\x04", "a ZIP archive: extract the .jsonl first"),
          (b"PAR1", "a Parquet file: export it as JSONL"),
          (b"SQLite format 3\x00", "an SQLite database"),
          (b"%PDF", "a PDF document"),
          (b"\xff\xfe", "UTF-16 text: save it as UTF-8"),
          (b"\xfe\xff", "UTF-16 text: save it as UTF-8"))


def sniff_binary(head: bytes) -> str | None:
    """Why the first bytes of a file show it is not UTF-8 text, or None when they look like text."""
    for magic, what in _MAGIC:
        if head.startswith(magic):
            return f"the file is {what}"
    if b"\x00" in head:
        return "the file contains NUL bytes: it is binary, not text"
    text = head.decode("utf-8", errors="replace")
    odd = text.count("\ufffd") + sum(1 for ch in text if ch < " " and ch not in "\t\r\n\f")
    if len(text) >= 16 and odd > 0.1 * len(text):
        return f"the file is not text ({odd} of the first {len(text)} characters are binary)"
    return None


# ----- structural checks -------------------------------------------------------------------------
def _type_name(value: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean", int: "a number",
            float: "a number", type(None): "null"}.get(type(value), type(value).__name__)


def check_keys(obj: dict, fmt: str, problems: list[Problem]) -> None:
    """Append missing_key / unknown_key / wrong_type(metadata) problems for the top-level keys."""
    for key in REQUIRED_KEYS[fmt]:
        if key not in obj:
            problems.append(("missing_key", f"missing required key `{key}`",
                             f"Add `{key}` to every line of a {fmt} file."))
    allowed = set(REQUIRED_KEYS[fmt]) | set(OPTIONAL_KEYS[fmt])
    for key in obj:
        if key not in allowed:
            problems.append(("unknown_key", f"unknown key `{key}` for {fmt}",
                             f"Allowed keys: {', '.join(sorted(allowed))}. Remove or rename it."))
    meta = obj.get("metadata")
    if meta is not None and type(meta) is not dict:
        problems.append(("wrong_type", f"`metadata` must be an object, got {_type_name(meta)}", None))


def _conversation_id(obj: dict, fmt: str, line_no: int, problems: list[Problem]) -> str:
    """The id of the conversation: required ``conversation_id`` for v3/v4, optional elsewhere."""
    key = "conversation_id" if "conversation_id" in obj or fmt in (V3, V4) else "id"
    if key not in obj:
        return f"line-{line_no}"  # missing required ids are reported by check_keys
    value = obj[key]
    if type(value) is int and fmt not in (V3, V4):
        return str(value)
    if type(value) is not str or not value.strip():
        problems.append(("wrong_type", f"`{key}` must be a non-empty string, got "
                         f"{_type_name(value) if type(value) is not str else 'an empty string'}",
                         None))
        return f"line-{line_no}"
    return value


def _text(value: Any, where: str, problems: list[Problem], *, optional: bool = False) -> str | None:
    """``value`` if it is a non-empty string; otherwise records wrong_type / empty_content."""
    if type(value) is not str:
        problems.append(("wrong_type", f"{where} must be a string, got {_type_name(value)}", None))
        return None
    if not value or value.isspace():
        if optional:
            return None
        problems.append(("empty_content", f"{where} is empty", None))
        return None
    return value


def turn_where(list_key: str, number: int, noun: str = "turn") -> str:
    """Where a message sits, as every validation message says it: counted from 1 like the role
    check's "turn 3", with the JSON index (from 0) beside it: "turn 2 (`turns[1]`)"."""
    return f"{noun} {number} (`{list_key}[{number - 1}]`)"


def _messages(value: Any, spec: MessageSpec, problems: list[Problem]) -> list[tuple[str, str]]:
    """(role, content) of a list of message objects, recording every structural problem."""
    if type(value) is not list:
        problems.append(("wrong_type", f"`{spec.list_key}` must be a list, got {_type_name(value)}",
                         None))
        return []
    allowed = (spec.role_key, spec.content_key) + spec.optional_keys
    out: list[tuple[str, str]] = []
    for i, msg in enumerate(value, 1):
        where = turn_where(spec.list_key, i)
        if type(msg) is not dict:
            problems.append(("wrong_type", f"{where} must be an object, got {_type_name(msg)}", None))
            continue
        bad = len(problems)
        for key in (spec.role_key, spec.content_key):
            if key not in msg:
                problems.append(("missing_key", f"{where} has no `{key}`", None))
        for key in msg:
            if key not in allowed:
                problems.append(("unknown_key", f"{where} has unknown key `{key}`",
                                 f"Allowed keys in a turn: {', '.join(allowed)}."))
        role = msg.get(spec.role_key)
        if spec.role_key in msg and (type(role) is not str or role not in spec.role_map):
            problems.append(("unknown_role", f"{where} has {spec.role_key} {role!r}; expected one "
                             f"of {', '.join(spec.role_map)}", None))
        content = None
        if spec.content_key in msg:
            content = _text(msg[spec.content_key], f"{where}.{spec.content_key}", problems)
        if len(problems) == bad:
            out.append((spec.role_map[role], content))
    return out


def _v3_turns(obj: dict, problems: list[Problem]) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    if obj.get("system_prompt") is not None:
        system = _text(obj["system_prompt"], "`system_prompt`", problems, optional=True)
        if system:
            out.append(("system", system))
    pairs = obj.get("training_pairs")
    if "training_pairs" not in obj:
        return out
    if type(pairs) is not list:
        problems.append(("wrong_type", f"`training_pairs` must be a list, got {_type_name(pairs)}",
                         None))
        return out
    for i, pair in enumerate(pairs, 1):
        where = turn_where("training_pairs", i, "pair")
        if type(pair) is not dict:
            problems.append(("wrong_type", f"{where} must be an object, got {_type_name(pair)}", None))
            continue
        for key in pair:
            if key not in ("input", "output"):
                problems.append(("unknown_key", f"{where} has unknown key `{key}`",
                                 "A training pair has only `input` and `output`."))
        texts = []
        for key in ("input", "output"):
            if key not in pair:
                problems.append(("missing_key", f"{where} has no `{key}`", None))
            else:
                texts.append(_text(pair[key], f"{where}.{key}", problems))
        if len(texts) == 2 and None not in texts:
            out += [("user", texts[0]), ("assistant", texts[1])]
    return out


def _alpaca_turns(obj: dict, problems: list[Problem]) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    if obj.get("system") is not None:
        system = _text(obj["system"], "`system`", problems, optional=True)
        if system:
            out.append(("system", system))
    instruction = _text(obj["instruction"], "`instruction`", problems) if "instruction" in obj \
        else None
    extra = _text(obj["input"], "`input`", problems, optional=True) if "input" in obj else None
    output = _text(obj["output"], "`output`", problems) if "output" in obj else None
    if instruction:
        out.append(("user", f"{instruction}\n\n{extra}" if extra else instruction))
    if output:
        out.append(("assistant", output))
    return out


def extract(obj: dict, fmt: str, line_no: int) -> tuple[Conversation, list[Problem]]:
    """Structural check and normalisation of one parsed line known to be in format ``fmt``.

    Returns the conversation (turns that passed the checks) and every problem found as
    ``(code, message, suggestion-or-None)``; the conversation is only meaningful without problems.
    Raises KeyError for an unknown ``fmt``.
    """
    problems: list[Problem] = []
    check_keys(obj, fmt, problems)
    cid = _conversation_id(obj, fmt, line_no, problems)
    if fmt in MESSAGE_SPECS:
        spec = MESSAGE_SPECS[fmt]
        turns = _messages(obj[spec.list_key], spec, problems) if spec.list_key in obj else []
        system = obj.get("system") if fmt == SHAREGPT else None
        if system is not None and _text(system, "`system`", problems, optional=True):
            turns.insert(0, ("system", system))
    elif fmt == V3:
        turns = _v3_turns(obj, problems)
    elif fmt == ALPACA:
        turns = _alpaca_turns(obj, problems)
    else:
        raise KeyError(fmt)
    meta = obj.get("metadata")
    return (Conversation(cid, [{"role": r, "content": c} for r, c in turns],
                         meta if type(meta) is dict else {}), problems)


def normalise(obj: dict, fmt: str, line_no: int) -> Conversation:
    """Normalise one parsed line in format ``fmt`` to a v4 :class:`Conversation`.

    v3 becomes system (``system_prompt``, if any) + user/assistant pairs; Alpaca becomes
    system? + user (instruction, then input after a blank line) + assistant (output); formats without
    an id get ``line-{line_no}``. Raises InvalidInput (naming the line) when the line is not a
    well-formed conversation of that format or ``fmt`` is unknown.
    """
    if fmt not in MAIN_KEY:
        raise InvalidInput(f"unknown dataset format {fmt!r}; supported: {', '.join(FORMATS)}",
                           code="unknown_format")
    if type(obj) is not dict:
        raise InvalidInput(f"line {line_no}: not a JSON object", code="not_object")
    conversation, problems = extract(obj, fmt, line_no)
    if problems:
        code, message, _ = problems[0]
        raise InvalidInput(f"line {line_no}: {message}", code=code,
                           hint="validate the dataset first")
    return conversation


def iter_conversations(fileobj: BinaryIO, fmt: str | None = None
                       ) -> Iterator[tuple[int, Conversation]]:
    """Stream ``(line number, Conversation)`` from a validated JSONL file opened in binary mode.

    One line in memory at a time; a UTF-8 BOM, CRLF line ends and blank lines are accepted. ``fmt``
    None detects each line's format. Raises InvalidInput naming the line for a line that is not JSON,
    not an object, of no known format or malformed (validate the file first).
    """
    line_no = 0
    for raw in fileobj:
        line_no += 1
        if isinstance(raw, str):
            raise InvalidInput("open the dataset file in binary mode ('rb')")
        if line_no == 1 and raw.startswith(b"\xef\xbb\xbf"):
            raw = raw[3:]
        if not raw.strip():
            continue
        try:
            obj = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise InvalidInput(f"line {line_no}: not valid JSON ({exc})", code="invalid_json") \
                from None
        if type(obj) is not dict:
            raise InvalidInput(f"line {line_no}: not a JSON object", code="not_object")
        line_fmt = fmt or detect_format(obj)
        if line_fmt is None:
            raise InvalidInput(f"line {line_no}: no known dataset format", code="unknown_format")
        yield line_no, normalise(obj, line_fmt, line_no)


def load_split(source: str | os.PathLike | BinaryIO, fraction: float = 0.1, seed: int = 0
               ) -> tuple[list, list]:
    """Read a dataset (path, ``file://`` URL or binary file object) and split it into
    ``(train, validation)`` conversations, file order kept: exactly the conversations
    :func:`backend.training.plan.held_out_indices` holds out (round(fraction × n), at least 1
    when n ≥ 2).

    Raises InvalidInput for unreadable lines (see :func:`iter_conversations`) or a bad
    fraction, FileNotFoundError when the path does not exist.
    """
    if isinstance(source, (str, os.PathLike)):
        with open(local_path(source, "dataset"), "rb") as fh:
            return load_split(fh, fraction, seed)
    convs = [conv for _, conv in iter_conversations(source)]
    held = held_out_indices([c.conversation_id for c in convs], fraction, seed)
    return ([c for i, c in enumerate(convs) if i not in held],
            [c for i, c in enumerate(convs) if i in held])
