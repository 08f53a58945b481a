"""The overhead of the product's 2-worker DDP paths: its DDP loop inside a Ray Train worker group
(remote clusters, GPUs) and as ranks forked by the job's driver (``local group``: 2-worker CPU jobs
on a local head, ray_jobs/driver/local_group.py), each against the same loop under
``torchrun --nproc_per_node 2`` (gloo), same data, model, config, steps and threads, in one
invocation.

    python bench/ddp_bench.py --repeat 5 --conversations 400 --models tiny big

*Ray Train*: ``python -m ray_jobs.train_lora --workers 2 --ray-train`` on a fresh local Ray of its
own (2 CPUs), as a job runs it. *local group*: ``python -m ray_jobs.train_lora --workers 2``
without a cluster (the forked ranks a job on a local head runs). *torchrun*: ``torchrun --standalone --nproc_per_node 2`` running
the same ``train_loop_per_worker`` with a runtime whose calls mean what they mean under torchrun
(rank and world from the environment, ``DistributedDataParallel``, ``report`` = a barrier like
``ray.train.report``, checkpoints written by rank 0 to a local folder like Ray Train does).

Per run, over the steady state (after 5 warm-up steps, without the last step):
- the mean interval between rank 0's metric points (wall time per optimizer step);
- the CPU time of **all processes on the machine** per step (``/proc/stat`` deltas sampled at
  every metric point: both workers, Ray's daemons, torchrun's agent — and anything else running,
  so run it on an idle machine; the load average is printed).
Runs alternate between the variants; each variant's median and spread (min–max) over the repeats
are reported, and the overhead as the ratio of medians. Goal: each ≤ 10 % above torchrun.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.common import (  # noqa: E402
    BASE_CONFIG,
    OUT,
    load_average,
    lognormal_dataset,
    model_path,
    print_table,
    set_threads,
)

SKIP = 5


def machine_cpu_s() -> float:
    """CPU seconds spent by every process on the machine since boot (user+nice+system+irq)."""
    fields = open("/proc/stat").readline().split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq = (int(x) for x in fields[:7])
    return (user + nice + system + irq + softirq) / os.sysconf("SC_CLK_TCK")


class TorchrunRuntime:
    """The loop's runtime contract under torchrun (see ray_jobs.worker.runtime.RayTrainRuntime)."""

    in_process = False

    def __init__(self, checkpoint_root: str):
        self.root = Path(checkpoint_root)

    def context(self) -> tuple[int, int]:
        import torch.distributed as dist

        return dist.get_rank(), dist.get_world_size()

    def get_checkpoint(self):
        return None

    def report(self, metrics, folder, name) -> None:
        import torch.distributed as dist

        if folder:  # rank 0 persists the checkpoint, as Ray Train's storage would
            shutil.copytree(folder, self.root / name, dirs_exist_ok=True)
        dist.barrier()

    def prepare_model(self, model):
        from torch.nn.parallel import DistributedDataParallel

        return DistributedDataParallel(model)

    def device(self):
        import torch

        return torch.device("cpu")


@contextlib.contextmanager
def cpu_in_points():
    """Every metric point the loop hands its sink carries the machine's CPU clock (also in ranks
    forked while it is active)."""
    from ray_jobs.worker import sinks
    add = sinks.MetricBuffer.add

    def add_with_cpu(self, point, progress=None):
        return add(self, {**point, "bench_machine_cpu_s": machine_cpu_s()}, progress)

    sinks.MetricBuffer.add = add_with_cpu
    try:
        yield
    finally:
        sinks.MetricBuffer.add = add


def instrumented(loop_config, runtime=None):
    """``train_loop_per_worker`` with the machine's CPU clock added to every metric point."""
    from ray_jobs.worker import loop as lw
    with cpu_in_points():
        return lw.train_loop_per_worker(loop_config, runtime=runtime)


def child_torchrun(argv: list[str]) -> int:
    import torch.distributed as dist

    from ray_jobs import train_lora
    from ray_jobs.driver import recipe as recipe_mod

    set_threads(1)
    dist.init_process_group("gloo", timeout=timedelta(seconds=120))
    try:
        recipe = train_lora.setup(train_lora.build_parser().parse_args(argv))
        loop = recipe_mod.loop_config(recipe)
        instrumented(loop, TorchrunRuntime(f"{recipe.storage_path}/{recipe.name}"))
        return 0
    finally:
        dist.destroy_process_group()


def child_ray(argv: list[str]) -> int:
    import ray

    from ray_jobs import train_lora
    from ray_jobs.driver import recipe
    recipe.train_loop_per_worker = instrumented  # what the TorchTrainer workers run
    temp = tempfile.mkdtemp(prefix="brt-bench-", dir="/tmp")
    try:
        ray.init(num_cpus=2, include_dashboard=False, _temp_dir=temp)
        return train_lora.main(argv)
    finally:
        ray.shutdown()
        shutil.rmtree(temp, ignore_errors=True)


def child_local(argv: list[str]) -> int:
    """The path a 2-worker CPU job on a local head takes: ranks forked by the driver
    (ray_jobs.driver.local_group), which inherit the patched metric buffer."""
    from ray_jobs import train_lora

    with cpu_in_points():
        return train_lora.main(argv)


def run_variant(kind: str, config_file: Path, dataset: Path) -> dict:
    work = Path(tempfile.mkdtemp(prefix=f"ddp-{kind}-", dir=OUT))
    sink = work / "progress.jsonl"
    args = ["--config", str(config_file), "--dataset", str(dataset), "--workers", "2",
            *(["--ray-train"] if kind == "ray" else []), "--output", str(work / "adapter"),
            "--storage-path",
            str(work / "ray_results"), "--name", "bench",
            "--sink", json.dumps({"kind": "jsonl", "path": str(sink)})]
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS",
                                                            "RAY_API_SERVER_ADDRESS")}
    env.update(RAY_AUTH_MODE="disabled", PYTHONPATH=str(ROOT), HF_HUB_OFFLINE="1",
               RAY_USAGE_STATS_ENABLED="0", BRIGHTRUN_HOME=str(OUT / "home"),
               OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    if kind == "torchrun":
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               "--nproc_per_node", "2", __file__, "_child-torchrun", *args]
    else:
        cmd = [sys.executable, __file__, f"_child-{kind}", *args]
    cpu0, started = machine_cpu_s(), time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    total, cpu = time.perf_counter() - started, machine_cpu_s() - cpu0
    if proc.returncode != 0:
        raise RuntimeError(f"{kind} run failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    points = [p for line in sink.read_text().splitlines()
              for p in (json.loads(line).get("points") or [])]
    shutil.rmtree(work, ignore_errors=True)
    return {"total_s": total, "total_machine_cpu_s": cpu, **steady(points)}


def steady(points: list[dict]) -> dict:
    from datetime import datetime

    kept = sorted(points, key=lambda p: p["step"])[SKIP:-1]
    stamps = [datetime.fromisoformat(p["timestamp"]).timestamp() for p in kept]
    n = len(stamps) - 1
    return {"steps": n, "step_s": (stamps[-1] - stamps[0]) / n,
            "machine_cpu_per_step_s": (kept[-1]["bench_machine_cpu_s"]
                                       - kept[0]["bench_machine_cpu_s"]) / n}


def spread(values: list[float]) -> str:
    med = statistics.median(values)
    return f"{1000 * med:.1f} ({1000 * min(values):.1f}–{1000 * max(values):.1f})"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "_child-torchrun":
        return child_torchrun(argv[1:])
    if argv and argv[0] == "_child-ray":
        return child_ray(argv[1:])
    if argv and argv[0] == "_child-local":
        return child_local(argv[1:])
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--conversations", type=int, default=400)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--models", nargs="+", default=["tiny", "big"], choices=["tiny", "big"])
    args = p.parse_args(argv)
    OUT.mkdir(parents=True, exist_ok=True)
    dataset = lognormal_dataset(OUT / f"lognormal-{args.conversations}.jsonl", args.conversations)
    rows, loads = [], [load_average()]
    for name in args.models:
        config_file = OUT / f"ddp-{name}.json"
        config_file.write_text(json.dumps({**BASE_CONFIG, "base_model": str(model_path(name)),
                                           "batch_size": args.batch_size}))
        runs: dict[str, list[dict]] = {"torchrun": [], "ray": [], "local": []}
        for r in range(args.repeat):
            order = ("torchrun", "ray", "local")
            for kind in (order if r % 2 == 0 else order[::-1]):
                out = run_variant(kind, config_file, dataset)
                runs[kind].append(out)
                print(f"#   {name} {kind} run {r + 1}: {json.dumps(out)} load {load_average()}",
                      flush=True)
        loads.append(load_average())
        for key, label in (("step_s", "wall per step"),
                           ("machine_cpu_per_step_s", "CPU of all processes per step")):
            t = [o[key] for o in runs["torchrun"]]
            ray = [o[key] for o in runs["ray"]]
            local = [o[key] for o in runs["local"]]
            rows.append((f"{name} model, {label}, ms", spread(t), spread(ray), spread(local),
                         f"{100 * (statistics.median(ray) / statistics.median(t) - 1):+.1f} %",
                         f"{100 * (statistics.median(local) / statistics.median(t) - 1):+.1f} %",
                         "≤ +10 %"))
        for key, label in (("total_s", "whole command, s"),
                           ("total_machine_cpu_s", "whole command, CPU of all processes, s")):
            t, ray, local = (statistics.median(o[key] for o in runs[k])
                             for k in ("torchrun", "ray", "local"))
            rows.append((f"{name} model, {label}", f"{t:.1f}", f"{ray:.1f}", f"{local:.1f}",
                         f"{100 * (ray / t - 1):+.1f} %", f"{100 * (local / t - 1):+.1f} %",
                         "(start-up included)"))
    print(f"# load average during the runs: {' | '.join(loads)}")
    print_table(f"2-worker DDP: Ray Train and local group vs torchrun — "
                f"lognormal-{args.conversations}, batch {args.batch_size}, {args.repeat} runs each "
                f"(median, min–max)",
                ("measure", "torchrun", "Ray Train", "local group", "Ray Train vs torchrun",
                 "local group vs torchrun", "goal"), rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
