"""Has a Ray submission ended without its work reporting? One definition for every reconciler
(dataset validations, training jobs, evaluations, sweeps): a submission is *ended* when Ray says
it succeeded, failed or was stopped, or no longer lists it once the grace after submission has
passed; it is *never submitted* when its row has had no Ray job for ``NEVER_SUBMITTED_GRACE_S``."""
from __future__ import annotations

import logging
from datetime import datetime, timezone

from backend.core.errors import BrightRunError

log = logging.getLogger(__name__)

MISSING_GRACE_S = 60.0  # a job Ray does not list yet right after submission is not "vanished"
NEVER_SUBMITTED_GRACE_S = 300.0  # a row with no Ray job this long after creation was lost


def age_s(ts: datetime) -> float:
    """Seconds since ``ts`` (naive: UTC)."""
    ts = ts if ts.tzinfo else ts.replace(tzinfo=timezone.utc)
    return (datetime.now(timezone.utc) - ts).total_seconds()


def never_submitted(created_at: datetime) -> bool:
    return age_s(created_at) > NEVER_SUBMITTED_GRACE_S


def ray_info(sub: str) -> dict | None:
    """The Ray Job API's info of submission ``sub``; None (logged) when Ray cannot be asked."""
    from backend.cluster.gateway import get_gateway

    try:
        return get_gateway().info(sub)
    except BrightRunError as exc:
        log.warning("reconcile: cannot ask Ray about %s: %s", sub, exc)
        return None


def has_ended(info: dict, updated_at: datetime) -> bool:
    """True once the submission is over (any state but pending/running; "missing" only after
    ``MISSING_GRACE_S`` since the row last changed)."""
    status = info.get("status")
    if status in ("PENDING", "RUNNING"):
        return False
    return not (status == "MISSING" and age_s(updated_at) < MISSING_GRACE_S)


def ended_info(sub: str, updated_at: datetime) -> dict | None:
    """The info of a submission that has ended (:func:`has_ended`); None while it runs, right
    after submission, or when Ray cannot be asked."""
    info = ray_info(sub)
    return info if info is not None and has_ended(info, updated_at) else None


def ended_reason(sub: str, info: dict) -> str:
    """One line (plus the last log lines when Ray has them) saying how the Ray job ended."""
    from backend.cluster.gateway import get_gateway

    status = info.get("status")
    if status == "MISSING":
        return f"the Ray job {sub} no longer exists (cluster restarted or job purged)"
    msg = (info.get("message") or "").strip()
    tail = ""
    try:
        lines = [ln for ln in get_gateway().logs(sub).splitlines() if ln.strip()]
        tail = "\n".join(lines[-5:])
    except BrightRunError:
        pass
    what = {"SUCCEEDED": "ended without reporting completion", "STOPPED": "was stopped",
            "FAILED": "failed"}.get(status, f"is {status}")
    return f"the Ray job {sub} {what}: {msg}" + (f"\nlast log lines:\n{tail}" if tail else "")


def stop_quietly(sub: str | None) -> None:
    """Ask Ray to stop submission ``sub`` (cancel, or a job that can never start); a failure is
    logged, never raised: the row is already ended and the reconciler tells the rest."""
    from backend.cluster.gateway import get_gateway

    if not sub:
        return
    try:
        get_gateway().stop(sub)
    except BrightRunError as exc:
        log.warning("could not stop Ray job %s: %s", sub, exc)
