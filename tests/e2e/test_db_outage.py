"""A PostgreSQL outage of a few seconds while a real training job runs loses no metric point and
duplicates none (writes from rank 0 retry until the database is back)."""
import io
import time
from datetime import datetime, timezone

import pytest
from sqlalchemy import select

from backend.accounts.users import ensure_local_user
from backend.core.errors import DatabaseError
from backend.datasets import service as datasets
from backend.db.models import MetricsPoint
from backend.db.session import dispose_engines, session_scope
from backend.jobs import service as jobs
from tests.fixtures.paths import SAMPLE_DATA

SHARED = SAMPLE_DATA
pytestmark = [pytest.mark.ray, pytest.mark.postgres]


def _steps(job_id):
    with session_scope() as s:
        return s.scalars(select(MetricsPoint.step).where(MetricsPoint.job_id == job_id)
                         .order_by(MetricsPoint.step)).all()


def _poll(fn, default=None):
    try:
        return fn()
    except DatabaseError:
        dispose_engines()
        return default


def test_short_outage_loses_no_metric_point(pg_server, pg_url, ray_env):
    if not hasattr(pg_server, "stop"):
        pytest.skip("needs a PostgreSQL server started by the test run (it is stopped and "
                    "restarted); BRIGHTRUN_TEST_DATABASE_URL points at an external one")
    me = ensure_local_user()
    data = (SHARED / "sample-v4.jsonl").read_bytes()
    d = datasets.upload_dataset(me, io.BytesIO(data), "s.jsonl", "outage", size=len(data),
                                submit=False)
    datasets.run_validation(d.id)
    job = jobs.create_job(me, d.id, preset_id="conservative", workers=2, overrides=[
        "num_epochs=12", "learning_rate=0.02", "batch_size=1", "max_seq_length=512",
        "warmup_steps=0", "validation_fraction=0.3", "eval_every_steps=1000"])
    deadline = time.monotonic() + 300
    while not _steps(job.id):
        assert time.monotonic() < deadline, jobs.get_job(me, job.id)
        assert jobs.get_job(me, job.id).status in ("queued", "initializing", "running")
        time.sleep(0.5)
    pg_server.stop("fast")
    try:
        time.sleep(6)
    finally:
        pg_server.start()
    back = datetime.now(timezone.utc)
    dispose_engines()
    deadline = time.monotonic() + 400
    while _poll(lambda: jobs.get_job(me, job.id).status, "running") not in (
            "completed", "failed", "cancelled"):
        assert time.monotonic() < deadline
        time.sleep(1)
    done = jobs.get_job(me, job.id)
    assert done.status == "completed", (done.error_message, jobs.job_logs(me, job.id)[-10:])
    assert _steps(job.id) == list(range(0, done.total_steps + 1))  # 0: the base model
    completed = done.completed_at if done.completed_at.tzinfo else \
        done.completed_at.replace(tzinfo=timezone.utc)
    assert completed > back  # the job was still running (and writing) during the outage
    warned = [line.message for line in jobs.job_logs(me, job.id, limit=1000)]
    assert warned  # logs survived too
