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
import os
import sys
import time
from pathlib import Path

_ROOT = str(Path(__file__).resolve().parents[1])
if _ROOT not in sys.path:  # run as ``python bench/dashboard_bench.py``
    sys.path.insert(0, _ROOT)

from bench.common import load_average  # noqa: E402
from bench.dashboard_common import JOBS, POINTS  # noqa: E402
from bench.dashboard_jobs_page_bench import bench_jobs_page  # noqa: E402
from bench.dashboard_polling_bench import bench_polling  # noqa: E402
from bench.dashboard_query_bench import bench_query  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("which", nargs="?", default="all",
                    choices=("all", "query", "jobs-page", "polling"))
    ap.add_argument("--points", type=int, default=POINTS, help="metric points of the job")
    ap.add_argument("--rounds", type=int, default=20, help="(a) rounds, interleaved")
    ap.add_argument("--page-rounds", type=int, default=5, help="(b) rounds, interleaved")
    ap.add_argument("--jobs", type=int, default=JOBS, help="(b) jobs of the big home")
    ap.add_argument("--sessions", type=int, default=50, help="(c) concurrent sessions")
    ap.add_argument("--seconds", type=float, default=60.0, help="(c) polling duration")
    args = ap.parse_args(argv)
    import logging

    logging.basicConfig(level=logging.WARNING)
    lines = [f"# dashboard bench, {time.strftime('%Y-%m-%d %H:%M')}, {os.cpu_count()} CPUs, "
             f"load average {load_average()}"]
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
