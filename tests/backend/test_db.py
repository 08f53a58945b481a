"""Store tests: run on SQLite, and on PostgreSQL when BRIGHTRUN_TEST_DATABASE_URL is set (CI)."""
import pytest
from sqlalchemy import inspect, select

from backend.accounts.users import ensure_local_user
from backend.core.config import reset_settings
from backend.core.errors import Conflict, DatabaseError
from backend.db.models import MetricsPoint, TrainingJob
from backend.db.session import dispose_engines, get_engine, session_scope, upgrade

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
    from tests.fixtures.postgres import create_database
    url = create_database(pg_server.url)
    upgrade(url)
    from backend.db.session import make_engine
    eng = make_engine(url)
    try:
        assert TABLES <= set(inspect(eng).get_table_names())
        cols = {c["name"]: c for c in inspect(eng).get_columns("training_jobs")}
        assert "JSONB" in str(cols["hyperparameters"]["type"]).upper()
    finally:
        eng.dispose()


def _upgrade_to(url: str, revision: str) -> None:
    from alembic import command

    from backend.db.session import _alembic_config, make_engine
    eng = make_engine(url)
    try:
        with eng.begin() as conn:
            cfg = _alembic_config(url)
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, revision)
    finally:
        eng.dispose()


def _schema_matches_models(eng) -> None:
    """No difference between the migrated schema and the models; the read indexes exist."""
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    from backend.db.models import Base
    with eng.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), Base.metadata) == []
    val = {i["name"]: i for i in inspect(eng).get_indexes("metrics_points")}[
        "ix_metrics_job_val_step"]
    assert val["column_names"] == ["job_id", "step"]
    where = val.get("dialect_options", {}).get(f"{eng.dialect.name}_where")
    assert where is None or "validation_loss IS NOT NULL" in str(where)  # older SQLite: not shown
    jobs_idx = {i["name"]: i["column_names"] for i in inspect(eng).get_indexes("training_jobs")}
    assert jobs_idx["ix_jobs_user_created"] == ["user_id", "created_at"]


def test_auto_created_schema_matches_models(db):
    from backend.db.session import current_revision, head_revision
    assert current_revision(get_engine()) == head_revision() == "0010_sweeps"
    _schema_matches_models(get_engine())


def test_database_at_0001_refused_then_upgraded(brightrun_home, monkeypatch):
    """An embedded database made by the previous release: refused with the command, then
    ``brightrun db upgrade`` (session.upgrade) takes it to head, keeping its rows."""
    from sqlalchemy import text

    from backend.db.models import User
    from backend.db.session import head_revision, make_engine
    brightrun_home.mkdir(parents=True, exist_ok=True)
    url = f"sqlite:///{brightrun_home / 'old.db'}"
    _upgrade_to(url, "0001")
    old = make_engine(url)
    with old.begin() as c:
        c.execute(text("INSERT INTO users (id, email, name, role, is_local, created_at, "
                       "updated_at) VALUES ('u1', 'old@x.io', 'Old', 'user', 0, "
                       "'2026-01-01 00:00:00', '2026-01-01 00:00:00')"))
    old.dispose()
    monkeypatch.setenv("BRIGHTRUN_DATABASE_URL", url)
    reset_settings()
    dispose_engines()
    with pytest.raises(DatabaseError) as err:
        get_engine()
    assert err.value.code == "schema_out_of_date"
    assert "at 0001" in str(err.value) and f"needs {head_revision()}" in str(err.value)
    assert upgrade(url) == head_revision()
    with session_scope() as s:  # the engine now opens; the old rows are there
        assert s.scalar(select(User.email).where(User.id == "u1")) == "old@x.io"
    eng = make_engine(url)
    try:
        _schema_matches_models(eng)
    finally:
        eng.dispose()
    dispose_engines()


@pytest.mark.postgres
def test_upgrade_from_0001_on_postgres(pg_server):
    from backend.db.session import current_revision, head_revision, make_engine
    from tests.fixtures.postgres import create_database
    url = create_database(pg_server.url)
    _upgrade_to(url, "0001")
    assert upgrade(url) == head_revision()
    eng = make_engine(url)
    try:
        assert current_revision(eng) == head_revision()
        _schema_matches_models(eng)
    finally:
        eng.dispose()


def test_upgrade_to_0003_fills_the_rollups_from_stored_points(brightrun_home):
    """Metric points stored before the roll-up table existed are summarised by the upgrade."""
    from sqlalchemy import insert
    from sqlalchemy.orm import Session

    from backend.db.models import Dataset, MetricsPoint, MetricsRollup, TrainingJob, User, new_id
    from backend.db.session import head_revision, make_engine
    brightrun_home.mkdir(parents=True, exist_ok=True)
    url = f"sqlite:///{brightrun_home / 'at-0002.db'}"
    _upgrade_to(url, "0002")
    eng = make_engine(url)
    try:
        with Session(eng) as s, s.begin():
            u = User(email="u@x.io", name="u")
            s.add(u)
            s.flush()
            d = Dataset(user_id=u.id, name="d", storage_bucket="local", storage_path="k/d",
                        file_name="d.jsonl")
            s.add(d)
            s.flush()
            # a Core insert names only these columns (and the defaulted ones): the ORM's would
            # name columns later migrations add (training_jobs.sweep_id)
            job = TrainingJob(user_id=u.id, dataset_id=d.id, preset_id="balanced",
                              hyperparameters={}, gpu_config={}, total_epochs=1, id=new_id())
            s.execute(insert(TrainingJob).values(
                id=job.id, user_id=u.id, dataset_id=d.id, preset_id="balanced",
                hyperparameters={}, gpu_config={}, total_epochs=1))
            s.add_all(MetricsPoint(job_id=job.id, epoch=0, step=step, training_loss=1.0 / step,
                                   learning_rate=None if step % 2 else 1e-4)
                      for step in range(1, 201))
            job_id = job.id
        assert upgrade(url) == head_revision()
        with Session(eng) as s:
            rows = s.scalars(select(MetricsRollup).where(MetricsRollup.job_id == job_id)
                             .order_by(MetricsRollup.block)).all()
    finally:
        eng.dispose()
    assert [(r.block, r.points, r.step_min, r.step_max) for r in rows] == [
        (0, 63, 1, 63), (1, 64, 64, 127), (2, 64, 128, 191), (3, 9, 192, 200)]
    assert rows[0].loss_max == 1.0 and rows[0].lr_n == 31
