"""Validation benchmark: throughput against bare baselines, and peak memory.

    python bench/validation_bench.py                  # 50 MB file, 20 MB for the tokenizer part
    python bench/validation_bench.py --size-mb 500    # the real figure
    python bench/validation_bench.py --workers 2      # adds multi-process structural validation

Measures, in the same run and on the same synthetic v4 file (bench/gen_synthetic.py, deterministic):

1. structural validation (``validate_stream(..., skip_tokens=True)``) against a bare
   ``for line in f: orjson.loads(line)`` loop (goal ≥ 0.7×);
2. validation with token counting (a byte-level BPE tokenizer trained here, wrapped by
   ``tokenizer_counter``) against bare ``Tokenizer.encode_batch`` over the same texts, 512 per batch,
   already in memory (goal ≥ 0.8×);
3. peak RSS of a child process validating the file, next to the RSS of the same child before it
   starts (Python + imports);
4. with ``--workers N``: structural validation by ``validate_path(..., workers=N)``
   (backend/datasets/validation_parallel.py: N processes, ranges of at least 1 MiB so the default 50 MB file
   is split too) against the same single-process ``orjson.loads`` loop. Its report is checked equal
   to ``validate_stream``'s first. Wall-clock is what parallelism buys; its CPU figure counts the
   worker processes too (``RUSAGE_CHILDREN``), so it shows the cost of splitting, not a speed-up.

Times are the best of ``--repeat`` runs, baseline and validation interleaved; wall-clock MB/s and
CPU-time MB/s (``time.process_time``, steadier on a busy machine) are both printed. Prints a markdown
table; writes nothing but the generated data under bench/out/.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import orjson

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.gen_synthetic import generate  # noqa: E402

OUT = ROOT / "bench" / "out"
BATCH = 512


def data_file(size_mb: float) -> Path:
    path = OUT / f"synthetic-{size_mb:g}mb.jsonl"
    if not path.exists():
        generate(path, size_mb)
    return path


def best_of(repeat: int, runs: dict[str, Callable[[], object]],
            children: dict[str, int] | None = None) -> dict[str, tuple[float, float, float]]:
    """{name: (best wall seconds, best CPU seconds, best CPU seconds of the busiest process)}, the
    runs interleaved ``repeat`` times. CPU includes the child processes that ended during a run (a
    process pool of ``children[name]`` processes, whose CPU is shared out evenly for the third
    figure: on idle cores, the wall time that parallelism would reach)."""
    best = {name: (float("inf"),) * 3 for name in runs}
    for _ in range(repeat):
        for name, fn in runs.items():
            wall, cpu, child = time.perf_counter(), time.process_time(), children_cpu()
            fn()
            wall = time.perf_counter() - wall
            cpu, child = time.process_time() - cpu, children_cpu() - child
            busiest = max(cpu, child / max(1, (children or {}).get(name, 1)))
            best[name] = tuple(map(min, best[name], (wall, cpu + child, busiest)))
    return best


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


# ----- 1. structural -----------------------------------------------------------------------------
def bare_orjson(path: Path) -> None:
    loads = orjson.loads
    with path.open("rb") as fh:
        for line in fh:
            loads(line)


def structural(path: Path):
    from backend.datasets.validation import validate_stream

    with path.open("rb") as fh:
        report = validate_stream(fh, skip_tokens=True)
    assert report.ok, report.issues[:3]
    return report


PARALLEL_MIN_BYTES = 1 << 20


def parallel(path: Path, workers: int):
    from backend.datasets.validation_parallel import validate_path

    report = validate_path(path, workers=workers, min_bytes_per_worker=PARALLEL_MIN_BYTES,
                           skip_tokens=True)
    assert report.ok, report.issues[:3]
    return report


def n_ranges(path: Path, workers: int) -> int:
    from backend.datasets.validation_parallel import plan_ranges

    options = dict(declared_format=None, count_tokens=None, max_seq_length=2048,
                   min_conversations=1, validation_fraction=0.1, max_issues_stored=100,
                   tokenizer_name=None, skip_tokens=True, max_line_bytes=1 << 28)
    n = min(workers, path.stat().st_size // PARALLEL_MIN_BYTES)
    plan = plan_ranges(str(path), n, options) if n >= 2 else None
    return len(plan[1]) if plan else 1


# ----- 2. tokens ---------------------------------------------------------------------------------
def texts_of(path: Path) -> list[str]:
    with path.open("rb") as fh:
        return [t["content"] for line in fh for t in orjson.loads(line)["turns"]]


def train_tokenizer(texts: list[str], vocab_size: int = 8000):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=["<unk>", "<s>", "</s>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tok.train_from_iterator(texts, trainer)
    return tok


def bare_encode(tok, texts: list[str], fast: bool = False) -> int:
    """Tokens of ``texts`` with ``encode_batch`` (or ``encode_batch_fast``: no offsets), 512 a batch."""
    encode = tok.encode_batch_fast if fast else tok.encode_batch
    total = 0
    for i in range(0, len(texts), BATCH):
        total += sum(len(e) for e in encode(texts[i:i + BATCH], add_special_tokens=False))
    return total


def with_tokens(path: Path, tok):
    from backend.datasets.validation import tokenizer_counter, validate_stream

    with path.open("rb") as fh:
        return validate_stream(fh, count_tokens=tokenizer_counter(tok), tokenizer_name="bench-bpe")


# ----- 3. peak RSS -------------------------------------------------------------------------------
def peak_kib() -> int:
    """High-water RSS of this process in KiB. VmHWM (Linux) restarts at exec; ru_maxrss would carry
    over the parent's peak from before the fork."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def child(path: str, mode: str) -> None:
    """Runs in a subprocess: validate ``path`` and print RSS before/after as JSON."""
    from backend.datasets.validation import tokenizer_counter, validate_stream

    kwargs: dict = {"skip_tokens": True} if mode == "structural" else {}
    if mode.startswith("bpe:"):
        from tokenizers import Tokenizer

        kwargs = {"count_tokens": tokenizer_counter(Tokenizer.from_file(mode[4:]))}
    before = peak_kib()
    with open(path, "rb") as fh:
        report = validate_stream(fh, **kwargs)
    after = peak_kib()
    print(json.dumps({"before_kib": before, "peak_kib": after,
                      "conversations": report.stats.conversations}))


def peak_rss(path: Path, mode: str) -> dict:
    out = subprocess.run([sys.executable, __file__, "--child", str(path), mode], check=True,
                         capture_output=True, text=True, cwd=ROOT)
    return json.loads(out.stdout)


def structural_rows(path: Path, mb: float, repeat: int, workers: int) -> list[tuple]:
    """Single-process structural validation, and ``workers`` processes when not 0."""
    runs = {"bare": lambda: bare_orjson(path), "validate": lambda: structural(path)}
    if workers:
        assert parallel(path, workers).to_dict() == structural(path).to_dict()
        runs["parallel"] = lambda: parallel(path, workers)
    best = best_of(repeat, runs, {"parallel": workers - 1})
    rows = []
    for i, clock in enumerate(("wall", "CPU")):
        base, val = mb / best["bare"][i], mb / best["validate"][i]
        rows.append((f"structural, {clock} MB/s ({mb:.0f} MB)", f"{base:.0f} (orjson.loads loop)",
                     f"{val:.0f}", f"{val / base:.2f}×", "≥ 0.7×"))
    if workers:
        rows += parallel_rows(best, mb, workers, n_ranges(path, workers))
    return rows


def parallel_rows(best: dict, mb: float, workers: int, ranges: int) -> list[tuple]:
    """Wall-clock; CPU of the busiest process (what idle cores would give); CPU of all processes
    (what the split costs), each against the single-process orjson loop."""
    rows = []
    for i, clock, goal in ((0, "wall", "≥ 0.7×"),
                           (2, "CPU of the busiest process,", "(on idle cores)"),
                           (1, "CPU of all processes,", "(cost of splitting)")):
        base, val = mb / best["bare"][min(i, 1)], mb / best["parallel"][i]
        rows.append((f"structural validation, {workers} processes ({ranges} ranges), {clock} MB/s "
                     f"({mb:.0f} MB)", f"{base:.0f} (orjson.loads loop)", f"{val:.0f}",
                     f"{val / base:.2f}×", goal))
    return rows


# ----- main --------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=float, default=50, help="file for structural + RSS")
    parser.add_argument("--token-mb", type=float, default=20, help="file for the tokenizer part")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--workers", type=int, default=0,
                        help="also measure validate_path with this many processes (0: off)")
    parser.add_argument("--child", nargs=2, metavar=("PATH", "MODE"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(*args.child)
        return 0
    path = data_file(args.size_mb)
    mb = path.stat().st_size / 2**20
    load_start = os.getloadavg()
    rows = structural_rows(path, mb, args.repeat, args.workers)
    load_structural = os.getloadavg()

    token_path = data_file(min(args.token_mb, args.size_mb))
    tmb = token_path.stat().st_size / 2**20
    texts = texts_of(token_path)
    tok = train_tokenizer(texts[:20000])
    tok_file = OUT / "bench-bpe.json"
    tok.save(str(tok_file))
    expected = bare_encode(tok, texts)
    report = with_tokens(token_path, tok)
    assert report.stats.total_tokens == expected, (report.stats.total_tokens, expected)
    best = best_of(args.repeat, {"bare": lambda texts=texts: bare_encode(tok, texts),
                                 "bare_fast": lambda texts=texts: bare_encode(tok, texts, fast=True),
                                 "validate": lambda: with_tokens(token_path, tok)})
    del texts
    for bare, label, goal in (("bare", "encode_batch", "≥ 0.8×"),
                              ("bare_fast", "encode_batch_fast", "(for reference)")):
        for i, clock in enumerate(("wall", "CPU")):
            base, val = tmb / best[bare][i], tmb / best["validate"][i]
            rows.append((f"with BPE tokens, {clock} MB/s ({tmb:.0f} MB)",
                         f"{base:.1f} ({label}, texts in memory)", f"{val:.1f}",
                         f"{val / base:.2f}×", goal))

    for mode, file, label in (("structural", path, f"structural, {mb:.0f} MB"),
                              ("whitespace", path, f"whitespace counting, {mb:.0f} MB"),
                              (f"bpe:{tok_file}", token_path, f"BPE tokens, {tmb:.0f} MB")):
        r = peak_rss(file, mode)
        rows.append((f"peak RSS, {label}", f"{r['before_kib'] / 1024:.0f} MiB (Python + imports)",
                     f"{r['peak_kib'] / 1024:.0f} MiB (+{(r['peak_kib'] - r['before_kib']) / 1024:.0f})",
                     "", "bounded"))

    loads = (f"{' '.join(f'{x:.1f}' for x in load)} ({when})" for load, when in (
        (load_start, "start"), (load_structural, "after the structural rows"),
        (os.getloadavg(), "end")))
    print(f"\nValidation benchmark — {path.name}, {report.stats.tokenizer} vocab "
          f"{tok.get_vocab_size()}, best of {args.repeat}, {os.cpu_count()} CPUs, load averages "
          f"(1, 5, 15 min) {'; '.join(loads)}\n")
    print("| measure | baseline | validation | ratio | goal |")
    print("|---|---|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
