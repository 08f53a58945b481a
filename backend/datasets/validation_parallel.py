"""Multi-process validation of a large local JSONL file: the same report as ``validate_stream``.

:func:`validate_stream` runs in one process, at 0.8-0.95x the speed of a bare ``orjson.loads`` loop
over the file (bench/RESULTS.md section 5). :func:`validate_path` spreads a local file over several
processes and merges their results into a report *identical* to ``validate_stream``'s on the same
file (counts, issue codes, the stored issues and their order, messages, statistics, preview). How:

1. **head** — this process reads the first lines as ``validate_stream`` does until the file's format
   is known and three conversations were accepted (the preview is full). From there on
   ``validate_stream`` is in its steady state, which a later range can start in. A file where that
   does not happen within :data:`HEAD_BYTES` (an empty, binary or mostly broken file) is validated
   by ``validate_stream`` here, as are small files.
2. **split** — the file is cut at line ends into byte ranges; this process counts the newlines
   before each range (while the worker processes start) so every line keeps its number.
3. **validate** — each range runs through the same ``_Validation`` as ``validate_stream``: the first
   range in this process, from the start of the file (BOM, binary sniffing, preview), the others in
   worker processes (see :func:`mp_context`), starting with the file's format and a full preview.
4. **duplicate ids across ranges** — each range returns its ``conversation_id -> first line`` map; a
   range using an id that an earlier range used first is validated again with those ids known
   beforehand, which gives exactly ``validate_stream``'s messages and acceptance. Such files are
   rare (and invalid); they cost up to one more pass over the ranges concerned.
5. **merge** — counts and statistics are summed (length tables merged), the stored issues are the
   lowest lines as in ``IssueLog``, the preview is the first range's; a range that met binary data
   ends the file there, as ``validate_stream`` stops there.

The calling program's main module must be importable without side effects (the usual
``if __name__ == "__main__":`` guard), as for any ``spawn`` multiprocessing.
"""
from __future__ import annotations

import functools
import io
import multiprocessing
import os
import pickle
import sys
import threading
from concurrent.futures import Executor, ProcessPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any, BinaryIO
from urllib.parse import unquote, urlparse

from backend.core.errors import InvalidInput
from backend.datasets.formats import sniff_binary
from backend.datasets.stats import CountTokens, StatsAccumulator, tokenizer_counter
from backend.datasets.validation import (
    BOM,
    MAX_LINE_BYTES,
    READ_BLOCK,
    Issue,
    IssueLog,
    ValidationReport,
    new_run,
    read_into,
    rest_of_lines,
    validate_stream,
)

__all__ = ["HEAD_BYTES", "MIN_BYTES_PER_WORKER", "count_newlines", "default_workers",
           "load_counter", "mp_context", "plan_ranges", "validate_path"]

MIN_BYTES_PER_WORKER = 32 * 1024 * 1024
HEAD_BYTES = 4 * 1024 * 1024  # the head must reach the steady state within this many bytes
_COUNT_BUFFER = 1 << 22
_READ_BUFFER = 1 << 16


def default_workers() -> int:
    """Processes used when ``workers`` is None: the CPU count, at most 4."""
    return min(os.cpu_count() or 1, 4)


@dataclass
class _Head:
    """Where validate_stream reaches its steady state: the file's format, the text saying where it
    comes from ("declared" / "detected on line N") and the byte offset after the head."""

    fmt: str
    fmt_source: str
    end: int


@dataclass
class _Task:
    """One byte range for a worker; ``seen`` holds ids an earlier range used first."""

    path: str
    start: int
    end: int
    first_line: int
    head: _Head
    options: dict[str, Any]
    tokenizer_path: str | None
    seen: dict[str, int] = field(default_factory=dict)


@dataclass
class _RangeResult:
    """What one range's validation hands back (everything the merge needs, pickled)."""

    lines: int  # number of the last line read
    stopped: bool
    data_lines: int
    fmt: str | None
    fmt_source: str
    counts: dict[str, int]
    error_count: int
    warning_count: int
    issues: list[Issue]
    stats: StatsAccumulator
    seen: dict[str, int]
    preview: list[dict[str, Any]]


def validate_path(path: str | os.PathLike, *, workers: int | None = None,
                  min_bytes_per_worker: int = MIN_BYTES_PER_WORKER,
                  tokenizer_path: str | os.PathLike | None = None, executor: Executor | None = None,
                  declared_format: str | None = None, count_tokens: CountTokens | None = None,
                  max_seq_length: int = 2048, min_conversations: int = 1,
                  validation_fraction: float = 0.1, max_issues_stored: int = 100,
                  tokenizer_name: str | None = None, skip_tokens: bool = False,
                  max_line_bytes: int = MAX_LINE_BYTES) -> ValidationReport:
    """Validate the local JSONL file at ``path`` (a path or a ``file://`` URL) with up to
    ``workers`` processes, this one included (default :func:`default_workers`); the report is
    identical to ``validate_stream``'s on the same file, whose keyword arguments this takes.

    One range per ``min_bytes_per_worker`` bytes at most: a file too small for two ranges, or
    ``workers`` 1, is validated by ``validate_stream`` in this process. ``count_tokens`` must be
    picklable (a module-level function); to count with a tokenizer give ``tokenizer_path`` instead:
    a local Hugging Face tokenizer folder (``AutoTokenizer``, local files only) or a
    ``tokenizer.json`` file, loaded once in each process. ``executor`` (e.g. a long-lived
    ``ProcessPoolExecutor``) runs the ranges after the first instead of a pool of ``workers - 1``
    processes started and stopped here.

    Raises InvalidInput for the arguments ``validate_stream`` refuses, ``workers`` or
    ``min_bytes_per_worker`` below 1, a ``count_tokens`` that cannot be pickled, both
    ``count_tokens`` and ``tokenizer_path``, a missing ``tokenizer_path`` or a URL that is not
    ``file://``; OSError when the file cannot be read; whatever loading the tokenizer or
    ``count_tokens`` raise propagates (from the worker processes too).
    """
    options = dict(declared_format=declared_format, count_tokens=count_tokens,
                   max_seq_length=max_seq_length, min_conversations=min_conversations,
                   validation_fraction=validation_fraction, max_issues_stored=max_issues_stored,
                   tokenizer_name=tokenizer_name, skip_tokens=skip_tokens,
                   max_line_bytes=max_line_bytes)
    tokenizer = _check_arguments(workers, min_bytes_per_worker, count_tokens, tokenizer_path)
    new_run(**options)  # the checks of validate_stream
    local = _local_path(path)
    workers = default_workers() if workers is None else workers
    size = os.stat(local).st_size
    n_ranges = min(workers, size // min_bytes_per_worker)
    plan = plan_ranges(local, n_ranges, options) if n_ranges >= 2 else None
    if plan is None:
        return _sequential(local, options, tokenizer)
    head, ranges = plan
    return _parallel(local, head, ranges, options, tokenizer, executor)


def _check_arguments(workers: int | None, min_bytes_per_worker: int,
                     count_tokens: CountTokens | None, tokenizer_path: Any) -> str | None:
    """The tokenizer path as a string (or None). Raises InvalidInput (see validate_path)."""
    if workers is not None and workers < 1:
        raise InvalidInput(f"workers must be at least 1, got {workers}")
    if min_bytes_per_worker < 1:
        raise InvalidInput(f"min_bytes_per_worker must be at least 1, got {min_bytes_per_worker}")
    if tokenizer_path is not None:
        if count_tokens is not None:
            raise InvalidInput("give count_tokens or tokenizer_path, not both")
        tokenizer_path = os.fspath(tokenizer_path)
        if not os.path.exists(tokenizer_path):
            raise InvalidInput(f"tokenizer_path {tokenizer_path!r} does not exist",
                               hint="a local tokenizer folder or tokenizer.json file")
        return tokenizer_path
    if count_tokens is not None:
        try:
            pickle.dumps(count_tokens)
        except (pickle.PicklingError, AttributeError, TypeError) as exc:
            raise InvalidInput(f"count_tokens cannot be sent to worker processes ({exc})",
                               hint="pass tokenizer_path (a local tokenizer folder or "
                                    "tokenizer.json) instead") from None
    return None


def _local_path(path: str | os.PathLike) -> str:
    """A filesystem path from a path or a ``file://`` URL. Raises InvalidInput for other URLs."""
    text = os.fspath(path)
    if isinstance(text, bytes):
        text = os.fsdecode(text)
    if "://" not in text:
        return text
    url = urlparse(text)
    if url.scheme != "file" or url.netloc not in ("", "localhost"):
        raise InvalidInput(f"{text!r} is not a local file; validate_path reads file:// URLs and "
                           "paths", hint="stream other objects with validate_stream")
    return unquote(url.path)


@functools.lru_cache(maxsize=4)
def load_counter(tokenizer_path: str) -> CountTokens:
    """``count_tokens`` of a local tokenizer (cached per process): a Hugging Face tokenizer folder
    loaded with ``AutoTokenizer.from_pretrained(local_files_only=True)``, else a ``tokenizer.json``
    file loaded with ``tokenizers.Tokenizer.from_file``. Raises what those loaders raise (OSError,
    ValueError, Exception from tokenizers) and InvalidInput from ``tokenizer_counter``."""
    if os.path.isdir(tokenizer_path):
        from transformers import AutoTokenizer

        return tokenizer_counter(AutoTokenizer.from_pretrained(tokenizer_path,
                                                               local_files_only=True))
    from tokenizers import Tokenizer

    return tokenizer_counter(Tokenizer.from_file(tokenizer_path))


def _sequential(path: str, options: dict[str, Any], tokenizer: str | None) -> ValidationReport:
    if tokenizer is not None and not options["skip_tokens"]:
        options = {**options, "count_tokens": load_counter(tokenizer)}
    with open(path, "rb") as fh:
        return validate_stream(fh, **options)


# ----- planning -----------------------------------------------------------------------------------
def plan_ranges(path: str, n_ranges: int, options: dict[str, Any]
                ) -> tuple[_Head, list[tuple[int, int]]] | None:
    """The head and up to ``n_ranges`` byte ranges ``[start, end)`` covering the file, cut just
    after a newline, the first holding the head; None when the file should be validated in one
    process (no steady state within HEAD_BYTES, or fewer than two ranges). ``options`` are
    validate_stream's keyword arguments. Raises OSError when the file cannot be read."""
    head = _scan_head(path, options)
    if head is None:
        return None
    size = os.stat(path).st_size
    bounds = [0]
    with open(path, "rb") as fh:
        for i in range(1, n_ranges):
            target = max(head.end, size * i // n_ranges)
            if target >= size:
                break
            fh.seek(target - 1)
            while True:  # to the end of the line holding byte target - 1, in bounded pieces
                piece = fh.readline(_READ_BUFFER)
                if not piece or piece.endswith(b"\n"):
                    break
            cut = fh.tell()
            if bounds[-1] < cut < size:
                bounds.append(cut)
    bounds.append(size)
    ranges = list(zip(bounds, bounds[1:]))
    return (head, ranges) if len(ranges) >= 2 else None


def _scan_head(path: str, options: dict[str, Any]) -> _Head | None:
    """Read the first lines as validate_stream does (without counting tokens) until the format is
    known and the preview is full; None when that does not happen within HEAD_BYTES, or the file
    is empty or binary. Raises OSError when the file cannot be read."""
    run = new_run(**{**options, "count_tokens": None, "skip_tokens": True})
    limit = options["max_line_bytes"]
    with open(path, "rb") as fh:
        run.readline = fh.readline
        first = fh.readline(limit)
        if first.startswith(BOM):
            first = first[3:]
        if not first or sniff_binary(first[:8192]):
            return None
        run.one_line(1, first)
        lines, line_no = rest_of_lines(fh, limit), 1
        while run.fmt is None or len(run.preview) < 3:
            raw = next(lines, None)
            if raw is None or run.stopped or fh.tell() > HEAD_BYTES:
                return None
            line_no += 1
            run.one_line(line_no, raw)
        return None if run.stopped else _Head(run.fmt, run.fmt_source, fh.tell())


def count_newlines(path: str, start: int, end: int) -> int:
    """Newline bytes in ``[start, end)`` of the file (about 2 GB/s of CPU: read + ``bytes.count``).
    Raises OSError when the file cannot be read."""
    buffer = bytearray(min(_COUNT_BUFFER, max(1, end - start)))
    view, total = memoryview(buffer), 0
    with open(path, "rb", buffering=0) as fh:
        fh.seek(start)
        left = end - start
        while left > 0:
            got = fh.readinto(view[:min(len(buffer), left)])
            if not got:
                break
            total += buffer.count(b"\n", 0, got)
            left -= got
    return total


# ----- the worker side ----------------------------------------------------------------------------
class _RangeIO(io.RawIOBase):
    """Raw reader over bytes ``[start, end)`` of a file. ``fileno()`` is the whole file's, so
    validate_stream's choice between plain iteration and bounded ``readline`` (by file size) is the
    same as on the whole file."""

    def __init__(self, path: str, start: int, end: int):
        super().__init__()
        self._file = open(path, "rb", buffering=0)
        self._file.seek(start)
        self._left = end - start

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        n = min(len(buffer), self._left)
        if n <= 0:
            return 0
        got = self._file.readinto(memoryview(buffer).cast("B")[:n]) or 0
        self._left -= got
        return got

    def fileno(self) -> int:
        return self._file.fileno()

    def close(self) -> None:
        if not self.closed:
            self._file.close()
        super().close()


def _open_range(path: str, start: int, end: int) -> BinaryIO:
    return io.BufferedReader(_RangeIO(path, start, end), buffer_size=READ_BLOCK)


def validate_range(task: _Task) -> _RangeResult:
    """Validate one byte range (the first in the calling process, the others in workers). Raises
    what validate_stream raises and what loading the tokenizer raises."""
    options = dict(task.options)
    if task.tokenizer_path is not None and not options["skip_tokens"]:
        options["count_tokens"] = load_counter(task.tokenizer_path)
    run = new_run(**options)
    limit = options["max_line_bytes"]
    with _open_range(task.path, task.start, task.end) as fh:
        if task.start == 0:
            lines = read_into(fh, run, limit)
        else:  # validate_stream's state after the head: format known, preview full
            run.fmt, run.fmt_source = task.head.fmt, task.head.fmt_source
            run.preview = [{}] * 3
            run.seen.update(task.seen)
            run.readline = fh.readline
            lines = run.consume(rest_of_lines(fh, limit), task.first_line - 1)
    if run.batcher is not None:
        run.batcher.flush()
    run.flush_accepted()
    log = run.log
    return _RangeResult(lines=lines, stopped=run.stopped, data_lines=run.data_lines, fmt=run.fmt,
                        fmt_source=run.fmt_source, counts=log.counts,
                        error_count=log.error_count, warning_count=log.warning_count,
                        issues=log.stored(), stats=run.stats, seen=run.seen,
                        preview=run.preview if task.start == 0 else [])


# ----- the parent side ----------------------------------------------------------------------------
_FORK_UNSAFE = ("torch", "tokenizers", "transformers")


def mp_context() -> multiprocessing.context.BaseContext:
    """How worker processes start: ``fork`` (milliseconds, modules already imported) on Linux when
    this process runs one thread and has not imported torch, tokenizers or transformers (their
    thread pools do not survive a fork); ``spawn`` (a fresh interpreter, ~0.1-0.2 s of CPU each)
    otherwise."""
    if sys.platform.startswith("linux") and threading.active_count() == 1 \
            and not any(name in sys.modules for name in _FORK_UNSAFE):
        return multiprocessing.get_context("fork")
    return multiprocessing.get_context("spawn")


def _parallel(path: str, head: _Head, ranges: list[tuple[int, int]], options: dict[str, Any],
              tokenizer: str | None, executor: Executor | None) -> ValidationReport:
    """Validate the first range here and the others in worker processes, then merge. Raises what
    the validation of any range raises."""
    tasks = [_Task(path, start, end, 1, head, options, tokenizer) for start, end in ranges]
    pool = executor or ProcessPoolExecutor(len(tasks) - 1, mp_context=mp_context())
    try:
        if executor is None:
            for _ in tasks[1:]:
                pool.submit(int)  # start every process now, while the lines are counted
        futures = []
        for k in range(1, len(tasks)):
            tasks[k].first_line = tasks[k - 1].first_line + count_newlines(path, *ranges[k - 1])
            futures.append(pool.submit(validate_range, tasks[k]))
        results = _until_binary(validate_range(tasks[0]), futures)
        reruns = {k: pool.submit(validate_range, replace(tasks[k], seen=seen))
                  for k, seen in _ids_used_earlier(results).items()}
        for k, future in reruns.items():
            results[k] = future.result()
    finally:
        if executor is None:
            pool.shutdown(wait=True, cancel_futures=True)
    return _merge(results, options)


def _until_binary(first: _RangeResult, futures: list) -> list[_RangeResult]:
    """The results in order, up to the first range that stopped at binary data (later ranges are
    not part of what validate_stream reads)."""
    results = [first]
    for i, future in enumerate(futures):
        if results[-1].stopped:
            for later in futures[i:]:
                later.cancel()
            break
        results.append(future.result())
    return results


def _ids_used_earlier(results: list[_RangeResult]) -> dict[int, dict[str, int]]:
    """``{range index: {id: first line}}`` for the ids a range uses that an earlier range used
    first (those ranges are validated again with these ids known)."""
    seeds: dict[int, dict[str, int]] = {}
    earlier = results[0].seen
    for k in range(1, len(results)):
        seen = results[k].seen
        common = earlier.keys() & seen.keys()
        if common:
            seeds[k] = {cid: earlier[cid] for cid in common}
        if k + 1 < len(results):
            union = dict(seen)
            union.update(earlier)  # the earlier first line wins
            earlier = union
    return seeds


def _merge(results: list[_RangeResult], options: dict[str, Any]) -> ValidationReport:
    """One report from the ranges' results, through validate_stream's own ``finish``."""
    run = new_run(**{**options, "count_tokens": None, "skip_tokens": True})
    first = results[0]
    run.fmt, run.fmt_source, run.preview = first.fmt, first.fmt_source, first.preview
    run.stopped = results[-1].stopped
    run.data_lines = sum(r.data_lines for r in results)
    run.stats = _merge_stats([r.stats for r in results])
    for result in results:
        _merge_log(run.log, result)
    return run.finish(results[-1].lines, options["min_conversations"])


def _merge_stats(parts: list[StatsAccumulator]) -> StatsAccumulator:
    total = StatsAccumulator(parts[0].tokenizer, parts[0].fraction, parts[0].seed)
    for part in parts:
        total.add(part.conversations, part.turns, part.training_pairs)
        total.merge_split(part)
        total.tokens += part.tokens
        total.assistant_tokens += part.assistant_tokens
        for length, count in part.length_counts.items():
            total.length_counts[length] = total.length_counts.get(length, 0) + count
    return total


def _merge_log(log: IssueLog, result: _RangeResult) -> None:
    """Add one range's counts and stored issues. Ranges come in file order and each range's stored
    issues are in (line, order found), so the log keeps the same issues as one pass would: the
    lowest lines of each severity are among the lowest of the range that holds them."""
    for code, count in result.counts.items():
        log.counts[code] = log.counts.get(code, 0) + count
    log.error_count += result.error_count
    log.warning_count += result.warning_count
    for issue in result.issues:
        log._keep(issue.severity, issue.line, issue.code, issue.error, issue.suggestion)
