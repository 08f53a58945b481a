"""Store tests: run on SQLite, and on PostgreSQL when BRIGHTRUN_TEST_DATABASE_URL is set (CI)."""
import pytest
from sqlalchemy import inspect, select

from backend.config import reset_settings
from backend.db.models import MetricsPoint, TrainingJob
from backend.db.session import dispose_engines, get_engine, session_scope, upgrade
from backend.errors import Conflict, DatabaseError
from backend.users import ensure_local_user

TABLES = {"users", "datasets", "training_jobs", "metrics_points", "checkpoints", "job_logs",
          "model_artifacts", "cost_records", "notifications"}


def test_empty_embedded_database_created_automatically(db):
    assert TABLES <= set(inspect(get_engine()).get_table_names())


def _job(user_id, dataset_id):
    return TrainingJob(user_id=user_id, dataset_id=dataset_id, preset_id="balanced",
                       hyperparameters={"lr": 1e-4}, gpu_config={"gpu_type": "cpu-local"},
                       total_epochs=1)


def _dataset(s, user_id):
    from backend.db.models import Dataset
    d = Dataset(user_id=user_id, name="d", storage_bucket="local", storage_path=f"k/{user_id}",
                file_name="d.jsonl")
    s.add(d)
    s.flush()
    return d


def test_metrics_unique_on_job_step(db):
    user = ensure_local_user()
    with session_scope() as s:
        job = _job(user.id, _dataset(s, user.id).id)
        s.add(job)
        s.flush()
        job_id = job.id
        s.add(MetricsPoint(job_id=job_id, epoch=0, step=1, training_loss=1.0))
    with pytest.raises(Conflict):
        with session_scope() as s:
            s.add(MetricsPoint(job_id=job_id, epoch=0, step=1, training_loss=2.0))
    with session_scope() as s:  # the failed write left nothing and the first one is intact
        rows = s.scalars(select(MetricsPoint).where(MetricsPoint.job_id == job_id)).all()
        assert [r.training_loss for r in rows] == [1.0]


def test_json_columns_round_trip(db):
    user = ensure_local_user()
    with session_scope() as s:
        job = _job(user.id, _dataset(s, user.id).id)
        job.current_metrics = {"training_loss": 1.5, "nested": {"a": [1, 2]}}
        s.add(job)
        s.flush()
        jid = job.id
    with session_scope() as s:
        assert s.get(TrainingJob, jid).current_metrics["nested"]["a"] == [1, 2]


def test_foreign_keys_enforced(db):
    with pytest.raises(Conflict):
        with session_scope() as s:
            s.add(_job("no-such-user", "no-such-dataset"))


def test_out_of_date_schema_refused(brightrun_home, monkeypatch):
    from sqlalchemy import create_engine, text
    path = brightrun_home / "old.db"
    brightrun_home.mkdir(parents=True, exist_ok=True)
    eng = create_engine(f"sqlite:///{path}")
    with eng.begin() as c:
        c.execute(text("CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL)"))
        c.execute(text("INSERT INTO alembic_version VALUES ('0000')"))
        c.execute(text("CREATE TABLE users (id TEXT)"))
    monkeypatch.setenv("BRIGHTRUN_DATABASE_URL", f"sqlite:///{path}")
    reset_settings()
    dispose_engines()
    with pytest.raises(DatabaseError) as err:
        get_engine()
    assert err.value.code == "schema_out_of_date" and "brightrun db upgrade" in str(err.value)
    dispose_engines()


def test_unreachable_database_is_one_clear_line(brightrun_home, monkeypatch):
    monkeypatch.setenv("BRIGHTRUN_DATABASE_URL", "postgresql+psycopg://u:secret@127.0.0.1:1/x")
    reset_settings()
    dispose_engines()
    with pytest.raises(DatabaseError) as err:
        get_engine()
    msg = str(err.value)
    assert err.value.code == "database_unreachable" and "\n" not in msg and "secret" not in msg
    dispose_engines()


@pytest.mark.postgres
def test_upgrade_creates_every_table_on_empty_postgres(pg_server):
    from tests.fixtures.postgres import _create_database
    url = _create_database(pg_server.url)
    upgrade(url)
    from backend.db.session import make_engine
    eng = make_engine(url)
    try:
        assert TABLES <= set(inspect(eng).get_table_names())
        cols = {c["name"]: c for c in inspect(eng).get_columns("training_jobs")}
        assert "JSONB" in str(cols["hyperparameters"]["type"]).upper()
    finally:
        eng.dispose()
