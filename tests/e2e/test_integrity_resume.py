"""A lost worker resumes from the newest persisted checkpoint (issue 12, acceptance 3).

Four training jobs on the session's Ray head (tiny model, 2 CPU workers, a checkpoint every 2
steps); in each a worker dies at a different step: twice by the recipe's ``--fail-at-step``
injection (the last rank raises), twice by a real SIGKILL of a rank's process (on this local head
the ranks are processes forked by the job's driver: ``ray_jobs.driver.local_group``). Each must

- resume from the newest checkpoint the job recorded as saved before the failure — and a
  checkpoint is recorded only once Ray Train has committed it, so that is the newest one Ray
  persisted (none recorded later than the step it resumed from);
- end completed with one metric point per step 0..total (none lost, none duplicated), the points
  after the resumed step all written by the surviving attempt.
"""
from __future__ import annotations

import os
import re
import signal
import time
from datetime import timezone

import psutil
import pytest
from sqlalchemy import select

from backend.accounts.users import ensure_local_user
from backend.db.models import Checkpoint, JobLog, MetricsPoint
from backend.db.session import session_scope
from backend.jobs import service as jobs
from tests.e2e.test_training_job import _dataset

pytestmark = [pytest.mark.ray, pytest.mark.slow]
OVERRIDES = ["num_epochs=6", "checkpoint_every_steps=2", "learning_rate=0.02", "batch_size=1",
             "max_seq_length=256", "warmup_steps=0", "lora_dropout=0", "validation_fraction=0.3"]
RESUMED = re.compile(r"resumed from the checkpoint at step (\d+)")
observed: list[dict] = []  # what each case saw (printed at the end with -s)


def _utc(ts):
    return ts if ts.tzinfo else ts.replace(tzinfo=timezone.utc)


def _checkpoint_steps(job_id: str) -> list[tuple[int, object]]:
    with session_scope() as s:
        return [(c.step, _utc(c.created_at)) for c in s.scalars(
            select(Checkpoint).where(Checkpoint.job_id == job_id).order_by(Checkpoint.created_at))]


def _train_worker_pids(job_id: str) -> list[int]:
    """PIDs of the job's live training ranks, in rank order: every rank logs its ``worker_up``
    phase with its pid (forked by the driver on this local head, or Ray Train workers)."""
    with session_scope() as s:
        metas = s.scalars(select(JobLog.metadata_).where(JobLog.job_id == job_id)
                          .order_by(JobLog.timestamp, JobLog.id)).all()
    newest = {m["rank"]: int(m["pid"]) for m in metas if m and m.get("phase") == "worker_up"}
    return [pid for _, pid in sorted(newest.items()) if psutil.pid_exists(pid)]


def _kill_a_worker_after(job_id: str, min_checkpoint: int, which: int) -> int:
    """Once a checkpoint at step >= ``min_checkpoint`` is recorded, SIGKILL one training rank
    (``which``). Returns the newest recorded checkpoint step at the kill."""
    deadline = time.monotonic() + 600
    while True:
        steps = [s for s, _ in _checkpoint_steps(job_id)]
        if steps and max(steps) >= min_checkpoint:
            pids = _train_worker_pids(job_id)
            if len(pids) == 2:
                os.kill(pids[which], signal.SIGKILL)
                return max(steps)
        assert time.monotonic() < deadline, "no checkpoint to kill after"
        time.sleep(0.2)


@pytest.mark.parametrize("how, at", [("fail_at_step", 3), ("fail_at_step", 6),
                                     ("sigkill", 4), ("sigkill", 8)],
                         ids=["inject-3", "inject-6", "sigkill-after-4", "sigkill-after-8"])
def test_lost_worker_resumes_from_newest_persisted_checkpoint(ray_env, ray_cluster, capsys, how,
                                                              at):
    ds = _dataset(capsys)
    me = ensure_local_user()
    info = jobs.create_job(me, ds["id"], preset_id="conservative", workers=2, submit=False,
                           overrides=OVERRIDES)
    extra = ["--fail-at-step", str(at)] if how == "fail_at_step" else []
    sub = ray_env.submit("ray_jobs.train_lora", ["--job-id", info.id, *extra], kind="train",
                         object_id=info.id)
    newest_at_kill = None
    if how == "sigkill":
        newest_at_kill = _kill_a_worker_after(info.id, at, which=at // 4 - 1)
    assert ray_env.wait(sub, timeout_s=900) == "SUCCEEDED", ray_env.logs(sub)[-3000:]
    job = jobs.get_job(me, info.id)
    assert job.status == "completed", job.error_message

    with session_scope() as s:
        modes = {m.get("mode") for m in s.scalars(select(JobLog.metadata_).where(
            JobLog.job_id == info.id)) if m and m.get("phase") == "worker_group"}
        logs = s.execute(select(JobLog.message, JobLog.timestamp).where(
            JobLog.job_id == info.id).order_by(JobLog.timestamp)).all()
        points = s.execute(select(MetricsPoint.step, MetricsPoint.timestamp).where(
            MetricsPoint.job_id == info.id).order_by(MetricsPoint.step)).all()
    assert modes == {"local processes"}, modes  # a 2-worker CPU job on a local head
    resumes = [(int(m.group(1)), _utc(ts)) for msg, ts in logs if (m := RESUMED.search(msg))]
    assert resumes, [msg for msg, _ in logs]
    resumed_step, resumed_at = resumes[0]
    before = [step for step, created in _checkpoint_steps(info.id) if created < resumed_at]
    # the newest checkpoint recorded as saved before the failure is the one it resumed from,
    # and nothing newer had been recorded as saved
    assert before and resumed_step == max(before), (resumed_step, before)
    if how == "fail_at_step":  # the injection raises after step `at`, before its checkpoint
        assert resumed_step == (at - 1) // 2 * 2
    else:
        assert resumed_step >= newest_at_kill
    steps = [p.step for p in points]
    # step 0 is the base model's validation loss, measured once before the first step
    assert steps == list(range(0, job.total_steps + 1))  # none lost, none duplicated
    assert all(_utc(p.timestamp) >= resumed_at for p in points if p.step > resumed_step)
    observed.append({"case": f"{how}@{at}", "resumed_from": resumed_step,
                     "checkpoints_before": before, "total_steps": job.total_steps})
    print("OBSERVED", observed[-1])
