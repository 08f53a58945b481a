"""Metrics write cost: the database progress path of a training step, against the step itself.

    python bench/metrics_write_bench.py                 # SQLite, 3 rounds of 500 steps
    python bench/metrics_write_bench.py --stored 20000  # a job that already holds 20,000 points

What rank 0 does after every optimizer step (``ray_jobs.worker.loop._one_step``) is
``MetricBuffer.add(point, progress)``; every 10th point (or 5 s) the buffer calls
``DbSink.metrics`` (``job_progress.append_metrics``: one transaction that checks which steps are
stored and inserts the batch) and ``DbSink.progress`` (``job_progress.update_progress``: one
transaction that updates the job row and accrues its compute cost). Measured here in one process on
a fresh SQLite home (a running job created through ``backend.jobs.service.create_job``):

1. write cost per step: wall and CPU time of ``MetricBuffer.add`` over ``--steps`` steps with
   points shaped as the worker builds them (10 points a flush), divided by the steps; the same with
   the jsonl sink for reference; optionally with ``--stored`` points already in the job;
2. step time: the product's ``optimizer_step`` (see bench/train_bench.py) on the tiny and on the
   bigger benchmark model, batch 8, length-grouped log-normal conversations, mean of
   ``--train-steps`` steps after a warm-up step; and the tiny model at batch 1 (4× the steps), the
   shortest step the product makes (what the e2e tests use).

Rounds are interleaved (writes, tiny steps, big steps, ...); the best round of each is kept.
Goal: write cost per step ≤ 2 % of the step time. Prints a markdown table; writes only under
bench/out/ (removed at the end).
"""
from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench import common as tb  # noqa: E402


def point(step: int, total: int) -> tuple[dict, tuple]:
    """A metric point and progress tuple shaped as ``_one_step`` builds them."""
    from ray_jobs.worker.sinks import utc_now

    p = {"epoch": 1 + step // 1000, "step": step, "training_loss": 2.0 + 1.0 / step,
         "validation_loss": None, "learning_rate": 2e-4 * (1 - step / (total + 1)),
         "gradient_norm": 0.8, "throughput": 2345.6, "gpu_utilization": None,
         "tokens_processed": 3000 * step, "timestamp": utc_now()}
    return p, (p["epoch"], step, total, round(100.0 * step / total, 2), p, 12.5)


def write_steps(sink, first: int, steps: int, total: int) -> tuple[float, float]:
    """(wall, CPU) seconds per step of ``MetricBuffer.add`` for ``steps`` steps (10 a flush)."""
    from ray_jobs.worker.sinks import MetricBuffer

    buffer = MetricBuffer(sink, every_steps=10, every_s=3600.0)
    points = [point(s, total) for s in range(first, first + steps)]
    wall, cpu = time.perf_counter(), time.process_time()
    for p, progress in points:
        buffer.add(p, progress)
    buffer.flush()
    return (time.perf_counter() - wall) / steps, (time.process_time() - cpu) / steps


def running_job(user) -> str:
    """A job created by ``create_job`` (not submitted), moved to running as the recipe does."""
    from backend.jobs import service as jobs
    from backend.jobs.progress import set_stage

    ds = tb.ready_dataset(user, tb.lognormal_dataset(tb.OUT / "lognormal-120.jsonl", 120))
    job = jobs.create_job(user, ds.id, preset_id="balanced", hardware_id="cpu-local", workers=1,
                          submit=False)
    set_stage(job.id, "initializing")
    set_stage(job.id, "training")
    return job.id


def store_points(job_id: str, count: int, total: int) -> None:
    from backend.jobs.progress import append_metrics

    for start in range(1, count + 1, 1000):
        append_metrics(job_id, [point(s, total)[0] for s in range(start, min(start + 1000,
                                                                              count + 1))])


def step_times(name: str, steps: int, batch_size: int = 8):
    """A callable timing ``steps`` product optimizer steps on model ``name``: (wall, CPU) a step."""
    path = tb.model_path(name)
    cfg = tb.train_config(path, batch_size=batch_size)
    tok, encoded = tb.encoded_train(path, tb.lognormal_dataset(tb.OUT / "lognormal-120.jsonl",
                                                               120), cfg)

    def measure() -> tuple[float, float]:
        run, batches = tb.product_run(path, cfg, tok, encoded)
        wall, cpu = time.perf_counter(), time.process_time()
        for batch in batches[1:1 + steps]:
            tb.product_step(run, batch)
        n = len(batches[1:1 + steps])
        return (time.perf_counter() - wall) / n, (time.process_time() - cpu) / n
    return measure


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=500, help="steps of writes per round")
    parser.add_argument("--train-steps", type=int, default=5, help="optimizer steps per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--stored", type=int, default=0, help="points already stored in the job")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    tb.set_threads(args.threads)
    started = time.time()
    print(f"# {time.strftime('%Y-%m-%d %H:%M:%S')} metrics writes, load {tb.load_average()}",
          flush=True)
    from backend.accounts.users import ensure_local_user
    from backend.jobs.db_sink import DbSink
    from ray_jobs.worker.sinks import JsonLinesSink

    home = tb.fresh_home("metrics-write-")
    try:
        job_id = running_job(ensure_local_user())
        total = args.stored + args.rounds * args.steps + 10
        store_points(job_id, args.stored, total)
        db, jsonl = DbSink(job_id), JsonLinesSink(path=home / "progress.jsonl")
        models = {"tiny model, batch 8": step_times("tiny", args.train_steps),
                  "big model, batch 8": step_times("big", args.train_steps),
                  "tiny model, batch 1": step_times("tiny", 4 * args.train_steps, batch_size=1)}
        best: dict[str, tuple[float, float]] = {}
        first = args.stored + 1
        for r in range(args.rounds):
            results = {"db": write_steps(db, first, args.steps, total),
                       "jsonl": write_steps(jsonl, first, args.steps, total)}
            first += args.steps
            results.update({name: fn() for name, fn in models.items()})
            print(f"#   round {r + 1}: " + ", ".join(f"{k} {w * 1000:.3f}/{c * 1000:.3f} ms"
                                                     for k, (w, c) in results.items())
                  + f" (wall/CPU per step), load {tb.load_average()}", flush=True)
            for k, (w, c) in results.items():
                old = best.get(k, (float("inf"), float("inf")))
                best[k] = (min(old[0], w), min(old[1], c))
    finally:
        from backend.db.session import dispose_engines

        dispose_engines()
        shutil.rmtree(home, ignore_errors=True)
    rows = []
    for sink in ("db", "jsonl"):
        for i, clock in enumerate(("wall", "CPU")):
            write = best[sink][i]
            for name in models:
                step = best[name][i]
                rows.append((f"{sink} sink, {clock}, {name}", f"{write * 1000:.3f}",
                             f"{step * 1000:.1f}", f"{100 * write / step:.2f} %",
                             "≤ 2 %" if sink == "db" else "(reference)"))
    print(f"\nMetrics write cost per step — SQLite, {args.stored} points already stored, "
          f"batches of 10 points, best of {args.rounds} rounds\n")
    print("| sink, clock, model | write per step, ms | step time, ms | share | goal |")
    print("|---|---|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    print(f"\n# took {time.time() - started:.0f}s, load now {tb.load_average()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
