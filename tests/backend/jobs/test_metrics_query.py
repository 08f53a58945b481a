"""The Monitor's downsampled series (backend/jobs/metrics.py) against a brute-force reference in
Python, while points are appended, deleted (resume from a checkpoint) or the job is deleted; and
the per-process sharing of ``jobs.job_metrics`` (access still checked on every call).

Runs on SQLite, and on PostgreSQL when BRIGHTRUN_TEST_DATABASE_URL is set (the ``db`` fixture)."""
from __future__ import annotations

import random
import threading
from collections import defaultdict
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import delete, insert, update

from backend.core.errors import NotFound
from backend.core.schemas import UserInfo
from backend.db.models import Dataset, MetricsPoint, TrainingJob, User, new_id
from backend.db.session import session_scope
from backend.jobs import metrics as mq
from backend.jobs import service as jobs

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
FIELDS = ("epoch", "step", "training_loss", "validation_loss", "learning_rate", "gradient_norm",
          "throughput", "gpu_utilization", "tokens_processed")


@pytest.fixture(autouse=True)
def _fresh_caches():
    mq.clear_cache()
    jobs._metrics_cache.clear()
    yield
    mq.clear_cache()
    jobs._metrics_cache.clear()


def _user(s, role="user") -> UserInfo:
    u = User(email=f"{new_id()}@x.io", name="u", role=role)
    s.add(u)
    s.flush()
    return UserInfo.model_validate(u)


@pytest.fixture
def world(db):
    with session_scope() as s:
        owner, other, admin = _user(s), _user(s), _user(s, "admin")
        d = Dataset(user_id=owner.id, name="d", storage_bucket="local",
                    storage_path=f"k/{new_id()}", file_name="d.jsonl")
        s.add(d)
        s.flush()
        job = TrainingJob(user_id=owner.id, dataset_id=d.id, preset_id="balanced",
                          hyperparameters={}, gpu_config={}, total_epochs=1, status="running")
        s.add(job)
        s.flush()
        return owner, other, admin, job.id


def make_points(first: int, count: int, seed: int, val_rate: float = 0.03) -> list[dict]:
    """Steps with gaps, losses with spikes and holes, some validation points, sparse columns."""
    rng, rows, step = random.Random(seed), [], first
    for _ in range(count):
        rows.append({
            "epoch": step // 1000, "step": step, "timestamp": T0 + timedelta(seconds=step),
            "training_loss": None if rng.random() < 0.02 else
            (50.0 if rng.random() < 0.005 else 2.0 / (1 + step / 300) + rng.random() * 0.1),
            "validation_loss": 1.5 + rng.random() if rng.random() < val_rate else None,
            "learning_rate": None if rng.random() < 0.1 else 1e-4 * rng.random(),
            "gradient_norm": rng.random(), "throughput": 2000 + 100 * rng.random(),
            "gpu_utilization": None, "tokens_processed": 100 * step})
        step += rng.choice((1, 1, 1, 2, 3))
    return rows


def append(job_id: str, rows: list[dict]) -> None:
    if not rows:
        return
    with session_scope() as s:
        s.execute(insert(MetricsPoint), [{"id": new_id(), "job_id": job_id, **r} for r in rows])


def _naive(ts: datetime) -> datetime:
    return ts.astimezone(timezone.utc).replace(tzinfo=None) if ts.tzinfo else ts


def reference(rows: list[dict], max_points: int) -> list[dict]:
    """What downsampled_points must return, computed from the raw rows."""
    rows = sorted(rows, key=lambda r: r["step"])
    if len(rows) <= max_points:
        return [dict(r) for r in rows]
    lo, hi = rows[0]["step"], rows[-1]["step"]
    lo -= lo % 64  # buckets are counted from the 64-step roll-up block of the first step
    buckets, width = max(1, max_points // 2), 1
    while (hi - lo) // width + 1 > buckets:
        width *= 2
    groups = defaultdict(list)
    for r in rows:
        groups[(r["step"] - lo) // width].append(r)
    out = []
    for b in sorted(groups):
        g = groups[b]

        def agg(fn, key, g=g):
            vals = [r[key] for r in g if r[key] is not None]
            return fn(vals) if vals else None

        common = {"epoch": agg(max, "epoch"), "timestamp": agg(max, "timestamp"),
                  "tokens_processed": agg(max, "tokens_processed"), "validation_loss": None}
        for key in ("learning_rate", "gradient_norm", "throughput", "gpu_utilization"):
            common[key] = agg(lambda v: sum(v) / len(v), key)
        s0, s1 = g[0]["step"], g[-1]["step"]
        out.append({**common, "step": s0, "training_loss": agg(max, "training_loss")})
        if s1 != s0:
            out.append({**common, "step": s1, "training_loss": agg(min, "training_loss")})
    out += [dict(r) for r in rows if r["validation_loss"] is not None][:max_points]
    return sorted(out, key=lambda r: r["step"])


def assert_matches(got, want) -> None:
    assert len(got) == len(want)
    for p, r in zip(got, want):
        for key in FIELDS:
            want_value = r[key] if r[key] is None else pytest.approx(r[key], rel=1e-9)
            assert getattr(p, key) == want_value, (p.step, key)
        assert _naive(p.timestamp) == _naive(r["timestamp"]), p.step


def compute(job_id: str, max_points: int):
    with session_scope() as s:
        return mq.downsampled_points(s, job_id, max_points)


def fresh(job_id: str, max_points: int):
    saved = dict(mq._cache)
    mq.clear_cache()
    try:
        return compute(job_id, max_points)
    finally:
        mq._cache.update(saved)


@pytest.fixture
def reads(monkeypatch):
    """Every ``read_buckets`` of the incremental query: whether it started from kept buckets."""
    calls: list[bool] = []
    real = mq.read_buckets

    def spy(s, key, lo, base):
        calls.append(base is not None)
        return real(s, key, lo, base)
    monkeypatch.setattr(mq, "read_buckets", spy)
    return calls


def test_matches_reference_keeps_peaks_and_validation_points(world):
    *_, job_id = world
    rows = make_points(1, 3000, seed=1)
    rows[1234]["training_loss"] = 99.0  # a spike
    append(job_id, rows)
    got = compute(job_id, 200)
    assert_matches(got, reference(rows, 200))
    assert max(p.training_loss or 0 for p in got) == 99.0
    vals = [r["step"] for r in rows if r["validation_loss"] is not None]
    assert vals and [p.step for p in got if p.validation_loss is not None] == vals
    assert len(got) - len(vals) <= 200
    assert compute(job_id, 5000) and len(compute(job_id, 5000)) == 3000  # all raw points
    assert_matches(compute(job_id, 5000), reference(rows, 5000))


def test_empty_and_small_jobs(world):
    *_, job_id = world
    assert compute(job_id, 100) == []
    rows = make_points(10, 100, seed=2)
    append(job_id, rows)
    assert_matches(compute(job_id, 100), reference(rows, 100))  # exactly max_points: raw
    append(job_id, make_points(rows[-1]["step"] + 1, 1, seed=3))
    n_val = sum(r["validation_loss"] is not None for r in rows) + 1
    assert len(compute(job_id, 100)) <= 100 + n_val


def test_incremental_while_appending_equals_fresh_computation(world, reads):
    """Appends through two width doublings: every call equals the reference and a computation
    from scratch, and reads only start from scratch on the first call."""
    *_, job_id = world
    rows = make_points(1, 1500, seed=4)
    append(job_id, rows)
    widths = set()
    rng = random.Random(5)
    for i in range(30):
        got = compute(job_id, 100)
        want = reference(rows, 100)
        assert_matches(got, want)
        assert_matches(fresh(job_id, 100), want)
        widths.add(mq.bucket_width(rows[-1]["step"] - rows[0]["step"], 100))
        batch = make_points(rows[-1]["step"] + 1, rng.choice((1, 7, 150, 400)), seed=100 + i)
        append(job_id, batch)
        rows += batch
    assert len(widths) >= 3  # the width doubled at least twice
    incremental = reads[::2]  # every other _read is the fresh() one
    assert incremental[0] is False and all(incremental[1:]), incremental


@pytest.mark.parametrize("val_rate", [0.2, 1.0])
def test_more_validation_points_than_max_points(world, val_rate):
    """Only the first max_points validation points are drawn, also as the job grows."""
    *_, job_id = world
    rows = make_points(1, 1500, seed=13, val_rate=val_rate)
    append(job_id, rows)
    for i in range(8):
        assert_matches(compute(job_id, 100), reference(rows, 100))
        batch = make_points(rows[-1]["step"] + 1, 300, seed=20 + i, val_rate=val_rate)
        append(job_id, batch)
        rows += batch


def _resume(job_id: str, rows: list[dict], cut: int, rewrite: int, seed: int) -> list[dict]:
    """What DbSink.resumed and the resumed run do: delete the points after ``cut``, write
    ``rewrite`` points after it again (other values)."""
    with session_scope() as s:
        s.execute(delete(MetricsPoint).where(MetricsPoint.job_id == job_id,
                                             MetricsPoint.step > cut))
    again = make_points(cut + 1, rewrite, seed=seed)
    append(job_id, again)
    return [r for r in rows if r["step"] <= cut] + again


@pytest.mark.parametrize("back, rewrite", [(300, 300), (300, 600), (2000, 2000), (5, 40)])
def test_resume_from_checkpoint_between_two_polls(world, back, rewrite):
    """Points after the checkpoint deleted and rewritten with other values between two calls:
    kept buckets that covered deleted points must not survive (same width, or a wider one)."""
    *_, job_id = world
    rows = make_points(1, 4000, seed=6)
    append(job_id, rows)
    assert_matches(compute(job_id, 100), reference(rows, 100))
    rows = _resume(job_id, rows, rows[-back]["step"], rewrite, seed=back)
    assert_matches(compute(job_id, 100), reference(rows, 100))
    more = make_points(rows[-1]["step"] + 1, 200, seed=7)
    append(job_id, more)
    assert_matches(compute(job_id, 100), reference(rows + more, 100))


def test_resume_seen_before_the_rewrite(world):
    *_, job_id = world
    rows = make_points(1, 4000, seed=6)
    append(job_id, rows)
    assert_matches(compute(job_id, 100), reference(rows, 100))
    rows = _resume(job_id, rows, rows[-1000]["step"], 0, seed=1)
    assert_matches(compute(job_id, 100), reference(rows, 100))  # before any rewrite
    again = make_points(rows[-1]["step"] + 1, 1500, seed=2)
    append(job_id, again)
    assert_matches(compute(job_id, 100), reference(rows + again, 100))


def test_deleted_points_and_deleted_job(world):
    owner, *_, job_id = world
    rows = make_points(1, 3000, seed=7)
    append(job_id, rows)
    assert_matches(compute(job_id, 100), reference(rows, 100))
    with session_scope() as s:
        s.execute(delete(MetricsPoint).where(MetricsPoint.job_id == job_id))
    assert compute(job_id, 100) == []
    rows = make_points(1, 3000, seed=8)  # same steps, other values
    append(job_id, rows)
    assert_matches(compute(job_id, 100), reference(rows, 100))
    assert jobs.job_metrics(owner, job_id, max_points=100)
    with session_scope() as s:
        s.execute(delete(TrainingJob).where(TrainingJob.id == job_id))
    assert compute(job_id, 100) == []
    with pytest.raises(NotFound):
        jobs.job_metrics(owner, job_id, max_points=100)


def test_kept_entries_are_bounded(world, monkeypatch):
    *_, job_id = world
    monkeypatch.setattr(mq, "CACHE_ENTRIES", 2)
    rows = make_points(1, 2000, seed=9)
    append(job_id, rows)
    for max_points in (50, 100, 200, 400):
        assert_matches(compute(job_id, max_points), reference(rows, max_points))
    assert len(mq._cache) == 2


def test_job_metrics_shared_computed_once_and_access_checked(world, monkeypatch):
    owner, other, admin, job_id = world
    rows = make_points(1, 3000, seed=10)
    append(job_id, rows)
    calls = []
    real = mq.downsampled_points

    def counting(s, j, n):
        calls.append(j)
        return real(s, j, n)
    monkeypatch.setattr(mq, "downsampled_points", counting)
    results, errors = [], []

    def session():
        try:
            results.append(jobs.job_metrics(owner, job_id, max_points=100))
        except Exception as exc:  # noqa: BLE001 - asserted below
            errors.append(exc)
    threads = [threading.Thread(target=session) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(calls) == 1  # one computation for eight concurrent sessions
    for got in results:
        assert_matches(got, reference(rows, 100))
    with pytest.raises(NotFound):  # cached, but still someone else's job
        jobs.job_metrics(other, job_id, max_points=100)
    assert_matches(jobs.job_metrics(admin, job_id, max_points=100), reference(rows, 100))
    assert len(calls) == 1
    batch = make_points(rows[-1]["step"] + 1, 300, seed=11)  # the job writes and reports
    append(job_id, batch)
    rows += batch
    with session_scope() as s:
        s.execute(update(TrainingJob).where(TrainingJob.id == job_id)
                  .values(current_step=rows[-1]["step"]))
    assert_matches(jobs.job_metrics(owner, job_id, max_points=100), reference(rows, 100))
    assert len(calls) == 2
    monkeypatch.setattr(jobs, "_METRICS_TTL_S", 0.0)  # points written without a progress update
    batch = make_points(rows[-1]["step"] + 1, 50, seed=12)
    append(job_id, batch)
    rows += batch
    assert_matches(jobs.job_metrics(owner, job_id, max_points=100), reference(rows, 100))


# ----- roll-ups (kept by job_progress.append_metrics, read on the first call of a process) -----
def _product_append(job_id: str, rows: list[dict], batch: int = 37) -> None:
    from backend.jobs import progress as jp

    for i in range(0, len(rows), batch):
        jp.append_metrics(job_id, rows[i:i + batch])


def _rollups_equal_points(job_id: str) -> None:
    from sqlalchemy import select

    from backend.db.models import MetricsRollup as R

    with session_scope() as s:
        pts = s.execute(select(MetricsPoint).where(MetricsPoint.job_id == job_id)).scalars().all()
        got = {r.block: r for r in s.scalars(select(R).where(R.job_id == job_id))}
        blocks = defaultdict(list)
        for p in pts:
            blocks[p.step // 64].append(p)
        assert sorted(got) == sorted(blocks)
        for b, ps in blocks.items():
            r = got[b]
            assert (r.points, r.step_min, r.step_max) == (len(ps), min(p.step for p in ps),
                                                          max(p.step for p in ps))
            losses = [p.training_loss for p in ps if p.training_loss is not None]
            assert (r.loss_min, r.loss_max) == ((min(losses), max(losses)) if losses
                                                else (None, None))
            lrs = [p.learning_rate for p in ps if p.learning_rate is not None]
            assert r.lr_n == len(lrs) and (r.lr_sum or 0.0) == pytest.approx(sum(lrs))


def test_rollups_follow_appends_resent_batches_and_resume(world):
    from backend.jobs.db_sink import DbSink

    *_, job_id = world
    rows = make_points(1, 2000, seed=11)
    _product_append(job_id, rows)
    _product_append(job_id, rows[500:700], batch=50)  # resent after a retry: ignored
    _rollups_equal_points(job_id)
    cut = rows[1500]["step"]
    DbSink(job_id).resumed(cut, 1)  # deletes the points after the checkpoint
    _rollups_equal_points(job_id)
    _product_append(job_id, make_points(cut + 1, 300, seed=12))
    _rollups_equal_points(job_id)


def test_first_call_of_a_process_reads_rollups_not_points(world, reads):
    *_, job_id = world
    rows = make_points(3, 9000, seed=13)
    _product_append(job_id, rows, batch=500)
    mq.clear_cache()
    assert_matches(compute(job_id, 200), reference(rows, 200))
    assert reads == [True]  # started from finished buckets built from the roll-ups
    more = make_points(rows[-1]["step"] + 1, 700, seed=14)
    _product_append(job_id, more)
    mq.clear_cache()
    assert_matches(compute(job_id, 200), reference(rows + more, 200))


def test_points_written_around_the_rollups_are_read_directly(world, reads):
    *_, job_id = world
    rows = make_points(1, 6000, seed=15)
    _product_append(job_id, rows[:3000], batch=1000)
    append(job_id, rows[3000:])  # bypasses job_progress: roll-ups no longer cover the points
    mq.clear_cache()
    assert_matches(compute(job_id, 200), reference(rows, 200))
    assert reads == [False]
