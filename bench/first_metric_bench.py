"""3. **first-metric** of bench/train_bench.py (run it as ``python bench/train_bench.py
first-metric``; the method: that file's docstring): ``create_job`` → the first ``metrics_points``
row on a running Ray head, with a breakdown."""
from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

from bench.common import (
    OUT,
    encoded_train,
    fresh_home,
    load_average,
    lognormal_dataset,
    outside_ray,
    ready_dataset,
    tiny_model,
    train_config,
)


def job_snapshot(job_id: str) -> tuple[str, str | None, int]:
    from sqlalchemy import func, select

    from backend.db.models import MetricsPoint, TrainingJob
    from backend.db.session import session_scope

    with session_scope() as s:
        row = s.get(TrainingJob, job_id)
        points = s.scalar(select(func.count()).select_from(MetricsPoint)
                          .where(MetricsPoint.job_id == job_id))
        return row.status, row.current_stage, int(points or 0)


LOG_MARKERS = (("Running entrypoint", "Ray runs the driver (runtime env ready)"),
               ("Connected to Ray cluster", "driver joined the cluster (recipe read, "
                                            "Ray Train imported)"),
               ("Started training worker group", "worker group started"),
               ("Moving model to device", "worker loaded the model (prepare_model)"))


def time_first_metric(user, dataset_id: str, overrides: list[str], timeout_s: float,
                      log_to: Path | None = None, workers: int = 1) -> dict[str, float]:
    """create_job, then poll the job row every 20 ms; seconds from the call to each change."""
    from backend.cluster.gateway import get_gateway
    from backend.jobs import service as jobs

    submit_job, submitted = jobs.submit_job, {}

    def timed_submit(job_id: str):
        submitted["start"] = time.perf_counter() - t0
        try:
            return submit_job(job_id)
        finally:
            submitted["end"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    jobs.submit_job = timed_submit
    try:
        job = jobs.create_job(user, dataset_id, preset_id="balanced", overrides=overrides,
                              hardware_id="cpu-local", workers=workers)
    finally:
        jobs.submit_job = submit_job
    marks = {"checks + estimate + job row (create_job before submit)": submitted["start"],
             "Ray Job API submit returned": submitted["end"],
             "create_job returned": time.perf_counter() - t0}
    last, sub, seen, polls = None, jobs.get_job(user, job.id).external_job_id, set(), 0
    while time.perf_counter() - t0 < timeout_s:
        status, stage, points = job_snapshot(job.id)
        now = time.perf_counter() - t0
        if (status, stage) != last:
            marks.setdefault(f"job row: status {status} / stage {stage}", now)
            last = (status, stage)
        if points or status in ("failed", "cancelled", "completed"):
            marks["first metrics_points row" if points else f"ended {status}"] = now
            break
        polls += 1
        if sub and polls % 25 == 0:  # the Ray job's log, every ~0.5 s (lines arrive ~1 s late)
            text = get_gateway().logs(sub)
            for marker, label in LOG_MARKERS:
                if marker in text and marker not in seen:
                    seen.add(marker)
                    marks[f"log: {label}"] = now
        time.sleep(0.02)
    marks = dict(sorted(marks.items(), key=lambda kv: kv[1]))
    if jobs.get_job(user, job.id).status not in ("failed", "cancelled", "completed"):
        jobs.cancel_job(user, job.id)
    if sub:
        get_gateway().wait(sub, timeout_s=120)
        if log_to:
            log_to.write_text(get_gateway().logs(sub))
    return marks


def setup_parts(dataset: Path) -> dict[str, float]:
    """Seconds this process takes for the worker's setup pieces (an estimate of their share)."""
    path = tiny_model()
    cfg = train_config(path, max_seq_length=2048, validation_fraction=0.1)  # the preset's values
    t = time.perf_counter()
    tok, encoded = encoded_train(path, dataset, cfg)
    t_data = time.perf_counter() - t
    from ray_jobs.worker import loop as lw
    from ray_jobs.worker.sinks import NullSink
    from ray_jobs.worker.state import Run

    run = Run(cfg=cfg, loop={}, rank=0, world=1, sink=NullSink(), tokenizer=tok,
                  train=encoded, total_steps=100)
    t = time.perf_counter()
    with outside_ray():
        lw.load_model(run, str(path))
    return {"tokenise dataset (in this process)": t_data,
            "load model + PEFT wrap (in this process)": time.perf_counter() - t}


def first_metric(args: argparse.Namespace) -> list[tuple]:
    from backend.accounts.users import ensure_local_user
    from backend.cluster.gateway import free_ports, start_head, stop_head

    dataset = lognormal_dataset(OUT / f"lognormal-{args.conversations}.jsonl", args.conversations)
    home = fresh_home("first-metric-")
    temp = Path(tempfile.mkdtemp(prefix="brt-bench-", dir="/tmp"))
    head = start_head(temp, free_ports(1)[0], num_cpus=2)
    rows: list[tuple] = []
    try:
        os.environ.update(RAY_ADDRESS=head.address, RAY_AUTH_MODE="disabled")
        from backend.core.config import reset_settings

        reset_settings()
        user = ensure_local_user()
        ds = ready_dataset(user, dataset)
        overrides = ["num_epochs=1", "warmup_steps=0"]
        runs = [(w, i) for w in args.workers for i in range(args.jobs)]
        for n, (workers, i) in enumerate(runs):
            marks = time_first_metric(user, ds.id, overrides, args.timeout,
                                      OUT / f"first-metric-w{workers}-job{i + 1}.log"
                                      if args.keep_logs else None, workers=workers)
            print(f"#   {workers} worker(s), job {i + 1}: {json.dumps(marks)} "
                  f"load {load_average()}", flush=True)
            label = (f"{workers} worker(s): " + ("first job on the new head" if n == 0
                                                 else f"job {i + 1} (warm head)"))
            previous = 0.0
            for what, at in marks.items():
                rows.append((label, what, f"{at:.2f}", f"+{at - previous:.2f}"))
                previous = at
        for what, secs in setup_parts(dataset).items():
            rows.append(("for reference", what, "", f"{secs:.2f}"))
    finally:
        stop_head(head)
        shutil.rmtree(temp, ignore_errors=True)
        shutil.rmtree(home, ignore_errors=True)
    return rows
