"""The progress sink of a sweep's trial (sink kind ``tune``, ``ray_jobs.driver.sweep_trial``):
writes progress as the job's ``DbSink`` does and reports each validation loss to Ray Tune
(``ray.tune.report``) — what the scheduler (ASHA) compares. A trial cancelled on its own
(``jobs cancel``) stops at its next report."""
from __future__ import annotations

from typing import Any

from backend.core.errors import BrightRunError
from backend.jobs.db_sink import DbSink

METRIC = "validation_loss"


class TrialCancelled(BrightRunError):
    """The trial's job was cancelled while it trained (not retried: a BrightRunError)."""

    code = "trial_cancelled"


class TuneSink(DbSink):
    """A ``DbSink`` that also reports every validation loss after step 0 (the base model's) to
    Ray Tune, one report per evaluation, once the batch's progress is written (the loop's
    ``MetricBuffer`` sends metrics, then progress), and stops the run once its job is
    cancelled."""

    def __init__(self, job_id: str, artifact_id: str | None = None, workers: int | None = None):
        super().__init__(job_id, artifact_id=artifact_id, workers=workers)
        self.evaluations = 0
        self._pending: list[tuple[int, float]] = []  # (step, validation loss) not yet reported

    def metrics(self, points: list[dict[str, Any]]) -> None:
        from backend.jobs.progress import is_cancelled

        super().metrics(points)
        if is_cancelled(self.job_id):
            raise TrialCancelled(f"trial {self.job_id} was cancelled")
        self._pending.extend((int(p["step"]), float(p[METRIC])) for p in points
                             if p.get(METRIC) is not None and int(p["step"]) > 0)

    def progress(self, epoch: int, step: int, total_steps: int, percent: float,
                 current_metrics: dict[str, Any], eta_s: float | None) -> None:
        """The job's progress first (a trial the scheduler stops shows where it stopped), then
        the validation losses of the batch to Tune, in step order."""
        from ray import tune

        super().progress(epoch, step, total_steps, percent, current_metrics, eta_s)
        pending, self._pending = sorted(self._pending), []
        for at, value in pending:
            self.evaluations += 1
            try:
                tune.report({METRIC: value, "step": at, "evaluations": self.evaluations,
                             "job_id": self.job_id})
            except SystemExit:  # Tune stops the trial (the scheduler's decision) this way
                from backend.sweeps.progress import trial_stopped_early

                self.flush_logs()
                trial_stopped_early(self.job_id, self.evaluations, value)
                raise
