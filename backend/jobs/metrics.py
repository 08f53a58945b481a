"""Downsampled metric series for charts: bounded points however long the job, peaks kept.

Buckets are ``width`` steps wide counted from the 64-step roll-up block of the job's first step,
``width`` being the smallest power of two that gives at most ``max_points // 2`` buckets. Steps only grow, so a bucket that
ends before the job's latest step is *finished*: it never changes. Finished buckets (with their
validation points) are kept per process (bounded LRU, keyed by job, max_points and width); a call
aggregates only the points after them, through the ``(job_id, step)`` unique index. When the width
doubles, kept buckets merge in pairs.

The first call of a process for a job (nothing kept yet) builds the finished buckets from the
job's roll-up rows (``metrics_rollups``: one row per 64 steps, kept by
``job_progress.append_metrics`` in the points' transaction) when buckets are at least 64 steps
wide and the roll-ups cover exactly the stored points; otherwise from the points.

Deletions: a resume from a checkpoint deletes the points after the checkpoint's step and writes
them again (``backend/jobs/db_sink.py`` ``DbSink.resumed``); a deleted job loses all its points. Each
kept entry remembers the id of the first point after its finished buckets (the *sentinel*, read in
the same statement as the buckets). A deletion that reaches a finished bucket deletes the sentinel
too, so a call that no longer finds it unchanged recomputes from scratch.
"""
from __future__ import annotations

import threading
from collections import OrderedDict
from typing import NamedTuple

from sqlalchemy import func, literal_column, select
from sqlalchemy.orm import Session

from backend.core.schemas import MetricsPointInfo
from backend.db.models import ROLLUP_STEPS, MetricsRollup
from backend.db.models import MetricsPoint as M

CACHE_ENTRIES = 64  # (job, max_points, width) entries kept per process; each ≤ ~1,200 points
_AVG = ("learning_rate", "throughput", "gradient_norm", "gpu_utilization")
_FIELDS = ("epoch", "step", "timestamp", "training_loss", "validation_loss", "learning_rate",
           "gradient_norm", "throughput", "gpu_utilization", "tokens_processed")
_lock = threading.Lock()
_cache: OrderedDict[tuple[str, int, int], _Entry] = OrderedDict()


class _Entry(NamedTuple):
    lo: int  # the job's first step: bucket b holds steps lo + b*width .. lo + (b+1)*width - 1
    width: int
    done: int  # buckets 0 .. done-1 are finished
    rows: tuple  # their aggregate rows (b, *_agg_columns())
    vals: tuple  # the validation points among them (MetricsPointInfo; the first max_points)
    points: tuple  # their output: bucket points and vals, by step
    sentinel: tuple[int, str]  # (step, id) of the first point after the finished buckets


def downsampled_points(s: Session, job_id: str, max_points: int = 1000) -> list[MetricsPointInfo]:
    """All points when there are at most ``max_points``; otherwise at most max_points/2 step
    buckets, each giving two points (its lowest and highest training loss, so spikes stay
    visible), plus every point that carries a validation loss (the first ``max_points``)."""
    first = select(func.min(M.step)).where(M.job_id == job_id).scalar_subquery()
    last = select(func.max(M.step)).where(M.job_id == job_id).scalar_subquery()
    capped = select(func.count()).select_from(  # only "more than max_points?" matters
        select(M.step).where(M.job_id == job_id).limit(max_points + 1).subquery()).scalar_subquery()
    lo, hi, n = s.execute(select(first, last, capped)).one()
    if not n:
        return []
    if n <= max_points:
        return _raw(s, job_id, lo, None, False)
    origin = lo - lo % ROLLUP_STEPS  # buckets nest on the roll-up blocks
    width = bucket_width(hi - origin, max_points)
    key = (job_id, max_points, width)
    base = _base_entry(key, origin)
    if base is None and width >= ROLLUP_STEPS:
        base = _rollup_entry(s, key, origin, lo, hi)
    got = read_buckets(s, key, origin, base)
    if got is None:  # something kept was deleted (resume, deleted points): start again
        forget_job(job_id)
        got = read_buckets(s, key, origin, None)
    return got


def bucket_width(span: int, max_points: int) -> int:
    """The smallest power of two ``w`` with ``span // w + 1 <= max(1, max_points // 2)``."""
    buckets, width = max(1, max_points // 2), 1
    while width * buckets <= span:
        width *= 2
    return width


def clear_cache() -> None:
    """Forget every kept bucket (tests, benchmarks)."""
    with _lock:
        _cache.clear()


def _raw(s: Session, job_id: str, start: int, limit: int | None,
         validation_only: bool) -> list[MetricsPointInfo]:
    """Points from step ``start`` on, by step (only those with a validation loss)."""
    stmt = select(*(getattr(M, f) for f in _FIELDS)).where(M.job_id == job_id, M.step >= start)
    if validation_only:
        stmt = stmt.where(M.validation_loss.is_not(None))  # the partial index
    rows = s.execute(stmt.order_by(M.step).limit(limit)).all()
    return [MetricsPointInfo(**r._asdict()) for r in rows]


def read_buckets(s: Session, key: tuple[str, int, int], lo: int,
          base: _Entry | None) -> list[MetricsPointInfo] | None:
    """Finished buckets of ``base`` + the buckets of the points after them, read in one statement
    together with the new sentinel and the check of ``base``'s. None when the check fails."""
    job_id, max_points, width = key
    start = lo + (base.done if base else 0) * width
    b = ((M.step - lo) // width).label("b")
    top = select(func.max(M.step)).where(M.job_id == job_id).scalar_subquery()
    open_start = lo + (top - lo) // width * width  # first step of the bucket holding the last one
    cols = [b, *_agg_columns(),
            select(M.id).where(M.job_id == job_id, M.step >= open_start).order_by(M.step)
            .limit(1).scalar_subquery().label("sentinel_new")]
    if base:
        cols.append(select(M.id).where(M.job_id == job_id, M.step == base.sentinel[0])
                    .scalar_subquery().label("sentinel_old"))
    rows = s.execute(select(*cols).where(M.job_id == job_id, M.step >= start)
                     .group_by(literal_column("b")).order_by(literal_column("b"))).all()
    if base and (not rows or rows[0].sentinel_old != base.sentinel[1]):
        return None
    if not rows:
        return []
    aggs = [tuple(r[:16]) for r in rows]
    kept_vals, kept = (base.vals, base.points) if base else ((), ())
    room = max_points - len(kept_vals)
    vals = _raw(s, job_id, start, room, True) if room > 0 else []
    new = aggs[:-1]  # every bucket but the last (it holds the latest step) is now finished
    if new:
        end = lo + aggs[-1][0] * width
        done_vals = [p for p in vals if p.step < end]
        vals = vals[len(done_vals):]
        kept += tuple(sorted([p for r in new for p in _to_points(r)] + done_vals,
                             key=lambda p: p.step))
        _store(key, _Entry(lo, width, aggs[-1][0], (base.rows if base else ()) + tuple(new),
                           kept_vals + tuple(done_vals), kept,
                           (aggs[-1][1], rows[-1].sentinel_new)))
    elif base and key not in _cache:  # merged from a narrower width: keep it
        _store(key, base)
    return [*kept, *sorted(_to_points(aggs[-1]) + vals, key=lambda p: p.step)]


def _rollup_entry(s: Session, key: tuple[str, int, int], origin: int, lo: int,
                  hi: int) -> _Entry | None:
    """The finished buckets aggregated from the job's roll-up blocks (one row per 64 steps)
    instead of its points: what makes the first call of a process cheap. None when the roll-ups
    do not cover exactly the stored points (points written around ``append_metrics``)."""
    job_id, max_points, width = key
    R = MetricsRollup
    first, last = s.execute(select(func.min(R.step_min), func.max(R.step_max))
                            .where(R.job_id == job_id)).one()
    done = (hi - origin) // width  # the bucket holding the latest step is still open
    end = origin + done * width
    if (first, last) != (lo, hi) or not done:
        return None
    b = ((R.block * ROLLUP_STEPS - origin) // width).label("b")
    cols = [b, func.min(R.step_min), func.max(R.step_max), func.min(R.loss_min),
            func.max(R.loss_max)]
    for total, count in ((R.lr_sum, R.lr_n), (R.thr_sum, R.thr_n), (R.gn_sum, R.gn_n),
                         (R.gpu_sum, R.gpu_n)):
        cols += [func.sum(total), func.sum(count)]
    cols += [func.max(R.epoch_max), func.max(R.ts_max), func.max(R.tokens_max)]
    rows = tuple(tuple(r) for r in s.execute(
        select(*cols).where(R.job_id == job_id, R.block < end // ROLLUP_STEPS)
        .group_by(literal_column("b")).order_by(literal_column("b"))))
    sentinel = s.execute(select(M.step, M.id).where(M.job_id == job_id, M.step >= end)
                         .order_by(M.step).limit(1)).first()
    if not rows or sentinel is None:
        return None
    vals = tuple(p for p in _raw(s, job_id, origin, max_points, True) if p.step < end)
    points = sorted([p for r in rows for p in _to_points(r)] + list(vals), key=lambda p: p.step)
    return _Entry(origin, width, done, rows, vals, tuple(points), (sentinel[0], sentinel[1]))


def _agg_columns() -> list:
    """min/max step, min/max training loss, (sum, count) of each averaged column, max epoch,
    timestamp and tokens: enough to merge buckets exactly."""
    cols = [func.min(M.step), func.max(M.step), func.min(M.training_loss),
            func.max(M.training_loss)]
    for name in _AVG:
        cols += [func.sum(getattr(M, name)), func.count(getattr(M, name))]
    return cols + [func.max(M.epoch), func.max(M.timestamp), func.max(M.tokens_processed)]


def _to_points(r: tuple) -> list[MetricsPointInfo]:
    _, s0, s1, lmin, lmax = r[:5]
    lr, thr, gn, gpu = (r[i] / r[i + 1] if r[i + 1] else None for i in (5, 7, 9, 11))
    common = dict(epoch=r[13], timestamp=r[14], learning_rate=lr, throughput=thr,
                  gradient_norm=gn, gpu_utilization=gpu, tokens_processed=r[15])
    out = [MetricsPointInfo(step=s0, training_loss=lmax, **common)]
    if s1 != s0:
        out.append(MetricsPointInfo(step=s1, training_loss=lmin, **common))
    return out


def _pick(fn, values):
    values = [v for v in values if v is not None]
    return fn(values) if values else None


def _merge(b: int, group: list[tuple]) -> tuple:
    out = [b, min(r[1] for r in group), max(r[2] for r in group),
           _pick(min, (r[3] for r in group)), _pick(max, (r[4] for r in group))]
    for i in (5, 7, 9, 11):
        out += [_pick(sum, (r[i] for r in group)), sum(r[i + 1] for r in group)]
    return tuple(out + [_pick(max, (r[i] for r in group)) for i in (13, 14, 15)])


def _base_entry(key: tuple[str, int, int], lo: int) -> _Entry | None:
    """The kept entry for ``key``, or one merged from the widest narrower entry of the job."""
    job_id, max_points, width = key
    with _lock:
        entry = _cache.get(key)
        if entry is not None:
            _cache.move_to_end(key)
            return entry if entry.lo == lo else None
        narrower = [e for (j, n, w), e in _cache.items()
                    if j == job_id and n == max_points and w < width and e.lo == lo]
    if not narrower:
        return None
    old = max(narrower, key=lambda e: e.width)
    factor = width // old.width
    done = old.done // factor
    if not done:
        return None
    groups: dict[int, list[tuple]] = {}
    for r in old.rows:
        if r[0] < done * factor:
            groups.setdefault(r[0] // factor, []).append(r)
    rows = tuple(_merge(k, g) for k, g in groups.items())
    vals = tuple(p for p in old.vals if p.step < lo + done * width)
    points = sorted([p for r in rows for p in _to_points(r)] + list(vals), key=lambda p: p.step)
    return _Entry(lo, width, done, rows, vals, tuple(points), old.sentinel)


def _store(key: tuple[str, int, int], entry: _Entry) -> None:
    with _lock:
        _cache[key] = entry
        _cache.move_to_end(key)
        while len(_cache) > CACHE_ENTRIES:
            _cache.popitem(last=False)


def forget_job(job_id: str) -> None:
    with _lock:
        for key in [k for k in _cache if k[0] == job_id]:
            del _cache[key]
