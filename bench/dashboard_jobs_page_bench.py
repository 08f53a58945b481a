"""(b) **Jobs page** of bench/dashboard_bench.py (run it as ``python bench/dashboard_bench.py
jobs-page``; the method: that file's docstring)."""
from __future__ import annotations

import os
import shutil
import time
from datetime import datetime, timedelta, timezone

from bench.common import ROOT, load_average
from bench.dashboard_common import BASELINE_JOBS, JOBS, ms, running_job, setup_home


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

    lines = [f"# (b) load average before: {load_average()}"]
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
    lines.append(f"# (b) load average after: {load_average()}")
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
