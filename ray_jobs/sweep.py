"""Ray Job entrypoint of a hyperparameter sweep: ``python -m ray_jobs.sweep --sweep-id ID``.

The driver reads the sweep (``backend.sweeps.progress.sweep_inputs``: its queued trial jobs,
concurrency, scheduler) and runs a Ray Tune ``Tuner`` over them: one function trial per training
job (``ray_jobs.driver.sweep_trial.run_trial``, 1 CPU each, at most ``max_concurrent`` at once),
validation loss the metric (minimised), ASHA (``--scheduler asha``) stopping weak trials at its
rungs. A trial stopped by the scheduler ends ``cancelled`` with ``stopped_early`` set; when the
Tuner returns, the best completed trial is marked and the sweep ends ``completed``. Any error ends
the sweep ``failed`` with every trial it left active. Stopping the Ray job (``sweeps cancel``)
ends the driver, and Ray ends the trial processes it owns. Exit status: 0 done, 1 failed.
"""
from __future__ import annotations

import argparse
import os
import sys
import traceback

from ray_jobs.worker.tune_sink import METRIC


def _callback(scheduler: str):
    """Tune callback recording what only the driver sees: a trial stopped by the scheduler
    (killed before its own code could say so) and a trial whose process failed."""
    from ray import tune

    from backend.sweeps.progress import trial_failed, trial_stopped_early

    class SweepCallback(tune.Callback):
        def on_trial_complete(self, iteration, trials, trial, **info):
            last = trial.last_result or {}
            if not last.get("done"):
                trial_stopped_early(trial.config["job_id"], int(last.get("evaluations") or 0),
                                    last.get(METRIC), scheduler.upper())

        def on_trial_error(self, iteration, trials, trial, **info):
            trial_failed(trial.config["job_id"], f"the trial's process failed (Ray Tune trial "
                                                 f"{trial.trial_id}); see the sweep's Ray job log")

    return SweepCallback()


def tuner_for(sweep_id: str, inputs: dict):
    """The ``Tuner`` of the sweep's queued trials."""
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler

    from ray_jobs.driver.sweep_trial import run_trial

    if inputs["scheduler"] == "asha":
        # rungs at 1, 2, 4, … evaluations; max_t well past a trial's last evaluation, so ASHA
        # never stops a trial for reaching it (the trial ends itself, saving its adapter)
        scheduler = ASHAScheduler(time_attr="training_iteration",
                                  max_t=max(8, 4 * int(inputs["evaluations"])), grace_period=1,
                                  reduction_factor=2)
    else:
        scheduler = FIFOScheduler()
    return tune.Tuner(
        tune.with_resources(run_trial, {"cpu": 1}),
        param_space={"job_id": tune.grid_search(inputs["job_ids"])},
        tune_config=tune.TuneConfig(metric=METRIC, mode="min", scheduler=scheduler,
                                    num_samples=1, max_concurrent_trials=inputs["max_concurrent"],
                                    reuse_actors=False),
        run_config=tune.RunConfig(name=f"sweep-{sweep_id}", storage_path=inputs["storage_path"],
                                  callbacks=[_callback(inputs["scheduler"])],
                                  failure_config=tune.FailureConfig(max_failures=0),
                                  checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
                                  verbose=1))


def run_sweep(sweep_id: str) -> int:
    """Run sweep ``sweep_id`` to its end (recorded). Returns 0 done (or already ended), 1 failed."""
    from backend.sweeps.progress import fail_sweep, finish_sweep, mark_running, sweep_inputs
    from ray_jobs.driver.recipe import connect_ray, failure_message

    started = False
    try:
        inputs = sweep_inputs(sweep_id)
        if not mark_running(sweep_id):
            return 0  # cancelled before it started
        if inputs["job_ids"]:
            started = connect_ray(None)
            tuner_for(sweep_id, inputs).fit()
        best = finish_sweep(sweep_id)
        print(f"sweep {sweep_id} finished; best trial {best}", flush=True)
        return 0
    except BaseException as exc:  # noqa: BLE001 - any failure ends the sweep as failed
        traceback.print_exc()
        fail_sweep(sweep_id, failure_message(exc))
        if isinstance(exc, KeyboardInterrupt):
            raise
        return 1
    finally:
        if started:
            import ray

            ray.shutdown()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m ray_jobs.sweep", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sweep-id", required=True)
    args = p.parse_args(argv)
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")  # no CSV/TensorBoard files
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    return run_sweep(args.sweep_id)


if __name__ == "__main__":
    sys.exit(main())
