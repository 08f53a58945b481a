"""(c) **50 sessions polling** of bench/dashboard_bench.py (run it as ``python
bench/dashboard_bench.py polling``; the method: that file's docstring). The writer process re-runs
this file: ``python bench/dashboard_polling_bench.py _writer --job-id ID --seconds S
--first-step N --out F``."""
from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

_ROOT = str(Path(__file__).resolve().parents[1])
if _ROOT not in sys.path:  # run as ``python bench/dashboard_polling_bench.py``
    sys.path.insert(0, _ROOT)

from bench.common import OUT, ROOT, fresh_home, load_average  # noqa: E402
from bench.dashboard_common import (  # noqa: E402
    POLL_S,
    StatementTimer,
    bulk_points,
    clear_caches,
    ms,
    postgres,
    ready_dataset_80,
    running_job,
    use_database,
    write_step,
)


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
        self.real = (mq.downsampled_points, mq.read_buckets)

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
        self.mq.downsampled_points, self.mq.read_buckets = run, read
        return self

    def __exit__(self, *exc):
        self.mq.downsampled_points, self.mq.read_buckets = self.real


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

    out = OUT / f"dash-writer-{os.getpid()}-{sessions}.json"
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

    lines = [f"# (c) load average before: {load_average()}"]
    home = fresh_home("dash-poll-")
    with postgres() as url:
        use_database(url)
        from backend.accounts.users import ensure_local_user

        user = ensure_local_user()
        ds = ready_dataset_80(user)
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
    lines += [f"# (c) load average after: {load_average()}", "",
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


def writer_main(argv: list[str]) -> int:
    """The writer process's entry (``_writer``, started by ``start_writer``)."""
    ap = argparse.ArgumentParser(description="(c)'s writer process")
    ap.add_argument("which", choices=("_writer",))
    ap.add_argument("--job-id", required=True)
    ap.add_argument("--seconds", type=float, required=True)
    ap.add_argument("--first-step", type=int, default=0)
    ap.add_argument("--out", required=True)
    args = ap.parse_args(argv)
    from backend.core.config import reset_settings

    reset_settings()
    Path(args.out).write_text(json.dumps(writer(args.job_id, args.seconds, args.first_step)))
    return 0


if __name__ == "__main__":
    if len(sys.argv) < 2 or sys.argv[1] != "_writer":
        sys.exit("run it as: python bench/dashboard_bench.py polling [--help]")
    sys.exit(writer_main(sys.argv[1:]))
