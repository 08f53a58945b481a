"""Downsampled metric series for charts: bounded points however long the job, peaks kept."""
from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from backend.db.models import MetricsPoint
from backend.schemas import MetricsPointInfo


def downsampled_points(s: Session, job_id: str, max_points: int = 1000) -> list[MetricsPointInfo]:
    """All points when there are at most ``max_points``; otherwise ~max_points/2 step buckets, each
    giving two points (its lowest and highest training loss, so spikes stay visible), plus every
    point that carries a validation loss."""
    lo, hi, n = s.execute(select(func.min(MetricsPoint.step), func.max(MetricsPoint.step),
                                 func.count()).where(MetricsPoint.job_id == job_id)).one()
    if not n:
        return []
    if n <= max_points:
        rows = s.scalars(select(MetricsPoint).where(MetricsPoint.job_id == job_id)
                         .order_by(MetricsPoint.step)).all()
        return [MetricsPointInfo.model_validate(r) for r in rows]
    buckets = max(1, max_points // 2)
    width = max(1, -(-(hi - lo + 1) // buckets))
    b = func.floor((MetricsPoint.step - lo) / width).label("b")
    agg = s.execute(
        select(b, func.min(MetricsPoint.step), func.max(MetricsPoint.step),
               func.min(MetricsPoint.training_loss), func.max(MetricsPoint.training_loss),
               func.avg(MetricsPoint.learning_rate), func.avg(MetricsPoint.throughput),
               func.avg(MetricsPoint.gradient_norm), func.max(MetricsPoint.epoch),
               func.max(MetricsPoint.timestamp), func.max(MetricsPoint.tokens_processed),
               func.avg(MetricsPoint.gpu_utilization))
        .where(MetricsPoint.job_id == job_id).group_by(b).order_by(b)).all()
    out: list[MetricsPointInfo] = []
    for _, s0, s1, lmin, lmax, lr, thr, gn, ep, ts, tok, gpu in agg:
        common = dict(epoch=ep, timestamp=ts, learning_rate=lr, throughput=thr, gradient_norm=gn,
                      tokens_processed=tok, gpu_utilization=gpu)
        out.append(MetricsPointInfo(step=s0, training_loss=lmax, **common))
        if s1 != s0:
            out.append(MetricsPointInfo(step=s1, training_loss=lmin, **common))
    vals = s.scalars(select(MetricsPoint).where(MetricsPoint.job_id == job_id,
                                                MetricsPoint.validation_loss.is_not(None))
                     .order_by(MetricsPoint.step).limit(max_points)).all()
    out.extend(MetricsPointInfo.model_validate(r) for r in vals)
    out.sort(key=lambda p: p.step)
    return out
