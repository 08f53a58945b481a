"""Dashboard read paths under load: the Monitor's data query, the Jobs page with 10,000 jobs, and
50 browser sessions polling one running job. Results: bench/RESULTS-dashboard.md.

    python bench/dashboard_bench.py                   # all three (~10 min)
    python bench/dashboard_bench.py query             # (a) only (~2 min)
    python bench/dashboard_bench.py jobs-page         # (b) only (~1 min)
    python bench/dashboard_bench.py polling --seconds 60 --sessions 50    # (c) only (~5 min)

(a) **Monitor query** — what one Monitor poll reads for a running job with ``--points``
    (100,000) metric points and 2,000 log lines: ``backend.jobs.service.job_metrics(max_points=1000)``
    (``backend/jobs/metrics.py``), ``get_job`` and ``job_logs(limit=200)``; against the naive
    read of every point (``select … order by step`` → ``MetricsPointInfo`` each). Before each
    round the job writes 10 points and a progress update (``append_metrics``, ``update_progress``,
    as the Ray job does), so ``job_metrics`` recomputes: *steady* (finished buckets kept, only
    the newest points aggregated); then again unchanged (the shared result); then *cold*: the
    process-wide caches emptied (``metrics_query.clear_cache``, ``jobs._metrics_cache``), as for
    the first call in a dashboard process (engine already open). PostgreSQL (a server started
    like ``tests/fixtures/postgres.py`` does, ``fsync=off``) and SQLite (the embedded default) in
    the same run, rounds interleaved. Goal: ≤ 50 ms per ``job_metrics`` on PostgreSQL. Where the
    time goes: every SQL statement of a steady and a cold call timed with SQLAlchemy cursor
    events, ``EXPLAIN ANALYZE`` of the steady call's aggregate.
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
    The process-wide caches are emptied before each phase (each includes its cold start); how
    often ``downsampled_points`` ran is counted. A last phase is the floor, a bench-side
    reference, not product code: ``job_metrics`` replaced by points kept in memory.

Setup writes are the product's where it has them (``create_job``, ``set_stage``,
``append_metrics``), bulk ``COPY``/``executemany`` for the 100,000 points and 10,000 jobs. Prints
markdown tables plus ``#`` lines with raw numbers and the load average; writes only under
bench/out/ (removed at the end). Nothing is mocked; Ray is not needed (the jobs are not
submitted, so the reconciler asks Ray nothing).
"""
from __future__ import annotations

import argparse
import gc
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
    from backend.core.config import reset_settings

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
    from backend.jobs import service as jobs
    from backend.jobs.progress import set_stage

    job = jobs.create_job(user, dataset_id, preset_id="balanced", hardware_id="cpu-local",
                          workers=1, submit=False, name=name)
    set_stage(job.id, "initializing")
    set_stage(job.id, "training")
    return job.id


def setup_home(prefix: str):
    """A fresh home (SQLite, tiny model) with the local user and a ready dataset."""
    from backend.accounts.users import ensure_local_user

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

    from backend.core.schemas import MetricsPointInfo
    from backend.db.models import MetricsPoint
    from backend.db.session import session_scope

    with session_scope() as s:
        return [MetricsPointInfo.model_validate(r) for r in s.scalars(
            select(MetricsPoint).where(MetricsPoint.job_id == job_id).order_by(MetricsPoint.step))]


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
    from backend.jobs import metrics as metrics_query
    from backend.jobs import service as jobs

    if job_id is None:
        metrics_query.clear_cache()
    else:
        metrics_query._forget(job_id)
    with jobs._metrics_lock:
        for key in [k for k in jobs._metrics_cache if job_id in (None, k[0])]:
            del jobs._metrics_cache[key]


def query_round(user, job_id: str, step: int) -> dict[str, float]:
    from backend.jobs import service as jobs

    write_step(job_id, step)  # the job wrote since the last poll: job_metrics recomputes
    out = {}
    for name, fn in (("get_job", lambda: jobs.get_job(user, job_id)),
                     ("job_metrics steady", lambda: jobs.job_metrics(user, job_id, 1000)),
                     ("job_metrics unchanged", lambda: jobs.job_metrics(user, job_id, 1000)),
                     ("job_logs", lambda: jobs.job_logs(user, job_id, limit=200)),
                     ("job_metrics cold", lambda: (clear_caches(job_id),
                                                   jobs.job_metrics(user, job_id, 1000)))):
        t = time.perf_counter()
        fn()
        out[name] = time.perf_counter() - t
    out["poll (the three)"] = out["get_job"] + out["job_metrics steady"] + out["job_logs"]
    t = time.perf_counter()
    naive = naive_points(job_id)
    out["naive: all points"] = time.perf_counter() - t
    out["_naive_n"] = len(naive)
    del naive
    gc.collect()  # its 100,000 objects' garbage would otherwise be collected in a timed call
    return out


def statement_profile(user, job_id: str, step: int, cold: bool):
    """job_metrics once (after a write, so it recomputes; ``cold``: caches emptied first) with
    every statement timed; returns (rows for the table, the statements)."""
    from backend.db.session import get_engine
    from backend.jobs import service as jobs

    write_step(job_id, step)
    if cold:
        clear_caches(job_id)
    with StatementTimer(get_engine()) as timer:
        t = time.perf_counter()
        points = jobs.job_metrics(user, job_id, max_points=1000)
        total = time.perf_counter() - t
    rows = [(" ".join(stmt.split())[:70], secs) for stmt, _params, secs in timer.rows]
    rows.append((f"total job_metrics ({len(points)} points returned)", total))
    rows.append(("→ outside SQL (session, ORM, pydantic)",
                 total - sum(secs for _, _, secs in timer.rows)))
    return rows, timer.rows


def explain(statements) -> str:
    """EXPLAIN (ANALYZE, BUFFERS) of the aggregate among ``statements`` (PostgreSQL)."""
    from backend.db.session import get_engine

    stmt, params = next((s, p) for s, p, _ in statements if "GROUP BY" in s.upper())
    raw = get_engine().raw_connection()
    try:
        with raw.cursor() as cur:
            cur.execute("EXPLAIN (ANALYZE, BUFFERS) " + stmt, params)
            return "\n".join(r[0] for r in cur.fetchall())
    finally:
        raw.close()


def bench_query(rounds: int, points: int) -> list[str]:
    from backend.db.session import dispose_engines

    lines = [f"# (a) load average before: {load()}"]
    home, user, ds = setup_home("dash-query-")
    sqlite_job = running_job(user, ds.id)
    lines.append(f"# sqlite: {points} points + {LOG_LINES} logs inserted in "
                 f"{bulk_points(sqlite_job, points):.1f}s")
    with postgres() as pg_url:
        use_database(pg_url)
        from backend.accounts.users import ensure_local_user

        pg_user = ensure_local_user()
        pg_ds = tb.ready_dataset(pg_user, tb.lognormal_dataset(tb.OUT / "lognormal-80.jsonl", 80))
        pg_job = running_job(pg_user, pg_ds.id)
        lines.append(f"# postgresql: {points} points inserted in "
                     f"{bulk_points(pg_job, points):.1f}s")
        targets = {"postgresql": (pg_url, pg_user, pg_job), "sqlite": (None, user, sqlite_job)}
        results: dict[str, dict[str, list[float]]] = {k: {} for k in targets}
        step = points + 1  # the next step the running job writes
        for name, (url, u, j) in targets.items():  # warm-up: engines
            use_database(url)
            for _ in range(3):
                query_round(u, j, step)
                step += 10
        order = list(targets)
        for r in range(rounds):
            for name in (order if r % 2 == 0 else order[::-1]):
                url, u, j = targets[name]
                use_database(url)
                for key, value in query_round(u, j, step).items():
                    results[name].setdefault(key, []).append(value)
                step += 10
        profiles = {}
        for name, (url, u, j) in targets.items():
            use_database(url)
            for cold in (False, True):
                profiles[name, cold] = statement_profile(u, j, step, cold)
                step += 10
        use_database(pg_url)
        plans = {cold: explain(profiles["postgresql", cold][1]) for cold in (False, True)}
        use_database(None)
        dispose_engines()
    lines.append(f"# (a) load average after: {load()}")
    lines += ["", f"### (a) Monitor data query, running job with {points:,} points, {rounds} "
              "rounds (ms, wall)", "",
              "| call | PostgreSQL p50 | PostgreSQL p95 | SQLite p50 | SQLite p95 | goal |",
              "|---|---|---|---|---|---|"]
    for key in ("job_metrics steady", "job_metrics cold", "job_metrics unchanged", "get_job",
                "job_logs", "poll (the three)", "naive: all points"):
        pg, sq = ms(results["postgresql"][key]), ms(results["sqlite"][key])
        goal = "≤ 50 (PostgreSQL)" if key.startswith("job_metrics") else ""
        lines.append(f"| {key} | {pg['p50']:.1f} | {pg['p95']:.1f} | {sq['p50']:.1f} | "
                     f"{sq['p95']:.1f} | {goal} |")
    lines += ["", f"naive read returns {int(results['postgresql']['_naive_n'][0]):,} points; "
              "job_metrics returns ≤ ~1,200 (≤ 500 buckets × 2 + validation points)."]
    for (name, cold), (rows, _) in profiles.items():
        lines += ["", f"job_metrics statements, one {'cold' if cold else 'steady'} call on "
                  f"{name} (ms):", "", "| statement | ms |", "|---|---|"]
        lines += [f"| `{head}` | {1000 * secs:.1f} |" for head, secs in rows]
    for cold, plan in plans.items():
        lines += ["", f"EXPLAIN ANALYZE of the {'cold' if cold else 'steady'} call's aggregate "
                  "(PostgreSQL):", "", "```", plan, "```"]
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
    from backend.core.config import reset_settings
    from backend.db.session import dispose_engines
    from backend.jobs import service as jobs_service

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
    from app.ui.job_widgets import maybe_reconcile
    from backend.jobs import service as jobs

    t = time.perf_counter()
    maybe_reconcile()
    jobs.get_job(user, job_id)
    jobs.job_metrics(user, job_id, max_points=1000)
    jobs.job_logs(user, job_id, limit=200)
    jobs.job_checkpoints(user, job_id)
    return time.perf_counter() - t


FLOOR: dict = {}


def poll_floor(user, job_id: str) -> float:
    """Bench-side reference, not product code: poll_once with ``job_metrics`` replaced by points
    computed once and kept in memory (no access check either): what is left of a poll."""
    from app.ui.job_widgets import maybe_reconcile
    from backend.jobs import service as jobs

    if job_id not in FLOOR:
        FLOOR[job_id] = jobs.job_metrics(user, job_id, max_points=1000)
    t = time.perf_counter()
    maybe_reconcile()
    jobs.get_job(user, job_id)
    list(FLOOR[job_id])
    jobs.job_logs(user, job_id, limit=200)
    jobs.job_checkpoints(user, job_id)
    return time.perf_counter() - t


class Computations:
    """Times ``downsampled_points`` runs, counts from-scratch reads (instrumentation only)."""

    def __init__(self):
        from backend.jobs import metrics as mq

        self.mq, self.runs, self.scratch = mq, [], 0
        self.real = (mq.downsampled_points, mq._read)

    def __enter__(self):
        def run(*a, **k):
            t = time.perf_counter()
            try:
                return self.real[0](*a, **k)
            finally:
                self.runs.append(time.perf_counter() - t)

        def read(s, key, lo, base):
            self.scratch += base is None
            return self.real[1](s, key, lo, base)
        self.mq.downsampled_points, self.mq._read = run, read
        return self

    def __exit__(self, *exc):
        self.mq.downsampled_points, self.mq._read = self.real


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
    step, times, end = first_step, [], time.monotonic() + seconds
    while time.monotonic() < end:
        t = time.perf_counter()
        write_step(job_id, step)
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
    warm: list[float] = []  # polls started after the first 5 s (the cold start)
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
                late = time.monotonic() - started >= 5.0
                lat = poll(user, job_id)
                with lock:
                    latencies.append(lat)
                    if late:
                        warm.append(lat)
            except Exception as exc:  # noqa: BLE001 - reported, not raised
                with lock:
                    errors.append(f"{type(exc).__name__}: {exc}")
            next_at += POLL_S  # run_every: the next run is due 3 s after this one was due
            next_at = max(next_at, time.monotonic())

    out = tb.OUT / f"dash-writer-{os.getpid()}-{sessions}.json"
    proc = start_writer(url, job_id, seconds, first_step, out)
    threads = [threading.Thread(target=connection_sampler, args=(url, stop, peaks), daemon=True)]
    threads += [threading.Thread(target=session, args=(i,), daemon=True) for i in range(sessions)]
    clear_caches()  # the phase includes its cold start
    cpu, started = time.process_time(), time.monotonic()
    with Computations() as counted:
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
    return {"lat": latencies, "warm": warm, "errors": errors, "peaks": peaks, "writer": wstats,
            "cpu_s": time.process_time() - cpu, "wall_s": seconds, "runs": counted.runs,
            "scratch": counted.scratch}


def bench_polling(sessions: int, seconds: float, points: int) -> list[str]:
    from backend.db.session import dispose_engines, get_engine

    lines = [f"# (c) load average before: {load()}"]
    home = tb.fresh_home("dash-poll-")
    with postgres() as url:
        use_database(url)
        from backend.accounts.users import ensure_local_user

        user = ensure_local_user()
        ds = tb.ready_dataset(user, tb.lognormal_dataset(tb.OUT / "lognormal-80.jsonl", 80))
        job_id = running_job(user, ds.id)
        took = bulk_points(job_id, points)
        lines.append(f"# postgresql: {points} points inserted in {took:.1f}s")
        pool = get_engine().pool
        lines.append(f"# engine pool: {pool.status()}")
        for _ in range(3):
            poll_once(user, job_id)
        phases, step = {}, points + 1
        for label, n, secs, poll in (("1", 1, min(15.0, seconds), poll_once),
                                     (str(sessions), sessions, seconds, poll_once),
                                     (f"{sessions}, floor (bench-side: job_metrics from memory)",
                                      sessions, seconds, poll_floor)):
            phases[label] = polling_phase(url, user, job_id, n, secs, step, poll=poll)
            step += phases[label]["writer"].get("steps", 0)
        loaded = phases[str(sessions)]
        write_step(job_id, step)  # so that the timed poll's job_metrics recomputes
        with StatementTimer(get_engine()) as timer:
            poll_once(user, job_id)
        split = [(" ".join(s.split())[:60], secs) for s, _, secs in timer.rows]
        dispose_engines()
    lines += [f"# (c) load average after: {load()}", "",
              f"### (c) Monitor polling on PostgreSQL, job with {points:,} points, poll every "
              f"{POLL_S:g} s, writer appending (ms, wall)", "",
              "| sessions | polls | p50 | p95 | max | p95 after 5 s | errors | peak connections "
              "(db / all) | writer p95 | client CPU s / wall s | job_metrics computed (from "
              "scratch), p95 ms | goal |", "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    none = {"n": 0, "p50": 0, "p95": 0, "max": 0}
    for label, res in phases.items():
        st, late = (ms(res[k]) if res[k] else none for k in ("lat", "warm"))
        w = ms(res["writer"].get("write_s", [0.0, 0.0])[1:] or [0.0])  # first: engine start
        runs = ms(res["runs"]) if res["runs"] else none
        lines.append(f"| {label} | {st['n']} | {st['p50']:.0f} | {st['p95']:.0f} | "
                     f"{st['max']:.0f} | {late['p95']:.0f} | {len(res['errors'])} | "
                     f"{res['peaks'].get('db', 0)} / {res['peaks'].get('all', 0)} | "
                     f"{w['p95']:.0f} | {res['cpu_s']:.0f} / {res['wall_s']:.0f} | "
                     f"{runs['n']} ({res['scratch']}), {runs['p95']:.0f} | "
                     f"{'baseline' if label == '1' else 'p95 ≤ 200; ≤ 10 + writer'} |")
    lines += ["", "one poll after a write, statement by statement (ms):", "",
              "| statement | ms |", "|---|---|"]
    lines += [f"| `{head}` | {1000 * secs:.1f} |" for head, secs in split]
    for label, res in phases.items():
        if res["errors"]:
            lines += ["", f"errors ({label}): " + "; ".join(sorted(set(res["errors"]))[:3])]
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
        from backend.core.config import reset_settings

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
