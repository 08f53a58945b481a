"""The reconciler as a service: one pass over validations and training jobs (:func:`reconcile_all`)
and the loop that runs beside the product (``brightrun reconcile --loop``: started by
``scripts/run`` next to the dashboard, a compose service in team mode). A failing pass (database or
Ray briefly unreachable) is logged and the loop goes on."""
from __future__ import annotations

import logging
import os
import time
from typing import Callable

log = logging.getLogger(__name__)


def reconcile_all() -> int:
    """Reconcile dataset validations, dead uploads, training jobs and evaluations once; returns
    how many changed."""
    from backend.datasets.service import reconcile_validations
    from backend.datasets.uploads import reconcile_uploads
    from backend.evaluations.service import reconcile_evaluations
    from backend.jobs.service import reconcile
    from backend.sweeps.service import reconcile_sweeps

    return (reconcile_validations() + reconcile_uploads() + reconcile() + reconcile_evaluations()
            + reconcile_sweeps())


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def run_loop(interval_s: float, *, stop_with_pid: int | None = None,
             report: Callable[[str], None] = print, passes: int | None = None,
             sleep: Callable[[float], None] = time.sleep) -> int:
    """Reconcile every ``interval_s`` seconds until ``stop_with_pid`` is gone (or ``passes`` passes
    ran). Reports each pass that changed something, and each failure (then goes on). Returns 0."""
    done = 0
    while stop_with_pid is None or _pid_alive(stop_with_pid):
        started = time.monotonic()
        try:
            changed = reconcile_all()
            if changed:
                report(f"reconciled {changed} item(s)")
        except Exception as exc:  # noqa: BLE001 - the loop must outlive a bad pass
            log.warning("reconcile pass failed: %s", exc)
            report(f"reconcile pass failed: {type(exc).__name__}: {exc}")
        done += 1
        if passes is not None and done >= passes:
            break
        sleep(max(0.0, interval_s - (time.monotonic() - started)))
    return 0
