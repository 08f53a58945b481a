"""Sweeps end to end on the session's real Ray head with the tiny model: the sweep is one Ray job
(``ray_jobs.sweep``) whose Ray Tune ``Tuner`` runs one real training job per trial; ASHA stops weak
trials; the best is marked with its adapter; cancel leaves nothing running; a killed driver is
reconciled."""
from __future__ import annotations

import time

import psutil
import pytest

from backend.accounts.users import ensure_local_user
from backend.sweeps import service as sweeps
from tests.e2e.test_training_job import _dataset

pytestmark = pytest.mark.ray
TRIAL = ["num_epochs=3", "batch_size=1", "max_seq_length=256", "warmup_steps=0",
         "lora_dropout=0", "validation_fraction=0.3"]


def _wait(me, sweep_id: str, timeout_s: float = 400):
    deadline = time.monotonic() + timeout_s
    while (info := sweeps.get_sweep(me, sweep_id)).status in ("queued", "running"):
        assert time.monotonic() < deadline, info
        time.sleep(1)
    return info


def _trial_pids(me, sweep_id: str) -> list[int]:
    """Live processes that trained this sweep's trials (each logs its pid at ``worker_up``)."""
    from backend.jobs.service import job_logs

    pids = {int(line.metadata["pid"]) for t in sweeps.get_sweep(me, sweep_id).trials
            for line in job_logs(me, t.id, limit=1000)
            if (line.metadata or {}).get("phase") == "worker_up"}
    return [p for p in pids if psutil.pid_exists(p)
            and psutil.Process(p).status() != psutil.STATUS_ZOMBIE]


def _max_overlap(trials) -> int:
    spans = [(t.started_at.timestamp(), t.completed_at.timestamp()) for t in trials
             if t.started_at and t.completed_at]
    events = sorted([(a, 1) for a, _ in spans] + [(b, -1) for _, b in spans])
    now = peak = 0
    for _, d in events:
        now += d
        peak = max(peak, now)
    return peak


def test_asha_sweep_of_six_trials(ray_env, capsys):
    ds = _dataset(capsys)
    me = ensure_local_user()
    t0 = time.monotonic()
    sw = sweeps.create_sweep(me, ds["id"], preset_id="conservative",
                             grid=["learning_rate=3e-2,1e-3,1e-5", "lora_r=4,8"],
                             overrides=TRIAL, max_concurrent=2, scheduler="asha")
    assert sw.external_job_id and sw.trial_count == 6
    done = _wait(me, sw.id)
    took = time.monotonic() - t0
    logs = ray_env.logs(sw.external_job_id)
    assert done.status == "completed", (done.error_message, logs[-3000:])
    counts = done.counts()
    print(f"SWEEP asha 6 trials: {counts} in {took:.0f} s")
    assert counts["active"] == 0 and counts["failed"] == 0, [t.error_message for t in done.trials]
    assert counts["stopped_early"] >= 1 and counts["completed"] >= 1, (
        counts, [(t.error_message, t.current_step, t.total_steps) for t in done.trials],
        logs[-4000:])
    assert all(t.status in ("completed", "cancelled") for t in done.trials), [
        (t.status, t.sweep_trial, t.error_message) for t in done.trials]
    best = [t for t in done.trials if (t.sweep_trial or {}).get("best")]
    assert len(best) == 1 and best[0].id == done.best_job_id and best[0].artifact_id
    completed = [t for t in done.trials if t.status == "completed"]
    assert best[0].current_metrics["validation_loss"] == min(
        t.current_metrics["validation_loss"] for t in completed)
    for t in done.trials:
        if t.sweep_trial["stopped_early"]:
            assert "stopped early by ASHA" in t.error_message
            assert 1 <= t.current_step < t.total_steps and not t.artifact_id
    assert _max_overlap(done.trials) <= 2
    curves = sweeps.sweep_curves(me, done.id)
    assert set(curves) == {t.id for t in done.trials}
    assert ray_env.wait(sw.external_job_id, timeout_s=60) == "SUCCEEDED"


def test_four_trials_two_at_a_time_all_recorded(ray_env, capsys):
    ds = _dataset(capsys)
    me = ensure_local_user()
    t0 = time.monotonic()
    sw = sweeps.create_sweep(me, ds["id"], preset_id="conservative",
                             grid=["learning_rate=1e-3,2e-2", "lora_r=4,8"], overrides=TRIAL,
                             max_concurrent=2)
    done = _wait(me, sw.id)
    print(f"SWEEP fifo 4 trials: {done.counts()} in {time.monotonic() - t0:.0f} s")
    assert done.status == "completed", done.error_message
    assert done.counts()["completed"] == 4 and len(done.trials) == 4
    assert all(t.artifact_id and t.current_step == t.total_steps for t in done.trials)
    assert _max_overlap(done.trials) == 2  # two at a time, never more
    assert sum(bool(t.sweep_trial["best"]) for t in done.trials) == 1
    assert done.best_job_id in {t.id for t in done.trials}


def _started_trials(me, sweep_id: str, n: int, timeout_s: float = 300):
    deadline = time.monotonic() + timeout_s
    while True:
        info = sweeps.get_sweep(me, sweep_id)
        if sum(t.current_step >= 1 for t in info.trials) >= n:
            return info
        assert time.monotonic() < deadline, info
        assert info.status in ("queued", "running"), info.error_message
        time.sleep(0.5)


LONG = [*TRIAL[1:], "num_epochs=100"]  # long enough to be stopped mid-run


def test_cancel_mid_run_leaves_nothing_running(ray_env, capsys):
    ds = _dataset(capsys)
    me = ensure_local_user()
    sw = sweeps.create_sweep(me, ds["id"], preset_id="conservative",
                             grid=["learning_rate=1e-3,2e-2", "lora_r=4,8"], overrides=LONG,
                             max_concurrent=2)
    _started_trials(me, sw.id, 2)
    assert len(_trial_pids(me, sw.id)) >= 2
    t0 = time.monotonic()
    done = sweeps.cancel_sweep(me, sw.id)
    assert done.status == "cancelled"
    assert {t.status for t in done.trials} == {"cancelled"}
    assert ray_env.wait(sw.external_job_id, timeout_s=60) == "STOPPED"
    deadline = time.monotonic() + 60
    while (left := _trial_pids(me, sw.id)) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not left, left
    print(f"SWEEP cancel: no trial process {time.monotonic() - t0:.1f} s after cancel")
    time.sleep(2)
    after = sweeps.get_sweep(me, sw.id)
    assert after.status == "cancelled" and {t.status for t in after.trials} == {"cancelled"}


def test_killed_driver_is_reconciled(ray_env, capsys):
    import signal

    ds = _dataset(capsys)
    me = ensure_local_user()
    sw = sweeps.create_sweep(me, ds["id"], preset_id="conservative",
                             grid=["learning_rate=1e-3,2e-2"], overrides=LONG, max_concurrent=2)
    _started_trials(me, sw.id, 1)
    drivers = [p for p in psutil.process_iter(["cmdline", "name"])
               if "ray_jobs.sweep" in " ".join(p.info.get("cmdline") or [])
               and sw.id in " ".join(p.info.get("cmdline") or [])
               and "python" in (p.info.get("name") or "")]
    assert drivers
    for p in drivers:
        p.send_signal(signal.SIGKILL)
    assert ray_env.wait(sw.external_job_id, timeout_s=60) in ("FAILED", "STOPPED")
    assert sweeps.reconcile_sweeps() == 1
    after = sweeps.get_sweep(me, sw.id)
    assert after.status == "failed" and sw.external_job_id in after.error_message
    assert {t.status for t in after.trials} == {"failed"}
    deadline = time.monotonic() + 60
    while (left := _trial_pids(me, sw.id)) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not left, left
