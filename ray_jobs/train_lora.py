"""Ray Job entrypoint: train a LoRA adapter with Ray Train — setup → train → save → cleanup.

By hand (prints progress as JSON lines; see docs/training.md)::

    python -m ray_jobs.train_lora --config config.json --dataset /data/sample-v4.jsonl \\
        --output /tmp/adapter --workers 2                    # starts a local Ray
    ray job submit --entrypoint-num-cpus 0 --runtime-env-json '{"env_vars": {"PYTHONPATH": "REPO"}}' \\
        -- python -m ray_jobs.train_lora --config config.json --dataset file:///data/x.jsonl …

``--config`` is a JSON object of hyperparameters (:class:`ray_jobs.worker.loop.TrainConfig`;
missing keys take their defaults). Inside a Ray job (``RAY_ADDRESS`` set by Ray) it joins that
cluster; run as a plain script it starts a local Ray. Re-running with the same ``--storage-path``
and ``--name`` resumes from the latest checkpoint. Exit status: 0 done, 1 training failed,
2 bad input.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
import traceback
from pathlib import Path

from backend.core.errors import BrightRunError, InvalidInput
from backend.training.data import local_path
from ray_jobs.driver.recipe import Recipe, failure_message, read_config, storage_target
from ray_jobs.driver.train_job import run_job
from ray_jobs.worker.sinks import make_sink


def build_parser() -> argparse.ArgumentParser:
    """The command line of ``python -m ray_jobs.train_lora``."""
    p = argparse.ArgumentParser(prog="python -m ray_jobs.train_lora", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", required=True, help="JSON file of hyperparameters (TrainConfig).")
    p.add_argument("--dataset", required=True, help="JSONL dataset: local path or file:// URL.")
    p.add_argument("--output", help="Folder for the adapter (default: STORAGE/NAME/adapter, "
                                        "or $BRIGHTRUN_HOME/adapters/NAME when STORAGE is s3://).")
    p.add_argument("--workers", type=int, default=1,
                   help="Workers (1 CPU or GPU each): CPU workers of a run that starts its own "
                        "Ray are processes forked by this one; otherwise Ray Train workers.")
    p.add_argument("--gpu", action="store_true", help="One GPU per worker (bf16).")
    p.add_argument("--storage-path", help="Where Ray keeps checkpoints: a folder or "
                                          "s3://BUCKET/PREFIX "
                                          "(default $BRIGHTRUN_HOME/ray_results).")
    p.add_argument("--name", help="Run name; the same storage path + name resumes a run.")
    p.add_argument("--sink", help='Progress sink spec as JSON (default {"kind": "print"}).')
    p.add_argument("--ray-address", help="Ray cluster to join (default: the job's cluster, or a "
                                         "new local Ray).")
    p.add_argument("--max-failures", type=int, default=2, help="Worker-group restarts allowed.")
    p.add_argument("--ray-train", action="store_true",
                   help="Use a Ray Train worker group for CPU workers too (by default one CPU "
                        "worker trains in this process, and N CPU workers of a run that starts "
                        "its own Ray are processes it forks: they start 15-30 s sooner).")
    p.add_argument("--fail-at-step", type=int, help="Testing: make the last worker fail once after "
                                                    "this step, to exercise retry and resume.")
    return p


# ----- setup -------------------------------------------------------------------------------------
def setup(args: argparse.Namespace) -> Recipe:
    """Validate the command line into a :class:`Recipe`.

    Raises InvalidInput for an unreadable or invalid config (InvalidTrainingConfig), a missing
    dataset (or one that is not a local path / file:// URL) or a bad worker count.
    """
    config = read_config(args.config)
    dataset = args.dataset
    if not local_path(dataset, "dataset").is_file():
        raise InvalidInput(f"dataset {dataset} does not exist", code="dataset_not_found")
    if args.workers < 1:
        raise InvalidInput(f"--workers must be at least 1, got {args.workers}")
    name = args.name or time.strftime("lora-%Y%m%d-%H%M%S")
    storage_path, filesystem = storage_target(args.storage_path)
    if args.output:
        output = args.output
    elif filesystem is None:
        output = str(Path(storage_path) / name / "adapter")
    else:
        from backend.core.config import get_settings
        output = str(get_settings().home / "adapters" / name)
    sink = json.loads(args.sink) if args.sink else {"kind": "print"}
    return Recipe(config=config, dataset=dataset, output=output, name=name,
                  storage_path=storage_path, storage_filesystem=filesystem, workers=args.workers,
                  use_gpu=args.gpu, sink_spec=sink, ray_address=args.ray_address,
                  max_failures=args.max_failures, fail_at_step=args.fail_at_step,
                  ray_train=args.ray_train,
                  # no cluster named: this run starts its own Ray on this machine
                  local_cluster=not (args.ray_address or os.environ.get("RAY_ADDRESS")))


def job_main(argv: list[str]) -> int:
    """Job mode (started by the product): ``--job-id ID`` reads everything from the database."""
    p = argparse.ArgumentParser(prog="python -m ray_jobs.train_lora --job-id")
    p.add_argument("--job-id", required=True, help="training job row to run")
    p.add_argument("--fail-at-step", type=int, help="Testing: one worker fails once after this "
                                                    "step (exercises resume from checkpoint).")
    args = p.parse_args(argv)
    return run_job(args.job_id, fail_at_step=args.fail_at_step)


def main(argv: list[str] | None = None) -> int:
    """Run the recipe from the command line; returns the exit status (0, 1 or 2)."""
    argv = sys.argv[1:] if argv is None else argv
    if any(a == "--job-id" or a.startswith("--job-id=") for a in argv):
        return job_main(argv)
    args = build_parser().parse_args(argv)
    try:
        recipe = setup(args)
    except BrightRunError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    sink = make_sink(recipe.sink_spec)
    try:
        recipe.save(recipe.train(), sink)
        return 0
    except BrightRunError as exc:
        sink.failed(str(exc), traceback.format_exc())
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # noqa: BLE001 - any training failure is reported, then exit 1
        sink.failed(failure_message(exc), traceback.format_exc())
        print(f"training failed: {failure_message(exc)}", file=sys.stderr)
        return 1
    finally:
        recipe.cleanup()


if __name__ == "__main__":
    sys.exit(main())
