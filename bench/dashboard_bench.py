"""Dashboard read paths under load: the Monitor's data query, the Jobs page with 10,000 jobs, and
50 browser sessions polling one running job. Results: bench/RESULTS-dashboard.md.

    python bench/dashboard_bench.py                   # all three (~10 min)
    python bench/dashboard_bench.py query             # (a) only (~2 min)
    python bench/dashboard_bench.py jobs-page         # (b) only (~1 min)
    python bench/dashboard_bench.py polling --seconds 60 --sessions 50    # (c) only (~5 min)

(a) **Monitor query** — what one Monitor poll reads for a job with ``--points`` (100,000) metric
    points and 2,000 log lines: ``backend.jobs.job_metrics(max_points=1000)`` (the downsampling
    query of ``backend/metrics_query.py``), ``get_job`` and ``job_logs(limit=200)``; against the
    naive read of every point (``select … order by step`` → ``MetricsPointInfo`` each).
    PostgreSQL (a server started like ``tests/fixtures/postgres.py`` does, ``fsync=off``) and
    SQLite (the embedded default) in the same run, rounds interleaved. Goal: ≤ 50 ms per
    ``job_metrics`` on PostgreSQL. Where the time goes: every SQL statement timed with SQLAlchemy
    cursor events, a cProfile, ``get_job`` part by part, ``EXPLAIN ANALYZE`` of the aggregate,
    and what-if timings of rewritten statements / extra indexes on the same data (run by hand in
    the bench database; the product is not changed).
(b) **Jobs page** — ``AppTest.from_file(app/main.py)`` switched to ``pages/jobs.py`` (as
    tests/pages do) for a user with 10,000 jobs vs the same page with 20 jobs (baseline), homes
    interleaved; the timed call is the ``run()`` that renders the Jobs page, then a plain rerun.
    Goal: ≤ 1 s. The page's service calls (``list_jobs`` per page, the compare pool) are timed
    alone too.
(c) **50 sessions polling** — ``--sessions`` threads in one process (one Streamlit server: one
    engine, ``pool_size=5, max_overflow=5``), each doing every 3 s what the Monitor fragment
    (``pages/monitor.py::_live``) reads per poll: ``maybe_reconcile()`` (process-wide, at most
    every 10 s), ``get_job``, ``job_metrics(max_points=1000)``, ``job_logs(limit=200)``,
    ``job_checkpoints``; for ``--seconds`` (60) against PostgreSQL on the 100,000-point job while
    a writer *process* (own engine, as the Ray job has) appends 10 points + progress + a log line
    every second. A 1-session phase first is the baseline. Reports p50/p95/max of the poll
    latency (goal p95 ≤ 200 ms) and the peak of ``pg_stat_activity`` client connections to the
    database, sampled every 0.25 s (bounded: ≤ 10 from the dashboard's pool + the writer's).
    Two what-if phases follow (bench-side prototypes, labelled as such): ``job_metrics`` shared
    by all sessions per (job, step), and the floor (``job_metrics`` from memory).

Setup writes are the product's where it has them (``create_job``, ``set_stage``,
``append_metrics``), bulk ``COPY``/``executemany`` for the 100,000 points and 10,000 jobs. Prints
markdown tables plus ``#`` lines with raw numbers and the load average; writes only under
bench/out/ (removed at the end). Nothing is mocked; Ray is not needed (the jobs are not
submitted, so the reconciler asks Ray nothing).
"""
from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench import train_bench as tb  # noqa: E402

POINTS = 100_000
LOG_LINES = 2_000
JOBS = 10_000
BASELINE_JOBS = 20
POLL_S = 3.0


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


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
    from backend.config import reset_settings

    if url:
        os.environ["BRIGHTRUN_DATABASE_URL"] = url
    else:
        os.environ.pop("BRIGHTRUN_DATABASE_URL", None)
    reset_settings()


@contextmanager
def postgres():
    """A PostgreSQL server (tests/fixtures/postgres.py's ``_Server``) with a fresh migrated
    database; yields its URL; stops the server (our process, by its data dir) after."""
    from backend.db.session import upgrade
    from tests.fixtures.postgres import _create_database, _Server

    server = _Server()
    try:
        url = _create_database(server.url)
        upgrade(url)
        yield url
    finally:
        server.stop("immediate")
        shutil.rmtree(server.dir, ignore_errors=True)


def running_job(user, dataset_id: str, name: str = "bench job") -> str:
    """A job made by ``create_job`` (not submitted to Ray) and moved to running as the recipe
    does."""
    from backend import jobs
    from backend.job_progress import set_stage

    job = jobs.create_job(user, dataset_id, preset_id="balanced", hardware_id="cpu-local",
                          workers=1, submit=False, name=name)
    set_stage(job.id, "initializing")
    set_stage(job.id, "training")
    return job.id


def setup_home(prefix: str):
    """A fresh home (SQLite, tiny model) with the local user and a ready dataset."""
    from backend.users import ensure_local_user

    home = tb.fresh_home(prefix)
    user = ensure_local_user()
    ds = tb.ready_dataset(user, tb.lognormal_dataset(tb.OUT / "lognormal-80.jsonl", 80))
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
    logs = [{"id": new_id(), "job_id": job_id, "level": "WARNING" if i % 50 == 0 else "INFO",
             "message": f"step {i * 50}: loss {1.5 + 1 / (1 + i):.4f}, 2,345 tokens/s",
             "timestamp": datetime.now(timezone.utc) - timedelta(seconds=LOG_LINES - i)}
            for i in range(LOG_LINES)]
    with engine.begin() as conn:
        conn.execute(insert(JobLog), logs)
    with engine.connect() as conn:
        if engine.dialect.name == "postgresql":
            conn.exec_driver_sql("ANALYZE metrics_points")
            conn.exec_driver_sql("ANALYZE job_logs")
        else:
            conn.exec_driver_sql("ANALYZE")
    return time.perf_counter() - started


# ----- (a) the Monitor's data query ---------------------------------------------------------------
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


def naive_points(job_id: str):
    """Every point of the job, as a page without downsampling would read them."""
    from sqlalchemy import select

    from backend.db.models import MetricsPoint
    from backend.db.session import session_scope
    from backend.schemas import MetricsPointInfo

    with session_scope() as s:
        return [MetricsPointInfo.model_validate(r) for r in s.scalars(
            select(MetricsPoint).where(MetricsPoint.job_id == job_id).order_by(MetricsPoint.step))]


def query_round(user, job_id: str) -> dict[str, float]:
    from backend import jobs

    out = {}
    for name, fn in (("get_job", lambda: jobs.get_job(user, job_id)),
                     ("job_metrics", lambda: jobs.job_metrics(user, job_id, max_points=1000)),
                     ("job_logs", lambda: jobs.job_logs(user, job_id, limit=200))):
        t = time.perf_counter()
        fn()
        out[name] = time.perf_counter() - t
    out["poll (the three)"] = sum(out.values())
    t = time.perf_counter()
    naive = naive_points(job_id)
    out["naive: all points"] = time.perf_counter() - t
    out["_naive_n"] = len(naive)
    return out


def statement_profile(user, job_id: str) -> list[tuple[str, float]]:
    """job_metrics once with every statement timed; the total minus SQL is Python-side."""
    from backend import jobs
    from backend.db.session import get_engine

    engine = get_engine()
    with StatementTimer(engine) as timer:
        t = time.perf_counter()
        points = jobs.job_metrics(user, job_id, max_points=1000)
        total = time.perf_counter() - t
    rows = []
    for statement, _params, secs in timer.rows:
        head = " ".join(statement.split())[:70]
        rows.append((head, secs))
    rows.append((f"total job_metrics ({len(points)} points returned)", total))
    sql = sum(secs for _, _, secs in timer.rows)
    rows.append(("→ outside SQL (session, ORM, pydantic)", total - sql))
    return rows


def python_profile(user, job_id: str, calls: int = 10) -> list[str]:
    """cProfile of ``calls`` × (get_job + job_metrics): the functions with the most own time."""
    import cProfile
    import pstats

    from backend import jobs

    prof = cProfile.Profile()
    prof.enable()
    for _ in range(calls):
        jobs.get_job(user, job_id)
        jobs.job_metrics(user, job_id, max_points=1000)
    prof.disable()
    stats = pstats.Stats(prof)
    total = sum(v[2] for v in stats.stats.values())
    rows = sorted(stats.stats.items(), key=lambda kv: kv[1][2], reverse=True)[:12]
    out = [f"cProfile, {calls} × (get_job + job_metrics), own time of the top functions "
           f"(total {1000 * total / calls:.1f} ms per pair):", "",
           "| function | calls per pair | own ms per pair |", "|---|---|---|"]
    for (filename, line, func), (_cc, nc, tt, _ct, _callers) in rows:
        where = "/".join(Path(filename).parts[-2:]) if filename != "~" else "builtin"
        out.append(f"| `{where}:{line} {func}` | {nc / calls:.0f} | {1000 * tt / calls:.2f} |")
    return out


def _pg_time(cur, sql: str, params: dict, repeats: int = 7) -> float:
    """Median seconds of ``sql`` (rows fetched) over ``repeats`` runs after one warm-up."""
    cur.execute(sql, params)
    cur.fetchall()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        cur.execute(sql, params)
        cur.fetchall()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


AGG_COLUMNS = ("min(step), max(step), min(training_loss), max(training_loss), avg(learning_rate), "
               "avg(throughput), avg(gradient_norm), max(epoch), max(timestamp), "
               "max(tokens_processed), avg(gpu_utilization)")


def what_if_sql(user, job_id: str, points: int) -> list[str]:
    """What-if on PostgreSQL (same data, statements run by hand, the product untouched): the
    three statements of ``downsampled_points`` as they are, and rewritten / with indexes."""
    from backend import jobs
    from backend.db.session import get_engine

    engine = get_engine()
    with StatementTimer(engine) as timer:
        jobs.job_metrics(user, job_id, max_points=1000)
    current = {}
    for stmt, params, _ in timer.rows:
        text = stmt.upper()
        if "GROUP BY" in text:
            current["aggregate"] = (stmt, params)
        elif "MIN(METRICS_POINTS.STEP)" in text:
            current["count"] = (stmt, params)
        elif "VALIDATION_LOSS IS NOT NULL" in text:
            current["validation"] = (stmt, params)
    width = max(1, -(-points // 500))
    p = {"job": job_id, "lo": 1, "w": width, "lim": 1001}
    int_agg = (f"SELECT (step - %(lo)s) / %(w)s AS b, {AGG_COLUMNS} FROM metrics_points "
               "WHERE job_id = %(job)s GROUP BY b ORDER BY b")
    limited_count = ("SELECT min(step), max(step), (SELECT count(*) FROM (SELECT 1 FROM "
                     "metrics_points WHERE job_id = %(job)s LIMIT %(lim)s) t) FROM metrics_points "
                     "WHERE job_id = %(job)s")
    val = ("SELECT * FROM metrics_points WHERE job_id = %(job)s AND validation_loss IS NOT NULL "
           "ORDER BY step LIMIT 1000")
    rows: list[tuple[str, float]] = []
    raw = engine.raw_connection()
    try:
        raw.driver_connection.autocommit = True
        with raw.cursor() as cur:
            for name in ("count", "aggregate", "validation"):
                stmt, params = current[name]
                rows.append((f"{name}: as the product runs it", _pg_time(cur, stmt, params)))
            rows.append(("count: min/max + count capped at max_points+1 (LIMIT 1001)",
                         _pg_time(cur, limited_count, p)))
            rows.append(("aggregate: integer bucket `(step - lo) / width` (no numeric floor)",
                         _pg_time(cur, int_agg, p)))
            last = {**p, "hi": points - width}
            rows.append(("incremental: aggregate only the points after the last complete bucket "
                         "(`step > hi`, ≤ one bucket) via the (job_id, step) unique index",
                         _pg_time(cur, f"SELECT (step - %(lo)s) / %(w)s AS b, {AGG_COLUMNS} FROM "
                                       "metrics_points WHERE job_id = %(job)s AND step > %(hi)s "
                                       "GROUP BY b ORDER BY b", last)))
            cur.execute("CREATE INDEX whatif_val ON metrics_points (job_id, step) "
                        "WHERE validation_loss IS NOT NULL")
            cur.execute("CREATE INDEX whatif_cover ON metrics_points (job_id, step) INCLUDE "
                        "(training_loss, learning_rate, throughput, gradient_norm, epoch, "
                        "timestamp, tokens_processed, gpu_utilization)")
            cur.execute("VACUUM ANALYZE metrics_points")
            rows.append(("validation: + partial index (job_id, step) WHERE validation_loss IS "
                         "NOT NULL", _pg_time(cur, val, p)))
            rows.append(("count (LIMIT 1001) + covering index", _pg_time(cur, limited_count, p)))
            rows.append(("aggregate: integer bucket + covering index (job_id, step) INCLUDE "
                         "(metric columns), index-only scan", _pg_time(cur, int_agg, p)))
            cur.execute("EXPLAIN ANALYZE " + int_agg, p)
            plan = [r[0] for r in cur.fetchall()]
            cur.execute("DROP INDEX whatif_val")
            cur.execute("DROP INDEX whatif_cover")
    finally:
        raw.driver_connection.autocommit = False
        raw.close()
    out = ["What-if on the same PostgreSQL data (statement only, median of 7, ms):", "",
           "| statement | ms |", "|---|---|"]
    out += [f"| {name} | {1000 * secs:.1f} |" for name, secs in rows]
    out += ["", "plan of the integer-bucket aggregate with the covering index:", "", "```",
            *plan, "```"]
    return out


def get_job_breakdown(user, job_id: str, repeats: int = 15) -> list[str]:
    """Where get_job's time goes: the job row, the dataset row it loads for its name, the
    pydantic conversion, against reading only the dataset's name."""
    from sqlalchemy import select

    from backend import jobs
    from backend.db.models import Dataset, TrainingJob
    from backend.db.session import session_scope
    from backend.schemas import JobInfo

    parts: dict[str, list[float]] = {}

    def select_one():
        with session_scope() as s:
            s.execute(select(1))

    def timed(name, fn):
        t = time.perf_counter()
        fn()
        parts.setdefault(name, []).append(time.perf_counter() - t)

    for _ in range(repeats):
        timed("get_job (whole)", lambda: jobs.get_job(user, job_id))
        with session_scope() as s:
            timed("session.get(TrainingJob)", lambda: s.get(TrainingJob, job_id))
            row = s.get(TrainingJob, job_id)
            timed("JobInfo.model_validate(row)", lambda: JobInfo.model_validate(row))
            timed("session.get(Dataset) (what _info does for the name)",
                  lambda: s.get(Dataset, row.dataset_id))
            timed("select(Dataset.name) only",
                  lambda: s.scalar(select(Dataset.name).where(Dataset.id == row.dataset_id)))
        timed("session_scope + SELECT 1 (pool checkout, pre-ping, commit)", select_one)
    out = ["get_job, part by part (PostgreSQL, median ms):", "", "| part | ms |", "|---|---|"]
    out += [f"| {k} | {1000 * statistics.median(v):.1f} |" for k, v in parts.items()]
    return out


def explain_aggregate(user, job_id: str) -> str:
    """EXPLAIN ANALYZE of the downsampling GROUP BY (PostgreSQL): the plan's timing lines."""
    from backend import jobs
    from backend.db.session import get_engine

    engine = get_engine()
    with StatementTimer(engine) as timer:
        jobs.job_metrics(user, job_id, max_points=1000)
    stmt, params = next((s, p) for s, p, _ in timer.rows if "GROUP BY" in s.upper())
    raw = engine.raw_connection()
    try:
        with raw.cursor() as cur:
            cur.execute("EXPLAIN (ANALYZE, BUFFERS) " + stmt, params)
            plan = [r[0] for r in cur.fetchall()]
    finally:
        raw.close()
    return "\n".join(plan)


def bench_query(rounds: int, points: int) -> list[str]:
    from backend.db.session import dispose_engines

    lines = [f"# (a) load average before: {load()}"]
    home, user, ds = setup_home("dash-query-")
    sqlite_job = running_job(user, ds.id)
    lines.append(f"# sqlite: {points} points + {LOG_LINES} logs inserted in "
                 f"{bulk_points(sqlite_job, points):.1f}s")
    with postgres() as pg_url:
        use_database(pg_url)
        from backend.users import ensure_local_user

        pg_user = ensure_local_user()
        pg_ds = tb.ready_dataset(pg_user, tb.lognormal_dataset(tb.OUT / "lognormal-80.jsonl", 80))
        pg_job = running_job(pg_user, pg_ds.id)
        lines.append(f"# postgresql: {points} points inserted in "
                     f"{bulk_points(pg_job, points):.1f}s")
        targets = {"postgresql": (pg_url, pg_user, pg_job), "sqlite": (None, user, sqlite_job)}
        results: dict[str, dict[str, list[float]]] = {k: {} for k in targets}
        for name, (url, u, j) in targets.items():  # warm-up: engines, caches
            use_database(url)
            for _ in range(3):
                query_round(u, j)
        order = list(targets)
        for r in range(rounds):
            for name in (order if r % 2 == 0 else order[::-1]):
                url, u, j = targets[name]
                use_database(url)
                for key, value in query_round(u, j).items():
                    results[name].setdefault(key, []).append(value)
        use_database(pg_url)
        profile = statement_profile(pg_user, pg_job)
        plan = explain_aggregate(pg_user, pg_job)
        py_profile = python_profile(pg_user, pg_job)
        breakdown = get_job_breakdown(pg_user, pg_job)
        what_if = what_if_sql(pg_user, pg_job, points)
        use_database(None)
        sqlite_profile = statement_profile(user, sqlite_job)
        dispose_engines()
    lines.append(f"# (a) load average after: {load()}")
    lines.append("")
    lines.append(f"### (a) Monitor data query, job with {points:,} points, {rounds} rounds "
                 "(ms, wall)")
    lines.append("")
    lines.append("| call | PostgreSQL p50 | PostgreSQL p95 | SQLite p50 | SQLite p95 | goal |")
    lines.append("|---|---|---|---|---|---|")
    for key in ("job_metrics", "get_job", "job_logs", "poll (the three)", "naive: all points"):
        pg, sq = ms(results["postgresql"][key]), ms(results["sqlite"][key])
        goal = "≤ 50 (PostgreSQL)" if key == "job_metrics" else ""
        lines.append(f"| {key} | {pg['p50']:.1f} | {pg['p95']:.1f} | {sq['p50']:.1f} | "
                     f"{sq['p95']:.1f} | {goal} |")
    n_naive = int(results["postgresql"]["_naive_n"][0])
    lines.append("")
    lines.append(f"naive read returns {n_naive:,} points; job_metrics returns ≤ ~1,200 "
                 "(500 buckets × 2 + validation points).")
    for label, prof in (("PostgreSQL", profile), ("SQLite", sqlite_profile)):
        lines.append("")
        lines.append(f"job_metrics statements, one call on {label} (ms):")
        lines.append("")
        lines.append("| statement | ms |")
        lines.append("|---|---|")
        for head, secs in prof:
            lines.append(f"| `{head}` | {1000 * secs:.1f} |")
    lines.append("")
    lines += py_profile
    lines.append("")
    lines += breakdown
    lines.append("")
    lines += what_if
    lines.append("")
    lines.append("EXPLAIN ANALYZE of the downsampling aggregate (PostgreSQL):")
    lines.append("")
    lines.append("```")
    lines.append(plan)
    lines.append("```")
    for name in ("postgresql", "sqlite"):
        for key, values in results[name].items():
            if not key.startswith("_"):
                lines.append(f"# raw {name} {key}: " + " ".join(f"{1000 * v:.1f}" for v in values))
    shutil.rmtree(home, ignore_errors=True)
    return lines


# ----- (b) the Jobs page with 10,000 jobs ---------------------------------------------------------
def clone_jobs(template_id: str, count: int) -> None:
    """``count`` jobs copied from a job ``create_job`` made: statuses and ages spread, a few
    running."""
    from sqlalchemy import insert, select

    from backend.db.models import TrainingJob, new_id
    from backend.db.session import get_engine, session_scope

    with session_scope() as s:
        tpl = s.scalar(select(TrainingJob).where(TrainingJob.id == template_id))
        base = {c.key: getattr(tpl, c.key) for c in TrainingJob.__table__.columns}
    now = datetime.now(timezone.utc)
    statuses = ["completed"] * 7 + ["failed", "cancelled", "queued"]
    rows = []
    for i in range(count):
        status = "running" if i < 3 else statuses[i % len(statuses)]
        created = now - timedelta(minutes=10 * (i + 1))
        row = dict(base, id=new_id(), name=f"run {i:05d}", status=status,
                   current_stage={"completed": "completed", "running": "training"}.get(
                       status, "queued"),
                   progress=100.0 if status == "completed" else 40.0 if status == "running" else 0,
                   created_at=created, queued_at=created, updated_at=created,
                   started_at=None if status == "queued" else created + timedelta(minutes=1),
                   completed_at=created + timedelta(minutes=9)
                   if status in ("completed", "failed", "cancelled") else None,
                   external_job_id=None, artifact_id=None, current_cost=0.12, final_cost=None)
        rows.append(row)
    with get_engine().begin() as conn:
        for i in range(0, count, 2000):
            conn.execute(insert(TrainingJob), rows[i:i + 2000])


def jobs_page_once() -> tuple[float, float, str | None]:
    """(render of the Jobs page after switching to it, a plain rerun) in seconds, and the first
    exception if any."""
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(ROOT / "app" / "main.py"), default_timeout=60)
    at.run(timeout=60)
    at.switch_page("../pages/jobs.py")
    t = time.perf_counter()
    at.run(timeout=60)
    first = time.perf_counter() - t
    t = time.perf_counter()
    at.run(timeout=60)
    rerun = time.perf_counter() - t
    error = str(at.exception[0].message) if at.exception else None
    titles = [e.value for e in at.title]
    if "Training jobs" not in titles:
        error = error or f"not on the Jobs page: {titles}"
    return first, rerun, error


def bench_jobs_page(rounds: int, jobs_count: int = JOBS) -> list[str]:
    from backend import jobs as jobs_service
    from backend.config import reset_settings
    from backend.db.session import dispose_engines

    lines = [f"# (b) load average before: {load()}"]
    homes = {}
    for label, count in (("baseline", BASELINE_JOBS), ("big", jobs_count)):
        home, user, ds = setup_home(f"dash-jobs-{label}-")
        template = running_job(user, ds.id, name="template")
        t = time.perf_counter()
        clone_jobs(template, count - 1)
        lines.append(f"# {label}: {count} jobs in {home} (insert {time.perf_counter() - t:.1f}s)")
        homes[label] = (home, user)

    def enter(label: str):  # engines stay cached per URL, as in a running server
        os.environ["BRIGHTRUN_HOME"] = str(homes[label][0])
        reset_settings()
        return homes[label][1]

    results: dict[str, dict[str, list[float]]] = {k: {} for k in homes}
    errors = []
    for label in homes:  # warm-up: imports, engines, the page's first compile
        enter(label)
        jobs_page_once()
    order = list(homes)
    for r in range(rounds):
        for label in (order if r % 2 == 0 else order[::-1]):
            user = enter(label)
            first, rerun, error = jobs_page_once()
            if error:
                errors.append(f"{label}: {error}")
            res = results[label]
            res.setdefault("Jobs page run (after switch)", []).append(first)
            res.setdefault("Jobs page rerun", []).append(rerun)
            for name, fn in (("list_jobs (page of 20)", lambda: jobs_service.list_jobs(
                    user, per_page=20)), ("list_jobs (compare pool, 100)",
                                          lambda: jobs_service.list_jobs(user, per_page=100))):
                t = time.perf_counter()
                fn()
                res.setdefault(name, []).append(time.perf_counter() - t)
    dispose_engines()
    lines.append(f"# (b) load average after: {load()}")
    lines.append("")
    lines.append(f"### (b) Jobs page, SQLite (embedded default), {rounds} rounds (ms, wall)")
    lines.append("")
    lines.append(f"| measure | {BASELINE_JOBS} jobs p50 | {jobs_count:,} jobs p50 | "
                 f"{jobs_count:,} jobs max | goal |")
    lines.append("|---|---|---|---|---|")
    for key in results["big"]:
        b, big = ms(results["baseline"][key]), ms(results["big"][key])
        goal = "≤ 1000" if key.startswith("Jobs page run") else ""
        lines.append(f"| {key} | {b['p50']:.0f} | {big['p50']:.0f} | {big['max']:.0f} | {goal} |")
    if errors:
        lines.append("")
        lines.append("page exceptions: " + "; ".join(sorted(set(errors))))
    for label in homes:
        for key, values in results[label].items():
            lines.append(f"# raw {label} {key}: " + " ".join(f"{1000 * v:.0f}" for v in values))
        shutil.rmtree(homes[label][0], ignore_errors=True)
    return lines


# ----- (c) 50 sessions polling --------------------------------------------------------------------
def poll_once(user, job_id: str) -> float:
    """What the Monitor fragment reads per poll (pages/monitor.py::_live)."""
    from app.job_widgets import maybe_reconcile
    from backend import jobs

    t = time.perf_counter()
    maybe_reconcile()
    jobs.get_job(user, job_id)
    jobs.job_metrics(user, job_id, max_points=1000)
    jobs.job_logs(user, job_id, limit=200)
    jobs.job_checkpoints(user, job_id)
    return time.perf_counter() - t


class SharedMetrics:
    """WHAT-IF prototype (bench only, not product code): ``job_metrics`` computed once per
    (job, current step, status) and shared by every session of the process, one computation at a
    time per job (single flight). The access check stays per session (``get_job``)."""

    def __init__(self, per_step: bool = True):
        self.lock, self.entries, self.locks, self.computed = threading.Lock(), {}, {}, 0
        self.per_step = per_step  # False: computed once, never refreshed (the floor)

    def get(self, user, job):
        from backend import jobs

        key = (job.current_step, job.status) if self.per_step else None
        with self.lock:
            hit = self.entries.get(job.id)
            if hit and hit[0] == key:
                return hit[1]
            job_lock = self.locks.setdefault(job.id, threading.Lock())
        with job_lock:
            hit = self.entries.get(job.id)
            if hit and hit[0] == key:
                return hit[1]
            points = jobs.job_metrics(user, job.id, max_points=1000)
            self.entries[job.id] = (key, points)
            self.computed += 1
            return points


SHARED = SharedMetrics()
FROZEN = SharedMetrics(per_step=False)


def poll_once_shared(user, job_id: str, shared: SharedMetrics = SHARED) -> float:
    """poll_once with the what-if shared job_metrics."""
    from app.job_widgets import maybe_reconcile
    from backend import jobs

    t = time.perf_counter()
    maybe_reconcile()
    job = jobs.get_job(user, job_id)
    shared.get(user, job)
    jobs.job_logs(user, job_id, limit=200)
    jobs.job_checkpoints(user, job_id)
    return time.perf_counter() - t


def connection_sampler(url: str, stop: threading.Event, peaks: dict) -> None:
    import psycopg
    from sqlalchemy.engine import make_url

    u = make_url(url)
    with psycopg.connect(host=u.host, port=u.port, user=u.username, dbname=u.database,
                         autocommit=True) as conn:
        while not stop.is_set():
            n_db, n_all = conn.execute(
                "SELECT count(*) FILTER (WHERE datname = current_database()), count(*) "
                "FROM pg_stat_activity WHERE backend_type = 'client backend' "
                "AND pid <> pg_backend_pid()").fetchone()
            peaks["db"] = max(peaks.get("db", 0), n_db)
            peaks["all"] = max(peaks.get("all", 0), n_all)
            peaks.setdefault("samples", []).append(n_db)
            time.sleep(0.25)


def writer(job_id: str, seconds: float, first_step: int) -> dict:
    """The training job's writes, in this (separate) process with its own engine, as the Ray job
    has: 10 points, progress and a log line every second. Returns the write times."""
    from backend.job_progress import add_logs, append_metrics, update_progress

    step, times, end = first_step, [], time.monotonic() + seconds
    while time.monotonic() < end:
        t = time.perf_counter()
        pts = [{k: v for k, v in r.items() if k not in ("id", "job_id")}
               for r in point_rows(job_id, 10, first=step)]
        append_metrics(job_id, pts)
        update_progress(job_id, epoch=10, step=step + 9, total_steps=step + 1000, percent=50.0,
                        current_metrics={"training_loss": pts[-1]["training_loss"]}, eta_s=600)
        add_logs(job_id, [{"level": "INFO", "message": f"step {step + 9}"}])
        step += 10
        times.append(time.perf_counter() - t)
        time.sleep(max(0.0, 1.0 - (time.perf_counter() - t)))
    return {"write_s": times, "steps": step - first_step}


def start_writer(url: str, job_id: str, seconds: float, first_step: int, out: Path):
    env = dict(os.environ, BRIGHTRUN_DATABASE_URL=url)
    return subprocess.Popen([sys.executable, __file__, "_writer", "--job-id", job_id,
                             "--seconds", str(seconds), "--first-step", str(first_step),
                             "--out", str(out)], cwd=ROOT, env=env)


def polling_phase(url: str, user, job_id: str, sessions: int, seconds: float,
                  first_step: int, poll=poll_once) -> dict:
    stop = threading.Event()
    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    peaks: dict = {}

    def session(i: int) -> None:
        rng = random.Random(i)
        next_at = time.monotonic() + rng.random() * POLL_S  # sessions opened at random moments
        while not stop.is_set():
            stop.wait(max(0.0, next_at - time.monotonic()))
            if stop.is_set():
                break
            try:
                lat = poll(user, job_id)
                with lock:
                    latencies.append(lat)
            except Exception as exc:  # noqa: BLE001 - reported, not raised
                with lock:
                    errors.append(f"{type(exc).__name__}: {exc}")
            next_at += POLL_S  # run_every: the next run is due 3 s after this one was due
            next_at = max(next_at, time.monotonic())

    out = tb.OUT / f"dash-writer-{os.getpid()}-{sessions}.json"
    proc = start_writer(url, job_id, seconds, first_step, out)
    threads = [threading.Thread(target=connection_sampler, args=(url, stop, peaks), daemon=True)]
    threads += [threading.Thread(target=session, args=(i,), daemon=True) for i in range(sessions)]
    cpu = time.process_time()
    for t in threads:
        t.start()
    time.sleep(seconds)
    stop.set()
    for t in threads:
        t.join(timeout=60)
    try:
        proc.wait(timeout=120)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    wstats = json.loads(out.read_text()) if out.exists() else {}
    out.unlink(missing_ok=True)
    return {"lat": latencies, "errors": errors, "peaks": peaks, "writer": wstats,
            "cpu_s": time.process_time() - cpu, "wall_s": seconds}


def bench_polling(sessions: int, seconds: float, points: int) -> list[str]:
    from backend.db.session import dispose_engines, get_engine

    lines = [f"# (c) load average before: {load()}"]
    home = tb.fresh_home("dash-poll-")
    with postgres() as url:
        use_database(url)
        from backend.users import ensure_local_user

        user = ensure_local_user()
        ds = tb.ready_dataset(user, tb.lognormal_dataset(tb.OUT / "lognormal-80.jsonl", 80))
        job_id = running_job(user, ds.id)
        took = bulk_points(job_id, points)
        lines.append(f"# postgresql: {points} points inserted in {took:.1f}s")
        pool = get_engine().pool
        lines.append(f"# engine pool: {pool.status()}")
        for _ in range(3):
            poll_once(user, job_id)
        base = polling_phase(url, user, job_id, 1, min(15.0, seconds), points + 1)
        loaded = polling_phase(url, user, job_id, sessions, seconds,
                               points + 1 + base["writer"].get("steps", 0) + 100)
        shared = polling_phase(url, user, job_id, sessions, seconds,
                               points + 1 + base["writer"].get("steps", 0)
                               + loaded["writer"].get("steps", 0) + 200, poll=poll_once_shared)
        shared["computed"] = SHARED.computed
        floor = polling_phase(url, user, job_id, sessions, seconds,
                              points + 1 + 3 * 100 + base["writer"].get("steps", 0)
                              + loaded["writer"].get("steps", 0)
                              + shared["writer"].get("steps", 0),
                              poll=lambda u, j: poll_once_shared(u, j, FROZEN))
        with StatementTimer(get_engine()) as timer:
            poll_once(user, job_id)
        split = [(" ".join(s.split())[:60], secs) for s, _, secs in timer.rows]
        dispose_engines()
    lines.append(f"# (c) load average after: {load()}")
    lines.append("")
    lines.append(f"### (c) Monitor polling on PostgreSQL, job with {points:,} points, poll every "
                 f"{POLL_S:g} s, writer appending (ms, wall)")
    lines.append("")
    lines.append("| sessions | polls | p50 | p95 | max | errors | peak connections (db / all) | "
                 "writer p95 | client CPU s / wall s | goal |")
    lines.append("|---|---|---|---|---|---|---|---|---|---|")
    for label, res in (("1", base), (str(sessions), loaded),
                       (f"{sessions}, what-if: job_metrics shared per step", shared),
                       (f"{sessions}, floor: job_metrics from memory", floor)):
        st = ms(res["lat"]) if res["lat"] else {"n": 0, "p50": 0, "p95": 0, "max": 0}
        w = ms(res["writer"].get("write_s", [0.0, 0.0])[1:] or [0.0])  # first: engine start
        lines.append(f"| {label} | {st['n']} | {st['p50']:.0f} | {st['p95']:.0f} | "
                     f"{st['max']:.0f} | {len(res['errors'])} | {res['peaks'].get('db', 0)} / "
                     f"{res['peaks'].get('all', 0)} | {w['p95']:.0f} | "
                     f"{res['cpu_s']:.0f} / {res['wall_s']:.0f} | "
                     f"{'baseline' if label == '1' else 'p95 ≤ 200; ≤ 10 + writer'} |")
    lines.append("")
    lines.append(f"what-if row: job_metrics computed {shared['computed']} times for "
                 f"{len(shared['lat'])} polls (once per new step of the writer). floor row: "
                 "computed once, never refreshed — what is left of a poll when job_metrics costs "
                 "nothing (get_job, job_logs, job_checkpoints, reconcile).")
    lines.append("")
    lines.append("one poll, statement by statement (ms):")
    lines.append("")
    lines.append("| statement | ms |")
    lines.append("|---|---|")
    for head, secs in split:
        lines.append(f"| `{head}` | {1000 * secs:.1f} |")
    for label, res in (("current", loaded), ("what-if", shared), ("floor", floor)):
        if res["errors"]:
            lines.append("")
            lines.append(f"errors ({label}): " + "; ".join(sorted(set(res["errors"]))[:3]))
    lines.append("# raw latencies (ms): " + " ".join(f"{1000 * v:.0f}" for v in loaded["lat"]))
    lines.append("# connection samples (db): " + " ".join(map(str, loaded["peaks"].get(
        "samples", []))))
    shutil.rmtree(home, ignore_errors=True)
    return lines


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("which", nargs="?", default="all",
                    choices=("all", "query", "jobs-page", "polling", "_writer"))
    ap.add_argument("--points", type=int, default=POINTS, help="metric points of the job")
    ap.add_argument("--rounds", type=int, default=20, help="(a) rounds, interleaved")
    ap.add_argument("--page-rounds", type=int, default=5, help="(b) rounds, interleaved")
    ap.add_argument("--jobs", type=int, default=JOBS, help="(b) jobs of the big home")
    ap.add_argument("--sessions", type=int, default=50, help="(c) concurrent sessions")
    ap.add_argument("--seconds", type=float, default=60.0, help="(c) polling duration")
    ap.add_argument("--job-id", help=argparse.SUPPRESS)
    ap.add_argument("--first-step", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.which == "_writer":  # (c)'s writer process
        from backend.config import reset_settings

        reset_settings()
        Path(args.out).write_text(json.dumps(writer(args.job_id, args.seconds,
                                                    args.first_step)))
        return 0
    import logging

    logging.basicConfig(level=logging.WARNING)
    lines = [f"# dashboard bench, {time.strftime('%Y-%m-%d %H:%M')}, {os.cpu_count()} CPUs, "
             f"load average {load()}"]
    if args.which in ("all", "query"):
        lines += bench_query(args.rounds, args.points)
    if args.which in ("all", "jobs-page"):
        lines += bench_jobs_page(args.page_rounds, args.jobs)
    if args.which in ("all", "polling"):
        lines += bench_polling(args.sessions, args.seconds, args.points)
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
