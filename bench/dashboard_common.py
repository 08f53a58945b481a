"""Helpers shared by the dashboard benchmarks (bench/dashboard_bench.py; query, jobs-page and
polling parts): the database switch, a PostgreSQL server, a running job with 100,000 points, the
job's per-second writes, the product's caches, a statement timer, latency percentiles."""
from __future__ import annotations

import os
import random
import shutil
import statistics
import threading
import time
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone

from bench.common import OUT, fresh_home, lognormal_dataset, ready_dataset

POINTS = 100_000
LOG_LINES = 2_000
JOBS = 10_000
BASELINE_JOBS = 20
POLL_S = 3.0


def ms(values: list[float]) -> dict[str, float]:
    xs = sorted(values)
    p = lambda q: xs[min(len(xs) - 1, int(round(q * (len(xs) - 1))))]  # noqa: E731
    return {"n": len(xs), "min": 1000 * xs[0], "p50": 1000 * statistics.median(xs),
            "p95": 1000 * p(0.95), "max": 1000 * xs[-1]}


# ----- environments -------------------------------------------------------------------------------
def use_database(url: str | None) -> None:
    """Point the settings at ``url`` (None: the home's SQLite file). Engines stay cached per URL
    (as in a running server): switching back and forth costs no engine creation or schema
    check."""
    from backend.core.config import reset_settings

    if url:
        os.environ["BRIGHTRUN_DATABASE_URL"] = url
    else:
        os.environ.pop("BRIGHTRUN_DATABASE_URL", None)
    reset_settings()


@contextmanager
def postgres():
    """A PostgreSQL server (tests/fixtures/postgres.py's ``PostgresServer``) with a fresh migrated
    database; yields its URL; stops the server (our process, by its data dir) after."""
    from backend.db.session import upgrade
    from tests.fixtures.postgres import PostgresServer, create_database

    server = PostgresServer()
    try:
        url = create_database(server.url)
        upgrade(url)
        yield url
    finally:
        server.stop("immediate")
        shutil.rmtree(server.dir, ignore_errors=True)


def running_job(user, dataset_id: str, name: str = "bench job") -> str:
    """A job made by ``create_job`` (not submitted to Ray) and moved to running as the recipe
    does."""
    from backend.jobs import service as jobs
    from backend.jobs.progress import set_stage

    job = jobs.create_job(user, dataset_id, preset_id="balanced", hardware_id="cpu-local",
                          workers=1, submit=False, name=name)
    set_stage(job.id, "initializing")
    set_stage(job.id, "training")
    return job.id


def ready_dataset_80(user):
    """The 80-conversation benchmark dataset uploaded and validated: a ready dataset."""
    return ready_dataset(user, lognormal_dataset(OUT / "lognormal-80.jsonl", 80))


def setup_home(prefix: str):
    """A fresh home (SQLite, tiny model) with the local user and a ready dataset."""
    from backend.accounts.users import ensure_local_user

    home = fresh_home(prefix)
    user = ensure_local_user()
    ds = ready_dataset_80(user)
    return home, user, ds


def point_rows(job_id: str, n: int, first: int = 1) -> list[dict]:
    """``n`` metric points shaped as the training loop writes them (validation every 500)."""
    from backend.db.models import new_id

    rng = random.Random(first)
    t0 = datetime.now(timezone.utc) - timedelta(seconds=n)
    rows = []
    for step in range(first, first + n):
        rows.append({"id": new_id(), "job_id": job_id, "epoch": 1 + step * 10 // (POINTS + 1),
                     "step": step, "timestamp": t0 + timedelta(seconds=step - first),
                     "training_loss": 1.5 + 2.0 / (1 + step / 500) + rng.gauss(0, 0.05),
                     "validation_loss": 1.6 + 2.0 / (1 + step / 500) if step % 500 == 0 else None,
                     "learning_rate": 2e-4 * (1 - step / (POINTS + 1)), "gradient_norm": 0.8,
                     "throughput": 2300.0 + rng.random() * 100, "gpu_utilization": None,
                     "tokens_processed": 3000 * step})
    return rows


def bulk_points(job_id: str, n: int) -> float:
    """Insert ``n`` points (COPY on PostgreSQL, executemany on SQLite); returns seconds."""
    from sqlalchemy import insert

    from backend.db.models import JobLog, MetricsPoint, new_id
    from backend.db.session import get_engine

    started = time.perf_counter()
    engine = get_engine()
    rows = point_rows(job_id, n)
    cols = ["id", "job_id", "epoch", "step", "timestamp", "training_loss", "validation_loss",
            "learning_rate", "gradient_norm", "throughput", "gpu_utilization",
            "tokens_processed"]
    if engine.dialect.name == "postgresql":
        raw = engine.raw_connection()
        try:
            with raw.cursor() as cur, cur.copy(
                    f"COPY metrics_points ({', '.join(cols)}) FROM STDIN") as copy:
                for r in rows:
                    copy.write_row([r[c] for c in cols])
            raw.commit()
        finally:
            raw.close()
    else:
        with engine.begin() as conn:
            for i in range(0, n, 10_000):
                conn.execute(insert(MetricsPoint), rows[i:i + 10_000])
    from backend.db.session import session_scope
    from backend.jobs.progress import refresh_rollups

    with session_scope() as s:  # the roll-ups append_metrics keeps (bulk-loaded points: at once)
        refresh_rollups(s, job_id, 0)
    logs = [{"id": new_id(), "job_id": job_id, "level": "WARNING" if i % 50 == 0 else "INFO",
             "message": f"step {i * 50}: loss {1.5 + 1 / (1 + i):.4f}, 2,345 tokens/s",
             "timestamp": datetime.now(timezone.utc) - timedelta(seconds=LOG_LINES - i)}
            for i in range(LOG_LINES)]
    with engine.begin() as conn:
        conn.execute(insert(JobLog), logs)
    with engine.begin() as conn:  # committed: on PostgreSQL, ANALYZE in a rolled-back
        if engine.dialect.name == "postgresql":  # transaction leaves no statistics
            conn.exec_driver_sql("ANALYZE metrics_points")
            conn.exec_driver_sql("ANALYZE job_logs")
        else:
            conn.exec_driver_sql("ANALYZE")
    return time.perf_counter() - started


class StatementTimer:
    """Wall time of every SQL statement run on ``engine`` while active (cursor events)."""

    def __init__(self, engine):
        from sqlalchemy import event

        self.engine, self.event, self.rows = engine, event, []
        self._t = threading.local()

    def _before(self, conn, cursor, statement, parameters, context, executemany):
        self._t.start = time.perf_counter()

    def _after(self, conn, cursor, statement, parameters, context, executemany):
        self.rows.append((statement, parameters, time.perf_counter() - self._t.start))

    def __enter__(self):
        self.event.listen(self.engine, "before_cursor_execute", self._before)
        self.event.listen(self.engine, "after_cursor_execute", self._after)
        return self

    def __exit__(self, *exc):
        self.event.remove(self.engine, "before_cursor_execute", self._before)
        self.event.remove(self.engine, "after_cursor_execute", self._after)


def write_step(job_id: str, step: int) -> None:
    """What the running job writes per second (the Ray job's DbSink): 10 points + progress."""
    from backend.jobs.progress import add_logs, append_metrics, update_progress

    pts = [{k: v for k, v in r.items() if k not in ("id", "job_id")}
           for r in point_rows(job_id, 10, first=step)]
    append_metrics(job_id, pts)
    update_progress(job_id, epoch=10, step=step + 9, total_steps=step + 1000, percent=50.0,
                    current_metrics={"training_loss": pts[-1]["training_loss"]}, eta_s=600)
    add_logs(job_id, [{"level": "INFO", "message": f"step {step + 9}"}])


def clear_caches(job_id: str | None = None) -> None:
    """Empty the product's process-wide caches (of one job): its next job_metrics is a first
    call."""
    from backend.jobs.service import forget_metrics

    forget_metrics(job_id)
