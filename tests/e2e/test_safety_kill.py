"""Acceptance 2 of issue 12: training-job drivers SIGKILLed at different stages, with nothing else
running, all end terminal with a reason within 30 s — through the reconciler the product runs
(``scripts/run`` starts it beside the dashboard), not a reconcile call by the test.

Ten jobs (tiny model, 2 CPU workers: on the product's own local Ray head their ranks are processes
forked by the driver, ray_jobs/driver/local_group.py, and each driver reserves both CPUs, so the jobs run
one after another) are each killed when they reach their assigned stage: the driver process just
started, ``initializing``, the ranks forked (only the driver is killed: its ranks must die with it),
``running``, after the first metric points, after a checkpoint."""
from __future__ import annotations

import json
import os
import signal
import time

import psutil
import pytest
from sqlalchemy import func, select

from backend.cli import main
from backend.core.config import reset_settings
from backend.db.models import Checkpoint, MetricsPoint
from backend.db.session import dispose_engines, session_scope
from tests.e2e.safety_helpers import make_home, scripts_run
from tests.fixtures.paths import SAMPLE_DATA

pytestmark = [pytest.mark.ray, pytest.mark.slow]
TERMINAL_WITHIN_S = 30.0
FAST = ["learning_rate=0.02", "batch_size=1", "max_seq_length=512", "warmup_steps=0",
        "lora_dropout=0", "validation_fraction=0.3", "num_epochs=100", "checkpoint_every_steps=2"]
STAGES = ["driver started", "driver started", "initializing", "initializing",
          "ranks started", "ranks started", "running", "metrics", "metrics", "checkpoint"]


def _count(model, job_id: str) -> int:
    with session_scope() as s:
        return s.scalar(select(func.count()).select_from(model).where(model.job_id == job_id)) or 0


def _drivers(job_id: str) -> list[psutil.Process]:
    """The job's driver and its forked ranks (same command line)."""
    out = []
    for proc in psutil.process_iter(["cmdline"]):
        line = " ".join(proc.info["cmdline"] or [])
        if "ray_jobs.train_lora" in line and job_id in line:
            out.append(proc)
    return out


def _split(procs: list[psutil.Process]) -> tuple[list[psutil.Process], list[psutil.Process]]:
    """(driver and the shell Ray starts it with, ranks): a rank is a Python process whose parent
    is the job's Python driver."""
    python = {p.pid for p in procs if "python" in p.name().lower()}
    ranks = [p for p in procs if p.pid in python and p.ppid() in python]
    return [p for p in procs if p not in ranks], ranks


def _reached(stage: str, job, procs: list[psutil.Process]) -> bool:
    if stage == "driver started":
        return True
    if stage == "initializing":
        return job.status == "initializing"
    if stage == "ranks started":
        return len(_split(procs)[1]) >= 2
    if stage == "running":
        return job.status == "running"
    if stage == "metrics":
        return job.status == "running" and _count(MetricsPoint, job.id) >= 1
    return _count(Checkpoint, job.id) >= 1  # checkpoint


def test_killed_drivers_all_end_terminal_through_the_products_reconciler(
        tmp_path, tiny_model_dir, monkeypatch, capsys):
    from backend.accounts.users import ensure_local_user
    from backend.jobs import service as jobs

    home = make_home(tmp_path, tiny_model_dir)
    with scripts_run(tmp_path, home) as product:
        assert len(product.reconcilers()) == 1
        monkeypatch.setenv("BRIGHTRUN_HOME", str(home))
        monkeypatch.setenv("BRIGHTRUN_RAY_DASHBOARD_PORT", str(product.ray_port))
        for var in ("RAY_ADDRESS", "BRIGHTRUN_DATABASE_URL", "BRIGHTRUN_STORAGE_URL"):
            monkeypatch.delenv(var, raising=False)
        reset_settings()
        dispose_engines()
        try:
            rc = main(["datasets", "upload", str(SAMPLE_DATA / "sample-v4.jsonl"), "--name",
                       "kill", "--wait", "--timeout", "300", "--json"])
            ds = json.loads(capsys.readouterr().out)
            assert rc == 0 and ds["status"] == "ready", ds
            me = ensure_local_user()
            ids = [jobs.create_job(me, ds["id"], preset_id="conservative", workers=2,
                                   overrides=FAST, name=f"kill {i}: {stage}").id
                   for i, stage in enumerate(STAGES)]
            target = dict(zip(ids, STAGES))
            killed: dict[str, tuple[float, str]] = {}  # job id -> (kill time, status then)
            ended: dict[str, float] = {}
            orphans: dict[str, list[psutil.Process]] = {}  # ranks left when only the driver died
            deadline = time.monotonic() + 900
            while len(ended) < len(ids):
                assert time.monotonic() < deadline, {
                    i: (target[i], jobs.get_job(me, i).status) for i in ids if i not in ended}
                for job_id in ids:
                    if job_id in ended:
                        continue
                    job = jobs.get_job(me, job_id)
                    now = time.monotonic()
                    if job_id in killed:
                        if job.status in ("failed", "cancelled", "completed"):
                            ended[job_id] = now
                            assert job.status == "failed" and job.error_message, job
                        else:
                            assert now - killed[job_id][0] < TERMINAL_WITHIN_S + 5, \
                                (target[job_id], job.status, job.current_stage)
                        continue
                    assert job.status not in ("failed", "completed"), (target[job_id],
                                                                       job.error_message)
                    procs = _drivers(job_id)
                    if procs and _reached(target[job_id], job, procs):
                        drivers, ranks = _split(procs)
                        if target[job_id] == "ranks started":
                            orphans[job_id], procs = ranks, drivers
                        for proc in procs:
                            os.kill(proc.pid, signal.SIGKILL)
                        killed[job_id] = (time.monotonic(), job.status)
                time.sleep(0.3)
            waits = {f"{n} {target[i]} ({killed[i][1]})": round(ended[i] - killed[i][0], 1)
                     for n, i in enumerate(ids)}
            print("seconds from SIGKILL to terminal:", waits)
            slow = {k: v for k, v in waits.items() if v > TERMINAL_WITHIN_S}
            assert not slow, f"not terminal within {TERMINAL_WITHIN_S:g} s: {slow}"
            reasons = [jobs.get_job(me, i).error_message for i in ids]
            assert all("Ray job" in r for r in reasons), reasons
            assert len(orphans) == 2 and all(len(r) == 2 for r in orphans.values()), orphans
            gone, alive = psutil.wait_procs([r for rs in orphans.values() for r in rs], timeout=10)
            assert not alive, f"ranks outlived their SIGKILLed driver: {alive}"
        finally:
            dispose_engines()
            reset_settings()
