"""What a running job writes (issue 12): a step trained again replaces its old metric point (the
chart shows the attempt that produced the adapter); nothing is written once the job is cancelled;
the adapter is recorded under the job's one artifact prefix."""
import pytest
from sqlalchemy import func, select

from backend.accounts.users import ensure_local_user
from backend.core.errors import InvalidInput
from backend.db.models import Checkpoint, JobLog, MetricsPoint, MetricsRollup
from backend.db.session import session_scope
from backend.jobs import service as jobs
from backend.jobs.db_sink import DbSink
from tests.backend.jobs.test_jobs import ready_dataset


@pytest.fixture
def me(db):
    return ensure_local_user()


def _points(job_id):
    with session_scope() as s:
        return [(p.step, p.training_loss) for p in s.scalars(
            select(MetricsPoint).where(MetricsPoint.job_id == job_id).order_by(MetricsPoint.step))]


def _count(model, job_id):
    with session_scope() as s:
        return s.scalar(select(func.count()).select_from(model).where(model.job_id == job_id))


def test_retrained_steps_replace_the_failed_attempts_points(me):
    job = jobs.create_job(me, ready_dataset(me).id, submit=False)
    sink = DbSink(job.id)
    sink.stage("training")
    sink.metrics([{"epoch": 1, "step": i, "training_loss": 10.0 + i} for i in range(1, 7)])
    # a restart from scratch (no checkpoint persisted): steps 1.. trained again, no resumed()
    sink.metrics([{"epoch": 1, "step": i, "training_loss": 1.0 + i} for i in range(1, 4)])
    assert _points(job.id) == [(1, 2.0), (2, 3.0), (3, 4.0), (4, 14.0), (5, 15.0), (6, 16.0)]
    sink.resumed(3, 1)  # a restart from the checkpoint at 3: points after it are obsolete
    assert [s for s, _ in _points(job.id)] == [1, 2, 3]
    sink.metrics([{"epoch": 1, "step": 4, "training_loss": 5.0},
                  {"epoch": 1, "step": 4, "training_loss": 4.5}])  # last of a step wins
    sink.metrics([{"epoch": 1, "step": 4, "training_loss": 4.5}])  # resent: same rows
    assert _points(job.id) == [(1, 2.0), (2, 3.0), (3, 4.0), (4, 4.5)]
    with session_scope() as s:
        [rollup] = s.scalars(select(MetricsRollup).where(MetricsRollup.job_id == job.id)).all()
    assert (rollup.points, rollup.loss_min, rollup.loss_max) == (4, 2.0, 4.5)


def test_nothing_is_written_after_cancel(me):
    job = jobs.create_job(me, ready_dataset(me).id, submit=False)
    sink = DbSink(job.id)
    sink.stage("training")
    sink.metrics([{"epoch": 1, "step": 1, "training_loss": 2.0}])
    sink.flush_logs()
    jobs.cancel_job(me, job.id)
    logs_at_cancel = _count(JobLog, job.id)
    sink.log("info", "still training")
    sink.metrics([{"epoch": 1, "step": 2, "training_loss": 1.9}])
    sink.checkpoint(2, 1, 1.9, "file:///tmp/ckpt", 10)
    sink.flush_logs()
    assert _count(JobLog, job.id) == logs_at_cancel
    assert _count(Checkpoint, job.id) == 0
    assert [s for s, _ in _points(job.id)] == [1]
    assert jobs.get_job(me, job.id).status == "cancelled"


def test_completion_refuses_an_adapter_uploaded_elsewhere_or_nowhere(me, tmp_path):
    job = jobs.create_job(me, ready_dataset(me).id, submit=False)
    sink = DbSink(job.id)
    sink.stage("training")
    with pytest.raises(InvalidInput) as err:
        sink.completed({"adapter_dir": str(tmp_path / "on-another-node"),
                        "uploaded": {"prefix": "models/other/", "sizes": {}}})
    assert err.value.code == "artifact_mismatch"
    with pytest.raises(InvalidInput) as err:
        sink.completed({"adapter_dir": str(tmp_path / "on-another-node")})
    assert err.value.code == "adapter_missing"
    assert jobs.get_job(me, job.id).artifact_id is None
