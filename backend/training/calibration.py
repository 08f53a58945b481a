"""Calibration of the estimate from finished jobs (pure): what one finished job measured
(:class:`CalibrationSample`), how workers scale, the time per optimizer step beyond the time per
token (:func:`step_overhead`) and the start-up time (:func:`startup_seconds`). Formulas in
docs/estimation.md §2–3; ``backend/jobs/estimates.calibration_samples`` reads the samples."""
from __future__ import annotations

import math
import statistics
from dataclasses import dataclass

from backend.base_models.specs import ModelSpec
from backend.training.catalogs import HardwareEntry

SIMILAR_SIZE_FACTOR = 2.0         # calibration uses jobs on models within 2x of this size


@dataclass(frozen=True)
class CalibrationSample:
    """Measured throughput of one finished job (all workers together)."""

    hardware_id: str
    model_params: int
    workers: int
    tokens_per_s: float
    startup_s: float | None = None  # job wall time not spent training (start-up, saving)
    tokens: int | None = None       # tokens processed (+ evaluated / EVAL_SPEEDUP) ...
    steps: int | None = None        # ... in this many optimizer steps ...
    training_s: float | None = None  # ... in this training wall time (first step to end)


def scaling_factor(workers: int, efficiency_per_doubling: float) -> float:
    """Speed of ``workers`` workers relative to one: workers x efficiency^log2(workers)."""
    return workers * efficiency_per_doubling ** math.log2(workers)


def step_overhead(hardware: HardwareEntry, model: ModelSpec, workers: int,
                  calibration: list[CalibrationSample] | None) -> tuple[float, float | None, list[str]]:
    """(seconds per optimizer step beyond the per-token time, fitted tokens/s of all workers or
    None, assumptions): a least-squares fit of ``training_s = tokens / tps + steps × step_s`` over
    finished jobs on this hardware with a model within 2x (tokens normalised to one worker and this
    model size, as :func:`throughput` does). Needs 3 such jobs and a positive fit; otherwise
    (0, None, []): time per token only. Raises nothing."""
    eff = hardware.scaling_efficiency_per_doubling
    rows = [(s.tokens / scaling_factor(s.workers, eff) * (model.params / s.model_params),
             float(s.steps), float(s.training_s)) for s in calibration or []
            if s.hardware_id == hardware.id and s.tokens and s.steps and s.training_s
            and s.workers >= 1
            and 1 / SIMILAR_SIZE_FACTOR <= s.model_params / model.params <= SIMILAR_SIZE_FACTOR]
    if len(rows) < 3:
        return 0.0, None, []
    sxx = sum(x * x for x, _, _ in rows)
    sxy = sum(x * y for x, y, _ in rows)
    syy = sum(y * y for _, y, _ in rows)
    sxt = sum(x * t for x, _, t in rows)
    syt = sum(y * t for _, y, t in rows)
    det = sxx * syy - sxy * sxy
    if det <= 0:
        return 0.0, None, []
    per_token = (sxt * syy - syt * sxy) / det
    per_step = (sxx * syt - sxy * sxt) / det
    if per_token <= 0 or per_step < 0:
        return 0.0, None, []
    tps = scaling_factor(workers, eff) / per_token
    return per_step, tps, [f"time per token and per optimizer step fitted to {len(rows)} finished "
                           f"job(s) on {hardware.id}: {tps:,.0f} tokens/s with {workers} "
                           f"worker(s) and {per_step:.3f} s per step"]


def startup_seconds(hardware: HardwareEntry, calibration: list[CalibrationSample] | None,
                    workers: int = 1) -> tuple[float, list[str]]:
    """Seconds a job spends outside training (start-up, loading, saving): the median of finished
    jobs on this hardware that recorded it — those started the same way (one worker trains in the
    job's driver, more start a worker group) when there are any — else the catalog's figure.
    Raises nothing."""
    measured = [s for s in calibration or []
                if s.hardware_id == hardware.id and s.startup_s is not None and s.startup_s >= 0]
    alike = [s for s in measured if (s.workers > 1) == (workers > 1)]
    if alike or measured:
        used = alike or measured
        median = statistics.median(s.startup_s for s in used)
        how = ("with a worker group" if workers > 1 else "with one worker") if alike else "all"
        return median, [f"start-up and saving {median:,.0f} s: median of {len(used)} finished "
                        f"job(s) on {hardware.id} ({how})"]
    return float(hardware.startup_overhead_s), [
        f"fixed startup of {hardware.startup_overhead_s:g} s (workers start, model loads)"]
