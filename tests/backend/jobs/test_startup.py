"""The start-up timeline: phases read back from the job log, in the order they happened, each
once, measured from the job's creation; another user's job is not readable."""
from __future__ import annotations

import io
import time
from datetime import datetime, timedelta, timezone

import pytest

from backend.accounts import users
from backend.accounts.users import ensure_local_user
from backend.core.errors import NotFound
from backend.datasets import service as ds
from backend.jobs import progress as jp
from backend.jobs import service as jobs
from backend.jobs.startup import job_startup, timeline
from ray_jobs.worker.startup import PHASES
from tests.fixtures.paths import SAMPLE_DATA

T0 = datetime(2026, 1, 1, 12, 0, 0, tzinfo=timezone.utc)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


@pytest.mark.parametrize("entries, expected", [
    ([], []),
    ([(at(1), {"phase": "submitted"}), (at(3), {"phase": "driver"})],
     [("submitted", 1.0, 1.0), ("driver", 3.0, 2.0)]),
    # 'at' in the metadata wins over the log line's own timestamp (lines are flushed later)
    ([(at(9), {"phase": "worker_up", "at": at(4).timestamp()}), (at(9), {"phase": "data"})],
     [("worker_up", 4.0, 4.0), ("data", 9.0, 5.0)]),
    # a retried run logs its phases again: the first time counts; unknown phases and plain lines
    # are ignored; the order is the order things happened, not the order lines were written
    ([(at(5), {"phase": "model"}), (at(2), {"phase": "imports"}), (at(7), {"phase": "model"}),
      (at(3), {"phase": "nonsense"}), (at(4), None), (at(6), {"other": 1})],
     [("imports", 2.0, 2.0), ("model", 5.0, 3.0)]),
])
def test_timeline(entries, expected):
    got = [(p.phase, p.since_start_s, p.took_s) for p in timeline(T0, entries)]
    assert got == expected
    assert all(p.label == PHASES[p.phase] for p in timeline(T0, entries))


def test_naive_timestamps_are_utc():
    [p] = timeline(T0.replace(tzinfo=None), [(at(2).replace(tzinfo=None), {"phase": "driver"})])
    assert p.since_start_s == 2.0


def test_job_startup_reads_the_jobs_log_and_checks_access(db):
    me = ensure_local_user()
    data = (SAMPLE_DATA / "sample-v4.jsonl").read_bytes()
    info = ds.upload_dataset(me, io.BytesIO(data), "s.jsonl", "d", size=len(data), submit=False)
    ds.run_validation(info.id)
    job = jobs.create_job(me, info.id, submit=False)
    now = time.time()
    jp.add_logs(job.id, [
        {"level": "INFO", "message": "start-up: data", "metadata": {"phase": "data", "at": now + 3}},
        {"level": "INFO", "message": "plain line"},
        {"level": "INFO", "message": "start-up: driver",
         "metadata": {"phase": "driver", "at": now + 1}},
    ])
    phases = job_startup(me, job.id)
    assert [p.phase for p in phases] == ["driver", "data"]
    assert phases[1].took_s == pytest.approx(2.0, abs=0.01)
    assert phases[0].since_start_s >= 0
    other = users.create_user("other@x.io", "Other", "password-o")
    with pytest.raises(NotFound):
        job_startup(other, job.id)
