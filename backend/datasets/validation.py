"""Streaming dataset validation: every problem (line, code, message, suggestion) and statistics.

Pure: the only I/O is reading the binary file handed to :func:`validate_stream` in 1 MiB blocks, so
memory stays bounded. Most lines take the typed fast path of ``backend.datasets.validation_fast``.
Issue codes: :data:`ISSUE_CODES` and ``docs/dataset-formats.md``."""
from __future__ import annotations

import heapq
import io
import os
from dataclasses import asdict, dataclass, field
from functools import partial
from itertools import chain
from operator import itemgetter
from typing import Any, BinaryIO, Iterator

import orjson

from backend.core.errors import InvalidInput
from backend.datasets.formats import (
    FORMATS,
    MAIN_KEY,
    MESSAGE_SPECS,
    Conversation,
    RoleCheck,
    check_roles,
    detect_format,
    extract,
    sniff_binary,
)
from backend.datasets.stats import (
    WHITESPACE_TOKENIZER,
    CountTokens,
    DatasetStats,
    StatsAccumulator,
    TokenBatcher,
    tokenizer_counter,
    whitespace_counter,
)
from backend.datasets.validation_fast import FLUSH, fast_loop

__all__ = ["ISSUE_CODES", "Issue", "RoleCheck", "ValidationReport", "check_roles", "sniff_binary",
           "tokenizer_counter", "validate_stream"]

MAX_LINE_BYTES = 256 * 1024 * 1024
READ_BLOCK = 1 << 20
PREVIEW_CHARS = 2000
BOM = b"\xef\xbb\xbf"

# code -> (severity, meaning, default suggestion)
ISSUE_CODES: dict[str, tuple[str, str, str]] = {
    "invalid_utf8": ("error", "The line is not valid UTF-8 text.",
                     "Save the file as UTF-8 (not Latin-1 / Windows-1252)."),
    "invalid_json": ("error", "The line is not one complete JSON value.",
                     "Each line must be one complete JSON object: check brackets, quotes and "
                     "commas, and that no conversation is split over several lines."),
    "not_object": ("error", "The line is JSON but not an object (a list, string, number...).",
                   "Write each conversation as a JSON object {...} with the keys of its format."),
    "missing_key": ("error", "A required key is absent.",
                    "Add the key; see the example of the format in docs/dataset-formats.md."),
    "unknown_key": ("error", "A key that the format does not define.",
                    "Remove or rename the key; keep extra information under `metadata`."),
    "wrong_type": ("error", "A value has the wrong JSON type.",
                   "Use strings for ids and text, a list for turns, an object for metadata."),
    "unknown_role": ("error", "A turn's role is not one the format allows.",
                     "Use system, user or assistant (ShareGPT: system, human, gpt)."),
    "empty_content": ("error", "A turn's text is empty or only whitespace.",
                      "Remove the turn or write its text."),
    "no_assistant_turn": ("error", "The conversation has no assistant turn, so nothing to train on.",
                          "Add at least one assistant reply, or remove the conversation."),
    "roles_not_alternating": ("error", "Turns do not alternate user/assistant (after an optional "
                                       "first system turn, starting with user).",
                              "Merge consecutive turns of the same role; put the system prompt "
                              "first; start with a user turn."),
    "mixed_formats": ("error", "The line is in another format than the file (its first detected "
                               "format, or the declared one).",
                      "Convert every line to one format, or split the file."),
    "unknown_format": ("error", "The object matches none of the supported formats.",
                       "Use one of: " + ", ".join(FORMATS) + " (see docs/dataset-formats.md)."),
    "duplicate_id": ("error", "The conversation_id was already used on an earlier line.",
                     "Give every conversation a unique conversation_id."),
    "too_few_conversations": ("error", "Fewer valid conversations than the minimum.",
                              "Add conversations or fix the lines with errors."),
    "empty_file": ("error", "The file holds no data (empty or only blank lines).",
                   "Upload a JSONL file with one conversation per line."),
    "binary_file": ("error", "The file is not text (NUL bytes, an archive, UTF-16...); "
                             "validation stopped there.",
                    "Upload plain UTF-8 JSONL; decompress archives first."),
    "line_too_long": ("error", f"A line is longer than {MAX_LINE_BYTES >> 20} MB; skipped.",
                      "Split the conversation or check that the file has line breaks."),
    "truncated": ("warning", "The conversation is longer than the maximum sequence length; "
                             "training will truncate it.",
                  "Shorten or split the conversation, or raise the max sequence length."),
    "missing_system_prompt": ("warning", "The conversation has no system prompt.",
                              "Add a system turn if the model should learn a persona."),
}


@dataclass(slots=True)
class Issue:
    """One problem. ``line`` is 1-based; 0 means the whole file."""

    line: int
    code: str
    severity: str
    error: str
    suggestion: str


@dataclass
class ValidationReport:
    """Result of :func:`validate_stream`; ``ok``: no errors and enough valid conversations."""

    format: str | None
    ok: bool
    error_count: int
    warning_count: int
    issues: list[Issue]
    issue_counts: dict[str, int]
    stats: DatasetStats
    preview: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict (only str/int/float/bool/None/list/dict)."""
        return asdict(self)


class IssueLog:
    """Counts every issue; keeps the ``max_stored`` errors and warnings on the lowest lines (ties:
    first added), whatever order they arrive in; :meth:`stored` gives errors before warnings."""

    def __init__(self, max_stored: int):
        self.max_stored = max_stored
        self.counts: dict[str, int] = {}
        self.error_count = self.warning_count = 0
        self._kept: dict[str, list] = {"error": [], "warning": []}  # max-heaps (-line, -seq, issue)
        self._seq = 0

    def add(self, line: int, code: str, message: str, suggestion: str | None = None) -> None:
        severity, _, default = ISSUE_CODES[code]
        self.counts[code] = self.counts.get(code, 0) + 1
        if severity == "error":
            self.error_count += 1
        else:
            self.warning_count += 1
        self._keep(severity, line, code, message, suggestion or default)

    def add_many(self, lines: list[int], code: str, message: str) -> None:
        """The same issue on many lines, in ascending line order (counted in one step)."""
        severity, _, default = ISSUE_CODES[code]
        self.counts[code] = self.counts.get(code, 0) + len(lines)
        if severity == "error":
            self.error_count += len(lines)
        else:
            self.warning_count += len(lines)
        for line in lines:
            if not self._keep(severity, line, code, message, default):
                break  # the following lines are higher still

    def _keep(self, severity: str, line: int, code: str, message: str, suggestion: str) -> bool:
        heap = self._kept[severity]
        if len(heap) >= self.max_stored and (not heap or line >= -heap[0][0]):
            return False
        self._seq += 1
        item = (-line, -self._seq, Issue(line, code, severity, message, suggestion))
        if len(heap) >= self.max_stored:
            heapq.heapreplace(heap, item)
        else:
            heapq.heappush(heap, item)
        return True

    def stored(self) -> list[Issue]:
        """The kept issues, errors first, at most ``max_stored``, sorted by line."""
        errors, warnings = (sorted(self._kept[s], reverse=True) for s in ("error", "warning"))
        kept = errors + warnings[:max(0, self.max_stored - len(errors))]
        return [issue for _, _, issue in sorted(kept, reverse=True)]


def _preview(conversation: Conversation) -> dict[str, Any]:
    """The conversation as a dict, each text cut to PREVIEW_CHARS characters."""
    out = conversation.to_dict()
    out["turns"] = [t if len(t["content"]) <= PREVIEW_CHARS else
                    {"role": t["role"], "content": t["content"][:PREVIEW_CHARS]
                     + f"… [{len(t['content']) - PREVIEW_CHARS} more characters]"}
                    for t in conversation.turns]
    return out


_FIRST, _TURNS = itemgetter(0), itemgetter(3)


class _Validation:
    """State of one validation run (see :func:`validate_stream`). Lines go through the full check
    (:meth:`one_line`) until the format is known and the preview is full, then through
    :meth:`_fast_loop` (``backend.datasets.validation_fast``), which proves common well-formed lines valid
    with a typed decoder and few C-level passes and hands anything unusual back to
    :meth:`one_line`."""

    def __init__(self, fmt: str | None, count_tokens: CountTokens | None, tokenizer: str | None,
                 max_seq_length: int, fraction: float, max_issues: int, limit: int):
        self.fmt, self.fmt_source = fmt, "declared" if fmt else ""
        self.log = IssueLog(max_issues)
        self.stats = StatsAccumulator(tokenizer if count_tokens else None, fraction)
        self.batcher = TokenBatcher(count_tokens, self._counted) if count_tokens else None
        self.max_seq_length, self.fraction, self.limit = max_seq_length, fraction, limit
        self.seen: dict[str, int] = {}
        self.preview: list[dict[str, Any]] = []
        self.accepted_ids: list[str] = []  # accepted since the last flush_accepted()
        self.accepted_info: list[tuple] = []  # (assistant turns, warn, assistant indexes, turns)
        self.warn_lines: list[int] = []  # fast loop lines without system prompt, not yet logged
        self.role_info: dict[tuple, tuple] = {}  # raw roles -> the same tuple, or () if not ok
        self.data_lines = 0  # non-blank lines seen by the full check (only used for empty_file)
        self.stopped = False
        self.readline = None

    # ----- the full check of one line ------------------------------------------------------------
    def one_line(self, line_no: int, raw: bytes) -> None:
        try:
            obj = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            self.bad_line(line_no, raw, exc)
        else:
            self.line(line_no, obj)

    def bad_line(self, line_no: int, raw: bytes, exc: Exception) -> None:
        """A line orjson could not parse: too long, binary, blank (ignored), not UTF-8 or not JSON."""
        if len(raw) >= self.limit and not raw.endswith(b"\n"):
            size = len(raw) + _skip_rest_of_line(self.readline, self.limit)
            self.data_lines += 1
            self.log.add(line_no, "line_too_long", f"the line is {size} bytes long (limit "
                                                   f"{self.limit}); skipped")
            return
        if b"\x00" in raw:
            self.stop(line_no, f"line {line_no} contains NUL bytes: the file is binary or corrupt")
            return
        if not raw.strip():
            return
        self.data_lines += 1
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError as err:
            self.log.add(line_no, "invalid_utf8",
                         f"byte {err.start + 1} of the line is not valid UTF-8 ({err.reason})")
            return
        self.log.add(line_no, "invalid_json", f"not valid JSON: {exc}")

    def line(self, line_no: int, obj: Any) -> None:
        """One parsed line: format, structure, roles, duplicate id; accept it if it has no error."""
        self.data_lines += 1
        if type(obj) is not dict:
            self.log.add(line_no, "not_object", f"the line is a JSON {type(obj).__name__}, not an "
                                                "object")
            return
        fmt = detect_format(obj)
        if fmt is None:
            self._no_format(line_no, obj)
            return
        if self.fmt is None:
            self.fmt, self.fmt_source = fmt, f"detected on line {line_no}"
        elif fmt != self.fmt:
            self.log.add(line_no, "mixed_formats", f"the line is {fmt} but the file is {self.fmt} "
                                                   f"({self.fmt_source})")
            return
        conversation, problems = extract(obj, fmt, line_no)
        cid = conversation.conversation_id
        explicit = ("conversation_id" in obj or "id" in obj) and cid != f"line-{line_no}"
        for code, message, suggestion in problems:
            self.log.add(line_no, code, message, suggestion)
        unique = self._check_duplicate(line_no, cid, explicit)
        if problems:
            return
        roles = tuple([t["role"] for t in conversation.turns])
        check = check_roles(roles)
        ok = unique and not check.has_error
        for code, message in check.problems:
            if ok or ISSUE_CODES[code][0] == "error":  # no warnings on a line with errors
                self.log.add(line_no, code, message)
        if ok:
            self._accept(line_no, conversation, check.n_assistant)

    def _no_format(self, line_no: int, obj: dict) -> None:
        if self.fmt is not None:
            key = MAIN_KEY[self.fmt]
            self.log.add(line_no, "missing_key", f"missing required key `{key}` (the file is "
                                                 f"{self.fmt}, {self.fmt_source})")
        else:
            keys = ", ".join(f"`{k}`" for k in list(obj)[:8]) or "no keys"
            self.log.add(line_no, "unknown_format", f"the object ({keys}) matches no supported "
                                                    "format")

    def _check_duplicate(self, line_no: int, cid: str, explicit: bool) -> bool:
        if not explicit:
            return True
        first = self.seen.setdefault(cid, line_no)
        if first != line_no:
            self.log.add(line_no, "duplicate_id", f"conversation_id {cid!r} was already used on "
                                                  f"line {first}")
            return False
        return True

    def _accept(self, line_no: int, conversation: Conversation, n_assistant: int) -> None:
        if len(self.preview) < 3:
            self.preview.append(_preview(conversation))
        turns = conversation.turns
        index = tuple(i for i, t in enumerate(turns) if t["role"] == "assistant")
        self.accepted_ids.append(conversation.conversation_id)
        self.accepted_info.append((n_assistant, False, index, len(turns)))
        if len(self.accepted_ids) >= FLUSH:
            self.flush_accepted()
        if self.batcher is not None:
            self.batcher.add((line_no, index), [t["content"] for t in turns])

    def flush_accepted(self) -> None:
        """Add the conversations accepted since the last flush to the statistics (in bulk)."""
        n_assistant = list(map(_FIRST, self.accepted_info))
        self.stats.add(len(n_assistant), sum(map(_TURNS, self.accepted_info)), sum(n_assistant))
        self.stats.add_split(self.accepted_ids, n_assistant)  # exact split: decided in finish
        self.accepted_ids.clear()
        self.accepted_info.clear()

    def _counted(self, key: tuple, counts: list[int]) -> None:
        if self.warn_lines:  # a line's missing_system_prompt before its truncated, as in line()
            self._log_warn_lines()
        line_no, assistant_index = key
        total = sum(counts)
        self.stats.add_tokens(total, sum(map(counts.__getitem__, assistant_index)))
        if total > self.max_seq_length:
            self.log.add(line_no, "truncated", f"{total} tokens, longer than the maximum sequence "
                                               f"length {self.max_seq_length}: will be truncated")

    def stop(self, line_no: int, reason: str) -> None:
        self.log.add(line_no, "binary_file", f"{reason}; validation stopped")
        self.stopped = True

    # ----- the fast path -------------------------------------------------------------------------
    def consume(self, lines: Iterator[bytes], line_no: int) -> int:
        """Validate the lines after ``line_no``; returns the number of the last line read."""
        for raw in lines:
            if self.fmt in MESSAGE_SPECS and len(self.preview) >= 3:
                return self._fast_loop(chain((raw,), lines), line_no)
            line_no += 1
            self.one_line(line_no, raw)
            if self.stopped:
                break
        return line_no

    def _role_info(self, roles: tuple) -> tuple:
        """(assistant turns, has a warning, assistant turn indexes, turns) of a raw role sequence of
        the file's format, or () when the full check has something to report. Cached."""
        role_map = MESSAGE_SPECS[self.fmt].role_map
        try:
            mapped = tuple([role_map[r] for r in roles])
        except KeyError:
            info: tuple = ()
        else:
            check = check_roles(mapped)
            info = () if check.has_error else (
                check.n_assistant, bool(check.problems),
                tuple(i for i, r in enumerate(mapped) if r == "assistant"), len(roles))
        if len(self.role_info) < 10_000:
            self.role_info[roles] = info
        return info

    def _fast_loop(self, lines: Iterator[bytes], line_no: int) -> int:
        return fast_loop(self, lines, line_no)

    def _log_warn_lines(self) -> None:
        self.log.add_many(self.warn_lines, "missing_system_prompt", "no system prompt")
        self.warn_lines.clear()

    def finish(self, lines: int, min_conversations: int) -> ValidationReport:
        if self.batcher is not None:
            self.batcher.flush()
        self.flush_accepted()
        stats = self.stats.finish(lines)
        if not self.stopped and self.data_lines == 0:
            self.log.add(0, "empty_file", "the file has no data lines")
        elif not self.stopped and stats.conversations < min_conversations:
            self.log.add(0, "too_few_conversations",
                         f"{stats.conversations} valid conversation(s); at least "
                         f"{min_conversations} needed")
        ok = self.log.error_count == 0 and stats.conversations >= min_conversations
        counts = {code: self.log.counts[code] for code in ISSUE_CODES if code in self.log.counts}
        return ValidationReport(format=self.fmt, ok=ok, error_count=self.log.error_count,
                                warning_count=self.log.warning_count, issues=self.log.stored(),
                                issue_counts=counts, stats=stats, preview=self.preview)


def validate_stream(fileobj: BinaryIO, *, declared_format: str | None = None,
                    count_tokens: CountTokens | None = None, max_seq_length: int = 2048,
                    min_conversations: int = 1, validation_fraction: float = 0.1,
                    max_issues_stored: int = 100, tokenizer_name: str | None = None,
                    skip_tokens: bool = False, max_line_bytes: int = MAX_LINE_BYTES
                    ) -> ValidationReport:
    """Validate a JSONL dataset read line by line from a binary file object; never stops at the
    first problem (only at binary data) and never holds more than one line of the file and one
    READ_BLOCK (1 MiB) read ahead.

    ``declared_format`` None or "auto" detects the format from the first line that has one.
    ``count_tokens`` counts the tokens of a batch of texts (see :func:`tokenizer_counter`); None
    counts whitespace-separated words; ``skip_tokens`` counts nothing (token statistics are None).
    Raises InvalidInput for an unknown declared format, a bad argument or a text-mode file object;
    whatever ``fileobj.readline`` / ``read`` / ``readinto`` or ``count_tokens`` raise propagates.
    """
    run = new_run(declared_format, count_tokens, max_seq_length, min_conversations,
                   validation_fraction, max_issues_stored, tokenizer_name, skip_tokens,
                   max_line_bytes)
    return run.finish(read_into(fileobj, run, max_line_bytes), min_conversations)


def new_run(declared_format, count_tokens, max_seq_length, min_conversations, validation_fraction,
             max_issues_stored, tokenizer_name, skip_tokens, max_line_bytes) -> _Validation:
    """The run :func:`validate_stream` starts with these arguments (also used by
    backend.datasets.validation_parallel). Raises InvalidInput like it."""
    if declared_format == "auto":
        declared_format = None
    if declared_format is not None and declared_format not in FORMATS:
        raise InvalidInput(f"unknown dataset format {declared_format!r}; supported: "
                           f"{', '.join(FORMATS)}", code="unknown_format")
    if max_seq_length < 1 or min_conversations < 0 or max_issues_stored < 0 or max_line_bytes < 2:
        raise InvalidInput("max_seq_length and max_line_bytes must be positive; "
                           "min_conversations and max_issues_stored must not be negative")
    if not 0.0 <= validation_fraction <= 1.0:
        raise InvalidInput(f"validation_fraction {validation_fraction} is not between 0 and 1")
    if skip_tokens:
        count_tokens = None
    elif count_tokens is None:
        count_tokens, tokenizer_name = whitespace_counter, WHITESPACE_TOKENIZER
    name = tokenizer_name or getattr(count_tokens, "tokenizer_name", None) or "custom counter"
    return _Validation(declared_format, count_tokens, name, max_seq_length, validation_fraction,
                       max_issues_stored, max_line_bytes)


def read_into(fileobj: BinaryIO, run: _Validation, limit: int) -> int:
    """Feed the lines of ``fileobj`` to ``run`` (BOM stripped, binary data sniffed first); returns
    the number of lines read."""
    readline = run.readline = fileobj.readline
    first = readline(limit)
    if isinstance(first, str):
        raise InvalidInput("open the dataset file in binary mode ('rb')")
    if first.startswith(BOM):
        first = first[3:]
    reason = sniff_binary(first[:8192])
    if reason:
        run.stop(1, reason)
        return 1
    if not first:
        return 0
    run.one_line(1, first)
    del first  # a huge first line must not stay in memory while the rest is read
    if run.stopped:
        return 1
    rest = io.BufferedReader(_Blocks(fileobj), buffer_size=READ_BLOCK)
    run.readline = rest.readline
    return run.consume(rest_of_lines(rest, limit), 1)


class _Blocks(io.RawIOBase):
    """The rest of a binary file object, read ``READ_BLOCK`` bytes at a time: under an
    ``io.BufferedReader`` the lines are cut from 1 MiB blocks, not from the caller's buffer (often
    4-8 KiB: a system call every few lines). ``fileno()`` is the file object's, if it has one."""

    def __init__(self, fileobj: BinaryIO):
        super().__init__()
        self._fileobj = fileobj
        if isinstance(fileobj, (io.BufferedReader, io.BytesIO)):  # no copy through a bytes object
            self.readinto = fileobj.readinto  # type: ignore[method-assign]

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        data = self._fileobj.read(len(buffer))
        if not data:
            return 0
        buffer[:len(data)] = data
        return len(data)

    def fileno(self) -> int:
        return self._fileobj.fileno()


def rest_of_lines(fileobj: BinaryIO, limit: int) -> Iterator[bytes]:
    """The remaining lines: plain (fastest) iteration when the file is smaller than ``limit`` so no
    line can be longer, else ``readline(limit)`` so a line without end never fills memory."""
    try:
        if os.fstat(fileobj.fileno()).st_size <= limit:
            return iter(fileobj)
    except (AttributeError, OSError, ValueError):  # no file descriptor (BytesIO, HTTP streams...)
        pass
    return iter(partial(fileobj.readline, limit), b"")


def _skip_rest_of_line(readline, limit: int) -> int:
    skipped = 0
    while True:
        chunk = readline(limit)
        skipped += len(chunk)
        if not chunk or chunk.endswith(b"\n"):
            return skipped
