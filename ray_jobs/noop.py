"""A trivial Ray job entrypoint for tests and smoke checks.

Run by hand (see docs/ray.md): ``ray job submit --entrypoint-num-cpus 0 --runtime-env-json
'{"env_vars": {"PYTHONPATH": "'$PWD'"}}' -- .venv/bin/python -m ray_jobs.noop --message hi``.

It prints one line (``noop: <message>``) and the BrightRun settings it sees, then optionally:
``--ray-task`` connects to the cluster with ``ray.init()`` and runs one tiny remote task,
``--sleep S`` sleeps S seconds, ``--fail`` exits with status 3 after printing an error line.
"""
from __future__ import annotations

import argparse
import os
import re
import sys
import time


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="ray_jobs.noop", description=__doc__.splitlines()[0])
    parser.add_argument("--message", default="hello", help="printed as 'noop: MESSAGE'")
    parser.add_argument("--sleep", type=float, default=0.0, help="seconds to sleep before exiting")
    parser.add_argument("--fail", action="store_true", help="exit with status 3")
    parser.add_argument("--ray-task", action="store_true",
                        help="ray.init() and run one remote task (proves the driver can connect)")
    return parser.parse_args(argv)


def _run_ray_task() -> None:
    import ray

    ray.init(logging_level="WARNING")
    try:
        @ray.remote(num_cpus=0)
        def square(x: int) -> int:
            return x * x

        print(f"noop: ray task result {ray.get(square.remote(7))}", flush=True)
    finally:
        ray.shutdown()


def main(argv: list[str] | None = None) -> int:
    """Run the no-op job; returns the process exit status (0, or 3 with --fail)."""
    args = parse_args(argv)
    print(f"noop: {args.message}", flush=True)
    for var in sorted(os.environ):
        if var.startswith("BRIGHTRUN_") and "SECRET" not in var:
            shown = re.sub(r"://([^:/@]*):[^@]*@", r"://\1:****@", os.environ[var])
            print(f"noop: env {var}={shown}", flush=True)
    if args.ray_task:
        _run_ray_task()
    if args.sleep > 0:
        print(f"noop: sleeping {args.sleep:g}s", flush=True)
        time.sleep(args.sleep)
    if args.fail:
        print("noop: failing on purpose (--fail)", file=sys.stderr, flush=True)
        return 3
    print("noop: done", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
