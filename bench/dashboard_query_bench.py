"""(a) **Monitor query** of bench/dashboard_bench.py (run it as ``python bench/dashboard_bench.py
query``; the method: that file's docstring)."""
from __future__ import annotations

import gc
import shutil
import time

from bench.common import load_average
from bench.dashboard_common import (
    LOG_LINES,
    StatementTimer,
    bulk_points,
    clear_caches,
    ms,
    postgres,
    ready_dataset_80,
    running_job,
    setup_home,
    use_database,
    write_step,
)


def naive_points(job_id: str):
    """Every point of the job, as a page without downsampling would read them."""
    from sqlalchemy import select

    from backend.core.schemas import MetricsPointInfo
    from backend.db.models import MetricsPoint
    from backend.db.session import session_scope

    with session_scope() as s:
        return [MetricsPointInfo.model_validate(r) for r in s.scalars(
            select(MetricsPoint).where(MetricsPoint.job_id == job_id).order_by(MetricsPoint.step))]



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

    lines = [f"# (a) load average before: {load_average()}"]
    home, user, ds = setup_home("dash-query-")
    sqlite_job = running_job(user, ds.id)
    lines.append(f"# sqlite: {points} points + {LOG_LINES} logs inserted in "
                 f"{bulk_points(sqlite_job, points):.1f}s")
    with postgres() as pg_url:
        use_database(pg_url)
        from backend.accounts.users import ensure_local_user

        pg_user = ensure_local_user()
        pg_ds = ready_dataset_80(pg_user)
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
    lines.append(f"# (a) load average after: {load_average()}")
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
