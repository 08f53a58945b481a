"""Estimate calibration uses only the user's own finished jobs on the same hardware: another user's
jobs never shape (or show up in) an estimate."""
from __future__ import annotations

from backend.accounts.users import create_user
from backend.jobs import service as jobs
from tests.pages.conftest import make_dataset
from tests.pages.job_helpers import finished_job


def _calibrated(user, dataset_id, hardware="cpu-local") -> tuple[int, str]:
    est = jobs.estimate_for_dataset(user, dataset_id, jobs.build_config("balanced"), hardware, 1)
    return est["calibrated_from"], " ".join(est["assumptions"])


def test_calibration_from_own_jobs_only(db, tmp_path):
    ann = create_user("ann@x.io", "Ann", "password-ann-1")
    bob = create_user("bob@x.io", "Bob", "password-bob-1")
    ann_ds, bob_ds = make_dataset(ann, "ann data"), make_dataset(bob, "bob data")
    finished_job(ann, ann_ds.id, tmp_path, name="ann run 1")
    finished_job(ann, ann_ds.id, tmp_path, name="ann run 2")
    n, notes = _calibrated(ann, ann_ds.id)
    assert n == 2 and "calibrated from 2 finished job(s)" in notes
    n, notes = _calibrated(bob, bob_ds.id)  # Ann's jobs are not Bob's calibration
    assert n == 0 and "calibrated" not in notes
    assert _calibrated(ann, ann_ds.id, "A100-80GB")[0] == 0  # other hardware: not used
    finished_job(bob, bob_ds.id, tmp_path, name="bob run")
    assert _calibrated(bob, bob_ds.id)[0] == 1
    assert _calibrated(ann, ann_ds.id)[0] == 2
