"""Estimate vs run: estimated and actual steps, tokens and duration of finished local jobs.

    python bench/estimate_bench.py [--jobs 7]

A fresh SQLite home with the tiny model, a local Ray head with 2 CPUs, two datasets (60 and 24
multi-turn conversations of varied length). Jobs run one after another with varied settings (epochs,
batch, accumulation, workers, max_seq_length); before each, the product's estimate is taken as the
Configure page takes it (``estimate_for_dataset``: calibrated from the jobs finished so far) and, as
the baseline in the same invocation, the same estimate without calibration (catalog figures).
After each job the actual figures come from ``backend.jobs.figures.get_figures`` (what every page
shows). Prints one row per job and a markdown table for bench/RESULTS.md.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench import common as tb  # noqa: E402 - fresh homes and ready datasets

OUT = ROOT / "bench" / "out"

JOBS = [  # (dataset, workers, overrides)
    ("d60", 1, ["num_epochs=1", "batch_size=4", "max_seq_length=512"]),
    ("d60", 1, ["num_epochs=2", "batch_size=8", "max_seq_length=512"]),
    ("d24", 1, ["num_epochs=3", "batch_size=2", "gradient_accumulation_steps=2",
                "max_seq_length=256"]),
    ("d60", 2, ["num_epochs=1", "batch_size=4", "max_seq_length=512"]),
    ("d24", 1, ["num_epochs=2", "batch_size=4", "max_seq_length=160"]),
    ("d60", 1, ["num_epochs=1", "batch_size=2", "max_seq_length=128", "eval_every_steps=5"]),
    ("d24", 2, ["num_epochs=2", "batch_size=2", "max_seq_length=512"]),
    ("d60", 1, ["num_epochs=3", "batch_size=4", "max_seq_length=256"]),
    ("d24", 1, ["num_epochs=4", "batch_size=1", "max_seq_length=512"]),
]


def dataset(path: Path, n: int, seed: int) -> Path:
    rng = random.Random(seed)
    words = "order card refund ships tomorrow blocked account limit transfer please why when".split()
    with path.open("w") as fh:
        for i in range(n):
            turns = [{"role": "system", "content": "You are a concise support agent."}]
            for _ in range(rng.randint(1, 4)):
                turns.append({"role": "user", "content": " ".join(
                    rng.choice(words) for _ in range(rng.randint(3, 30)))})
                turns.append({"role": "assistant", "content": " ".join(
                    rng.choice(words) for _ in range(rng.randint(5, 80)))})
            fh.write(json.dumps({"conversation_id": f"c{i}", "turns": turns}) + "\n")
    return path


def run_one(user, ds, workers: int, overrides: list[str], timeout_s: float) -> dict:
    from backend.jobs import estimates
    from backend.jobs import service as jobs
    from backend.jobs.figures import get_figures

    config = estimates.build_config("balanced", overrides=overrides)
    est = estimates.estimate_for_dataset(user, ds.id, config, "cpu-local", workers)
    original = estimates.calibration_samples
    estimates.calibration_samples = lambda s, user_id: []  # the baseline: catalog figures only
    try:
        base = estimates.estimate_for_dataset(user, ds.id, config, "cpu-local", workers)
    finally:
        estimates.calibration_samples = original
    job = jobs.create_job(user, ds.id, preset_id="balanced", overrides=overrides,
                          hardware_id="cpu-local", workers=workers)
    deadline = time.monotonic() + timeout_s
    while jobs.get_job(user, job.id).status not in ("completed", "failed", "cancelled"):
        if time.monotonic() > deadline:
            raise TimeoutError(job.id)
        time.sleep(1.0)
        jobs.reconcile()
    fig = get_figures(user, job.id)
    if fig.status != "completed":
        raise RuntimeError(f"job {job.id} {fig.status}: {jobs.get_job(user, job.id).error_message}")
    return {"est": est, "base": base, "fig": fig, "load": os.getloadavg()[0]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=len(JOBS))
    parser.add_argument("--timeout", type=float, default=900)
    args = parser.parse_args()
    from backend.cluster.head import free_ports, start_head, stop_head

    home = tb.fresh_home("estimate-")
    temp = Path(tempfile.mkdtemp(prefix="brt-est-", dir="/tmp"))
    head = start_head(temp, free_ports(1)[0], num_cpus=2)
    rows = []
    try:
        os.environ.update(RAY_ADDRESS=head.address, RAY_AUTH_MODE="disabled")
        from backend.accounts.users import ensure_local_user
        from backend.core.config import reset_settings

        reset_settings()
        user = ensure_local_user()
        sets = {"d60": tb.ready_dataset(user, dataset(home / "d60.jsonl", 60, 1)),
                "d24": tb.ready_dataset(user, dataset(home / "d24.jsonl", 24, 2))}
        for i, (name, workers, overrides) in enumerate(JOBS[:args.jobs]):
            r = run_one(user, sets[name], workers, overrides, args.timeout)
            est, base, fig = r["est"], r["base"], r["fig"]
            row = {"job": i + 1, "dataset": name, "workers": workers,
                   "settings": " ".join(overrides), "calibrated_from": est["calibrated_from"],
                   "steps": (est["total_steps"], fig.actual["total_steps"]),
                   "held_out": (est["validation_conversations"],
                                fig.actual["validation_conversations"]),
                   "tokens": (est["tokens_to_train"], fig.tokens_processed),
                   "duration": (round(est["duration_s"], 1), round(base["duration_s"], 1),
                                round(fig.total_seconds, 1)),
                   "ratio_calibrated": round(fig.total_seconds / est["duration_s"], 3),
                   "ratio_catalog": round(fig.total_seconds / base["duration_s"], 3),
                   "load": round(r["load"], 2)}
            rows.append(row)
            print(json.dumps(row), flush=True)
    finally:
        stop_head(head)
        shutil.rmtree(temp, ignore_errors=True)
        shutil.rmtree(home, ignore_errors=True)
    print("\n| job | dataset | workers | settings | calibrated from | steps est / run | held out "
          "est / run | tokens est / run | duration est (calibrated) / est (catalog) / run, s | "
          "run ÷ est calibrated | run ÷ est catalog | load |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['job']} | {r['dataset']} | {r['workers']} | {r['settings']} | "
              f"{r['calibrated_from']} | {r['steps'][0]} / {r['steps'][1]} | "
              f"{r['held_out'][0]} / {r['held_out'][1]} | {r['tokens'][0]:,} / {r['tokens'][1]:,} | "
              f"{r['duration'][0]} / {r['duration'][1]} / {r['duration'][2]} | "
              f"{r['ratio_calibrated']} | {r['ratio_catalog']} | {r['load']} |")


if __name__ == "__main__":
    main()
