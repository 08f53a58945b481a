"""2. **ray-overhead** of bench/train_bench.py (run it as ``python bench/train_bench.py
ray-overhead``; the method: that file's docstring). Each variant runs in a child process that
re-runs this file: ``python bench/ray_overhead_bench.py _child-inproc|_child-ray RECIPE-ARGS``."""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

_ROOT = str(Path(__file__).resolve().parents[1])
if _ROOT not in sys.path:  # run as ``python bench/ray_overhead_bench.py``
    sys.path.insert(0, _ROOT)

from bench.common import (  # noqa: E402
    BASE_CONFIG,
    OUT,
    ROOT,
    load_average,
    lognormal_dataset,
    model_path,
    outside_ray,
    set_threads,
)


def recipe_args(config_file: Path, dataset: Path, work: Path, sink_path: Path) -> list[str]:
    """The recipe's command line (``python -m ray_jobs.train_lora``), one worker, jsonl sink."""
    return ["--config", str(config_file), "--dataset", str(dataset), "--workers", "1", "--ray-train",
            "--output", str(work / "adapter"), "--storage-path", str(work / "ray_results"),
            "--name", "bench", "--sink", json.dumps({"kind": "jsonl", "path": str(sink_path)})]


def instrumented_loop(loop_config: dict[str, Any]):
    """The product's ``train_loop_per_worker`` with two CPU clocks added to every metric point:
    ``bench_step_cpu_s`` (CPU time of the thread running ``optimizer_step``, that step only) and
    ``bench_process_cpu_s`` (CPU time of the whole worker process so far: Ray's threads too)."""
    from ray_jobs.worker import loop as lw
    from ray_jobs.worker import sinks
    step_cpu = [0.0]
    optimizer_step, add = lw.optimizer_step, sinks.MetricBuffer.add

    def timed_step(*a, **k):
        t = time.thread_time()
        out = optimizer_step(*a, **k)
        step_cpu[0] = time.thread_time() - t
        return out

    def add_with_cpu(self, point, progress=None):
        return add(self, {**point, "bench_step_cpu_s": step_cpu[0],
                          "bench_process_cpu_s": time.process_time()}, progress)

    lw.optimizer_step, sinks.MetricBuffer.add = timed_step, add_with_cpu
    try:
        return lw.train_loop_per_worker(loop_config)
    finally:
        lw.optimizer_step, sinks.MetricBuffer.add = optimizer_step, add


def child_inproc(argv: list[str]) -> int:
    """The product's ``train_loop_per_worker`` in this process, with the loop config the recipe
    builds, and the ``ray.train`` calls replaced by their single-process meaning."""
    from bench import ray_overhead_bench  # by name, not __main__: Ray pickles it
    from ray_jobs import train_lora
    from ray_jobs.driver import recipe as recipe_mod

    recipe = train_lora.setup(train_lora.build_parser().parse_args(argv))
    with outside_ray():
        result = ray_overhead_bench.instrumented_loop(recipe_mod.loop_config(recipe))
    return 0 if result else 1


def child_ray(argv: list[str]) -> int:
    """The recipe as ``python -m ray_jobs.train_lora`` runs it, on a fresh local Ray of its own
    (own temp dir: never joins another engineer's cluster)."""
    import ray

    from bench import ray_overhead_bench  # by name, not __main__: Ray pickles it
    from ray_jobs import train_lora
    from ray_jobs.driver import recipe
    recipe.train_loop_per_worker = ray_overhead_bench.instrumented_loop  # what TorchTrainer runs
    temp = tempfile.mkdtemp(prefix="brt-bench-", dir="/tmp")
    try:
        ray.init(num_cpus=2, include_dashboard=False, _temp_dir=temp)
        return train_lora.main(argv)
    finally:
        ray.shutdown()
        shutil.rmtree(temp, ignore_errors=True)


def run_variant(kind: str, config_file: Path, dataset: Path) -> dict[str, Any]:
    """Run one variant in a child process; returns its steady-state step statistics."""
    work = Path(tempfile.mkdtemp(prefix=f"ray-overhead-{kind}-", dir=OUT))
    sink = work / "progress.jsonl"
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS",
                                                            "RAY_API_SERVER_ADDRESS")}
    env.update(RAY_AUTH_MODE="disabled", PYTHONPATH=str(ROOT), HF_HUB_OFFLINE="1",
               RAY_USAGE_STATS_ENABLED="0", BRIGHTRUN_HOME=str(OUT / "home"))
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, __file__, f"_child-{kind}",
                           *recipe_args(config_file, dataset, work, sink)],
                          cwd=ROOT, env=env, capture_output=True, text=True)
    total = time.perf_counter() - started
    if proc.returncode != 0:
        raise RuntimeError(f"{kind} run failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    points = [p for line in sink.read_text().splitlines()
              for p in (json.loads(line).get("points") or [])]
    shutil.rmtree(work, ignore_errors=True)
    return {"total_s": total, **steady_state(points)}


def steady_state(points: list[dict], skip: int = 5) -> dict[str, float]:
    """Per step, over the steady state (after ``skip`` warm-up steps, without the last step, which
    holds the final evaluation and checkpoint): mean and median interval between the metric points'
    timestamps (wall), CPU time of the optimizer step's thread, CPU time of the worker process."""
    from datetime import datetime

    kept = sorted(points, key=lambda p: p["step"])[skip:-1]
    stamps = [datetime.fromisoformat(p["timestamp"]).timestamp() for p in kept]
    intervals = [b - a for a, b in zip(stamps, stamps[1:])]
    n = len(intervals)
    if n < 2:
        raise SystemExit(f"ray-overhead: only {len(points)} steps ran, too few for a steady state "
                         f"(skip {skip} warm-up steps and the last); use more --conversations")
    step_cpu = sum(p["bench_step_cpu_s"] for p in kept[1:]) / n
    process_cpu = (kept[-1]["bench_process_cpu_s"] - kept[0]["bench_process_cpu_s"]) / n
    return {"steps": n, "step_s": (stamps[-1] - stamps[0]) / n,
            "median_step_s": statistics.median(intervals), "step_cpu_s": step_cpu,
            "process_cpu_s": process_cpu, "other_cpu_s": process_cpu - step_cpu}


def ray_overhead(args: argparse.Namespace) -> list[tuple]:
    dataset = lognormal_dataset(OUT / f"lognormal-{args.conversations}.jsonl", args.conversations)
    rows, loads = [], [load_average()]
    for name in args.models:
        path = model_path(name)
        config_file = OUT / f"ray-overhead-{name}.json"
        config_file.write_text(json.dumps({**BASE_CONFIG, "base_model": str(path),
                                           "batch_size": args.batch_size}))
        runs = {"in-process": [], "ray": []}
        for r in range(args.repeat):
            for kind in (("inproc", "ray") if r % 2 == 0 else ("ray", "inproc")):
                out = run_variant(kind, config_file, dataset)
                runs["ray" if kind == "ray" else "in-process"].append(out)
                print(f"#   {name} {kind} run {r + 1}: {json.dumps(out)} load {load_average()}",
                      flush=True)
        loads.append(load_average())
        base = {k: min(o[k] for o in runs["in-process"]) for k in runs["in-process"][0]}
        ray = {k: min(o[k] for o in runs["ray"]) for k in runs["ray"][0]}
        for key, label in (("step_s", "mean step interval (wall)"),
                           ("median_step_s", "median step interval (wall)"),
                           ("step_cpu_s", "optimizer step, thread CPU"),
                           ("process_cpu_s", "worker process CPU per step"),
                           ("other_cpu_s", "worker CPU outside the optimizer step")):
            rows.append((f"{name} model, {label}, ms", f"{1000 * base[key]:.1f}",
                         f"{1000 * ray[key]:.1f}",
                         f"{100 * (ray[key] / base[key] - 1):+.1f} %" if key != "other_cpu_s"
                         else f"{100 * ray[key] / ray['step_cpu_s']:.1f} % of a step",
                         "≤ +5 %" if key in ("step_s", "process_cpu_s") else ""))
        rows.append((f"{name} model, whole command, s", f"{base['total_s']:.1f}",
                     f"{ray['total_s']:.1f}", "", "(startup included)"))
    print(f"# load average during the runs: {' | '.join(loads)}")
    return rows



def child_main(argv: list[str]) -> int:
    """The child process's entry: ``_child-inproc`` or ``_child-ray`` then the recipe's
    arguments."""
    set_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    return (child_inproc if argv[0] == "_child-inproc" else child_ray)(argv[1:])


if __name__ == "__main__":
    if len(sys.argv) < 2 or sys.argv[1] not in ("_child-inproc", "_child-ray"):
        sys.exit("run it as: python bench/train_bench.py ray-overhead [--help]")
    sys.exit(child_main(sys.argv[1:]))
