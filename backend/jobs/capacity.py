"""Whether the Ray cluster can ever run a job: what a job needs (pure), what the cluster has (asked
of the gateway, cached briefly), and the up-front refusal used by estimates and ``create_job``.

"Ever": the cluster's *total* resources, not what is free now — a job behind others waits its turn;
a GPU job on a cluster without GPUs would wait forever (Ray reports it RUNNING while its driver waits
for a placement), so it is refused up front when the cluster is known, and failed by the reconciler
after ``BRIGHTRUN_MISSING_RESOURCE_WAIT_S`` otherwise."""
from __future__ import annotations

import threading
import time

from backend.core.errors import InvalidInput

_CACHE_S = 30.0
_cache_lock = threading.Lock()
_cache: dict[str, tuple[float, dict[str, float] | None]] = {}


def job_needs(use_gpu: bool, workers: int) -> dict[str, float]:
    """Resources a training job needs from the cluster as a whole: one GPU per worker for GPU jobs
    (Ray Train), one CPU per worker for CPU jobs (a single CPU worker trains in the driver, which
    is scheduled with 1 CPU)."""
    workers = max(1, int(workers))
    return {"GPU": float(workers)} if use_gpu else {"CPU": float(workers)}


def missing_resources(needs: dict[str, float], totals: dict[str, float]) -> str | None:
    """A sentence naming what ``needs`` asks for beyond the cluster's ``totals``, or None when it
    fits. Pure."""
    short = [(name, amount, totals.get(name, 0.0)) for name, amount in sorted(needs.items())
             if totals.get(name, 0.0) < amount]
    if not short:
        return None
    parts = [f"{_n(amount)} {name}" + ("" if have == 0 else f" (it has {_n(have)})")
             for name, amount, have in short]
    nothing = [name for name, _, have in short if have == 0]
    has = f"; it has no {' and no '.join(nothing)}" if nothing else ""
    return f"the Ray cluster can never run this job: it needs {', '.join(parts)}{has}"


def _n(value: float) -> str:
    return f"{value:g}"


def cluster_totals(now: float | None = None) -> dict[str, float] | None:
    """The cluster's total resources (None: not known), cached for a few seconds per address."""
    from backend.cluster.gateway import get_gateway

    gateway = get_gateway()
    key = gateway.settings.ray_address or str(gateway.settings.home)
    now = time.monotonic() if now is None else now
    with _cache_lock:
        hit = _cache.get(key)
        if hit is not None and now - hit[0] < _CACHE_S:
            return hit[1]
    totals = gateway.cluster_resources()
    with _cache_lock:
        _cache[key] = (now, totals)
    return totals


def check_hardware_available(use_gpu: bool, workers: int, hardware_name: str) -> None:
    """Refuse hardware the cluster does not have, when its resources are known (and the check is
    on: ``BRIGHTRUN_MISSING_RESOURCE_WAIT_S`` > 0). Raises InvalidInput (code
    ``hardware_unavailable``)."""
    from backend.core.config import get_settings

    if get_settings().missing_resource_wait_s <= 0:
        return
    totals = cluster_totals()
    why = missing_resources(job_needs(use_gpu, workers), totals) if totals else None
    if why:
        raise InvalidInput(f"{workers} × {hardware_name}: {why}", code="hardware_unavailable",
                           hint="choose hardware the cluster has (e.g. local CPU), fewer workers, "
                                "or add nodes to the cluster")
