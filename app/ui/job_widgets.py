"""Small pieces shared by the Jobs and Monitor pages: formatting (money, durations, ETA), the stage
indicator, a job's label, the configuration rows used by the compare-runs diff, and a throttled
call of the reconciler (at most every ``RECONCILE_EVERY_S`` seconds for the whole process)."""
from __future__ import annotations

import logging
import threading
import time
from datetime import datetime, timezone

from app.ui.widgets import literal
from backend.core import states
from backend.core.errors import BrightRunError
from backend.costs import money_text

log = logging.getLogger(__name__)
RECONCILE_EVERY_S = 10.0
_reconcile_lock = threading.Lock()
_last_reconcile = [0.0]

STAGE_LABELS = {"queued": "Queued", "initializing": "Initializing", "training": "Training",
                "validating": "Validating", "saving": "Saving", "completed": "Completed"}


def fmt_money(value: float | None) -> str:
    """Money as every page shows it: ``backend.costs.money_text`` ('$12.50', '< $0.01', '—')."""
    return money_text(value)


def cell_text(value) -> str:
    """A configuration value as table text: lists comma-separated, unset values as '—'."""
    if value is None:
        return "—"
    if isinstance(value, (list, tuple)):
        return ", ".join(map(str, value)) if value else "—"
    return str(value)


def fmt_duration(seconds: float | None) -> str:
    """1 h 05 min · 3 min 12 s · 45 s."""
    if seconds is None:
        return "—"
    s = int(max(0, round(seconds)))
    if s >= 3600:
        return f"{s // 3600} h {s % 3600 // 60:02d} min"
    if s >= 60:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s} s"


def fmt_duration_short(seconds: float | None) -> str:
    """For metric cards: 45 s · 3 min · 2.4 h."""
    if seconds is None:
        return "—"
    s = max(0.0, float(seconds))
    if s < 60:
        return f"{s:.0f} s"
    if s < 3600:
        return f"{s / 60:.0f} min"
    return f"{s / 3600:.1f} h"


def _aware(when: datetime) -> datetime:
    return when if when.tzinfo else when.replace(tzinfo=timezone.utc)


def elapsed_s(job) -> float | None:
    """Seconds the job has run (to its end when it ended); None before it started: the job's
    total time as backend/jobs/figures.py defines it."""
    from backend.jobs.figures import total_seconds

    return total_seconds(job)


def eta_seconds(job) -> float | None:
    """Seconds until the estimated completion (≤ 0 once it is due); None when not running or
    not estimated yet."""
    if job.status not in states.JOB_ACTIVE or job.estimated_completion_at is None:
        return None
    return (_aware(job.estimated_completion_at) - datetime.now(timezone.utc)).total_seconds()


def eta_text(job) -> str:
    """'in 4 min 10 s (14:05 UTC)' while running; '—' otherwise."""
    left = eta_seconds(job)
    if left is None:
        return "—"
    if left <= 0:
        return "any moment now"
    return f"in {fmt_duration(left)} ({_aware(job.estimated_completion_at).strftime('%H:%M UTC')})"


def eta_short(job) -> str:
    """For the ETA metric card (narrow): '2 min', '1.5 h', 'soon' (due), '—' (no estimate)."""
    left = eta_seconds(job)
    if left is None:
        return "—"
    return "soon" if left <= 0 else fmt_duration_short(left)


def job_cost(job) -> float:
    """The job's cost as backend/jobs/figures.py defines it (final, else accrued so far)."""
    from backend.jobs.figures import job_cost as cost

    return cost(job)


def progress_fraction(job) -> float:
    return min(max(float(job.progress or 0) / 100.0, 0.0), 1.0)


def job_label(job) -> str:
    """Plain text (for select options and chart legends): 'name · 1a2b3c4d'."""
    return f"{job.name or 'job'} · {job.id[:8]}"


def hardware_text(job) -> str:
    gpu = job.gpu_config or {}
    return f"{gpu.get('num_workers') or 1} × {gpu.get('gpu_type') or '—'}"


def stage_markdown(job) -> str:
    """queued → initializing → … → completed with done / current / not reached marks."""
    current = job.current_stage if job.current_stage in states.JOB_STAGES else "queued"
    index = states.JOB_STAGES.index(current)
    ended_badly = job.status in ("failed", "cancelled")
    parts = []
    for i, stage in enumerate(states.JOB_STAGES):
        label = STAGE_LABELS[stage]
        if job.status == "completed" or i < index:
            parts.append(f":green[:material/check_circle: {label}]")
        elif i == index and ended_badly:
            icon = "cancel" if job.status == "cancelled" else "error"
            parts.append(f":red[:material/{icon}: **{label}** ({job.status})]")
        elif i == index:
            parts.append(f":blue[:material/pending: **{label}**]")
        else:
            parts.append(f":gray[:material/radio_button_unchecked: {label}]")
    return " &nbsp;→&nbsp; ".join(parts)


def config_rows(job) -> dict[str, str]:
    """Flat configuration of a job for the compare table (values as text)."""
    rows = {"dataset": job.dataset_name or job.dataset_id, "preset": job.preset_id,
            "hardware": hardware_text(job), "status": job.status}
    for key, value in sorted((job.hyperparameters or {}).items()):
        rows[key] = cell_text(value)
    return rows


def config_diff(jobs: list, only_different: bool = True):
    """One row per configuration field, one column per job; only the differing rows if asked."""
    columns = {job_label(j): config_rows(j) for j in jobs}
    fields: list[str] = []
    for rows in columns.values():
        fields += [f for f in rows if f not in fields]
    data = {label: [rows.get(f, "—") for f in fields] for label, rows in columns.items()}
    import pandas as pd  # here: pages that never compare runs (Configure) skip its import

    df = pd.DataFrame(data, index=fields)
    df.index.name = "field"
    if only_different and len(columns) > 1:
        df = df[df.nunique(axis=1) > 1]
    return df.reset_index()


def maybe_reconcile(now: float | None = None) -> bool:
    """Run ``backend.jobs.service.reconcile()`` unless it ran in the last ``RECONCILE_EVERY_S`` seconds
    (across every session of this server). Returns whether it ran. Errors are logged, not shown."""
    from backend.jobs import service as jobs

    now = time.monotonic() if now is None else now
    with _reconcile_lock:
        if now - _last_reconcile[0] < RECONCILE_EVERY_S:
            return False
        _last_reconcile[0] = now
    try:
        jobs.reconcile()
    except BrightRunError as exc:
        log.warning("reconcile failed: %s", exc)
    return True


def name_markdown(job) -> str:
    """The job's name as literal markdown (its id when unnamed)."""
    return literal(job.name or f"job {job.id[:8]}")
