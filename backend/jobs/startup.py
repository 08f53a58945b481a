"""A job's start-up timeline: the phases its Ray job logged while starting (``ray_jobs.worker.startup``),
measured from the moment the job was created, read back for the Monitor and ``jobs show``."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Iterable

from sqlalchemy import select

from backend.core.schemas import UserInfo
from backend.db.models import JobLog
from backend.db.session import session_scope
from backend.training.startup_phases import PHASES

LOG_ROWS = 500  # start-up lines are among a job's first; never read more than this


@dataclass(frozen=True)
class Phase:
    phase: str
    label: str
    at: datetime
    since_start_s: float  # seconds since the job was created
    took_s: float  # seconds since the phase before it (or since creation)


def _utc(when: datetime) -> datetime:
    return when if when.tzinfo else when.replace(tzinfo=timezone.utc)


def timeline(created_at: datetime, entries: Iterable[tuple[datetime, dict[str, Any] | None]]
             ) -> list[Phase]:
    """The phases found in ``entries`` ((log timestamp, log metadata) pairs), in the order they
    happened, each once (the first time: a retried run does not move the timeline). A phase's
    moment is its metadata ``at`` (epoch seconds) when present, else the log line's timestamp.
    Pure; raises nothing."""
    origin = _utc(created_at)
    seen: dict[str, datetime] = {}
    for stamp, meta in entries:
        name = (meta or {}).get("phase")
        if name not in PHASES or name in seen:
            continue
        at = meta.get("at")
        seen[name] = (datetime.fromtimestamp(float(at), timezone.utc)
                      if isinstance(at, (int, float)) else _utc(stamp))
    out, before = [], origin
    for name, at in sorted(seen.items(), key=lambda kv: kv[1]):
        out.append(Phase(name, PHASES[name], at, round((at - origin).total_seconds(), 2),
                         round(max(0.0, (at - before).total_seconds()), 2)))
        before = at
    return out


def job_startup(actor: UserInfo, job_id: str) -> list[Phase]:
    """The start-up timeline of job ``job_id``. Raises NotFound (also for another user's job)."""
    from backend.jobs.service import get_job

    job = get_job(actor, job_id)  # access check
    with session_scope() as s:
        rows = s.execute(select(JobLog.timestamp, JobLog.metadata_)
                         .where(JobLog.job_id == job_id)
                         .order_by(JobLog.timestamp, JobLog.id).limit(LOG_ROWS)).all()
    return timeline(job.created_at, rows)
