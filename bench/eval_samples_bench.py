"""Cost of the evaluation samples: a training run on the demo dataset with the samples (3 greedy
answers of ≤ 64 tokens at step 0 and at every evaluation) against the same run without them.

    python bench/eval_samples_bench.py                                   # the tiny model
    python bench/eval_samples_bench.py --base-model PATH_OR_ID --repeats 1   # e.g. SmolLM2

Each run is the product's worker loop (``ray_jobs.worker.loop.train_loop_per_worker``) in this
process with the in-process runtime (what a one-CPU-worker job runs in its Ray job's driver), the
preset's configuration (``--preset``, default balanced, ``--set key=value`` overrides) and an
in-memory sink. Variants interleaved (with, without, without, with, …). Figures per run: the run's
duration (``duration_seconds`` of the result), the seconds the loop spent generating samples
(``eval_samples.seconds``, timed around ``generate``) and their share of the run; the process CPU
time of the run and of the generation (the steadier clock on a busy machine).
Goal: samples ≤ 15 % of the run's time on the demo. Writes nothing but scratch under bench/out/.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

DEMO = ROOT / "examples" / "demo-support-v4.jsonl"
OUT = ROOT / "bench" / "out"


def run_once(config: dict, samples: int, home: Path) -> dict:
    """One training run; returns the figures of its result."""
    import ray_jobs.worker.samples as es
    from ray_jobs.worker.loop import train_loop_per_worker
    from ray_jobs.worker.runtime import InProcessRuntime
    from ray_jobs.worker.sinks import CollectingSink

    generate, gen_cpu = es.generate, [0.0]

    def timed(*args, **kwargs):  # CPU time of the generation (the steadier clock when busy)
        c0 = time.process_time()
        try:
            return generate(*args, **kwargs)
        finally:
            gen_cpu[0] += time.process_time() - c0

    es.generate = timed
    try:
        with tempfile.TemporaryDirectory(dir=OUT, prefix="eval-samples-") as tmp:
            sink = CollectingSink()
            cpu0 = time.process_time()
            result = train_loop_per_worker(
                {"config": config, "dataset": str(DEMO), "output": f"{tmp}/adapter",
                 "home": str(home), "sink": sink, "eval_samples": samples},
                runtime=InProcessRuntime(f"{tmp}/runs", "run"))
            cpu = time.process_time() - cpu0
    finally:
        es.generate = generate
    spent = result["eval_samples"]["seconds"]
    answers = [i["answer"] for e in sink.of("samples") for i in e["items"]]
    return {"samples": samples, "duration_s": result["duration_seconds"], "cpu_s": cpu,
            "samples_s": spent, "share": spent / result["duration_seconds"],
            "samples_cpu_s": gen_cpu[0], "cpu_share": gen_cpu[0] / cpu,
            "steps": result["total_steps"], "evaluations": len(sink.of("samples")),
            "base_val": result["base_validation_loss"],
            "final_val": result["final_validation_loss"],
            "mean_answer_chars": statistics.mean(len(a) for a in answers) if answers else 0}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--base-model", default="brightrun/tiny-llama")
    p.add_argument("--preset", default="balanced")
    p.add_argument("--set", action="append", default=[], dest="overrides", metavar="KEY=VALUE")
    p.add_argument("--repeats", type=int, default=2, help="pairs of runs (with, without)")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    os.environ.update(OMP_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads),
                      HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    import torch

    from backend.jobs.estimates import build_config

    torch.set_num_threads(args.threads)
    OUT.mkdir(parents=True, exist_ok=True)
    config = build_config(args.preset, base_model=args.base_model,
                          overrides=args.overrides).model_dump()
    order = [3, 0] + [0, 3] * (args.repeats > 1) + [3, 0] * max(0, args.repeats - 2)
    print(f"# {time.strftime('%H:%M')} load {os.getloadavg()[0]:.1f} "
          f"({os.cpu_count()} cores), base {args.base_model}, preset {args.preset} "
          f"{args.overrides}, threads {args.threads}")
    rows = []
    for samples in order:
        row = run_once(config, samples, OUT / "home")
        rows.append(row)
        print(f"# {row}  load {os.getloadavg()[0]:.1f}", flush=True)
    print("| run | steps | sampled evaluations | duration s | samples s | share (wall) | CPU s | "
          "samples CPU s | share (CPU) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {'with' if r['samples'] else 'without'} samples | {r['steps']} | "
              f"{r['evaluations']} | {r['duration_s']:.1f} | {r['samples_s']:.2f} | "
              f"{r['share']:.1%} | {r['cpu_s']:.1f} | {r['samples_cpu_s']:.2f} | "
              f"{r['cpu_share']:.1%} |")
    on = [r for r in rows if r["samples"]]
    off = [r for r in rows if not r["samples"]]
    best_on, best_off = min(r["duration_s"] for r in on), min(r["duration_s"] for r in off)
    print(f"\nbest duration with / without samples: {best_on:.1f} / {best_off:.1f} s = "
          f"{best_on / best_off:.3f}×; measured share of the samples "
          f"{statistics.mean(r['share'] for r in on):.1%} wall, "
          f"{statistics.mean(r['cpu_share'] for r in on):.1%} CPU (mean of {len(on)}); "
          f"base → final validation loss {on[0]['base_val']:.3f} → {on[0]['final_val']:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
