"""The training recipe's steps — train → save → cleanup — shared by the manual command line
(``ray_jobs.train_lora``) and job mode (``ray_jobs.driver.train_job``): the :class:`Recipe` a run needs,
the ``TorchTrainer`` (or the in-driver loop for one CPU worker), and handing rank 0's result to a
sink."""
from __future__ import annotations

import contextlib
import json
import os
import signal
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from backend.core.errors import BrightRunError, InvalidInput
from ray_jobs.worker.loop import TrainConfig, train_loop_per_worker
from ray_jobs.worker.runtime import TEST_WORKER_RESOURCE_VAR  # noqa: F401 (tests import it here)
from ray_jobs.worker.sinks import ProgressSink, make_sink

REPO_ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Recipe:
    """Everything a run needs, resolved and validated by :func:`setup`."""

    config: TrainConfig
    dataset: str
    output: str
    name: str
    storage_path: str
    storage_filesystem: Any = None
    workers: int = 1
    use_gpu: bool = False
    sink_spec: dict[str, Any] = field(default_factory=lambda: {"kind": "print"})
    ray_address: str | None = None
    home: str | None = None
    max_failures: int = 2
    fail_at_step: int | None = None
    started_ray: bool = False
    ray_train: bool = False  # force a TorchTrainer worker group even for one CPU worker
    local_cluster: bool = False  # the cluster is this machine: N CPU ranks may be forked here
    upload_prefix: str | None = None  # rank 0 uploads the adapter there (the configured store)
    card: dict[str, Any] = field(default_factory=dict)  # job/dataset/preset named in the README

    # the recipe's steps in order (torchtune style): built (setup) → train → save → cleanup
    def train(self):
        """:func:`train`: Ray's ``Result`` or an :class:`InProcessResult`."""
        return train(self)

    def save(self, result, sink: ProgressSink) -> dict[str, Any]:
        """:func:`save`: rank 0's result handed to ``sink``."""
        return save(self, result, sink)

    def cleanup(self) -> None:
        """:func:`cleanup`: shut down the Ray this run started."""
        cleanup(self)


def read_config(path: str) -> TrainConfig:
    try:
        raw = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise InvalidInput(f"cannot read config {path}: {exc}", code="invalid_config") from None
    if not isinstance(raw, dict):
        raise InvalidInput(f"config {path} must hold a JSON object", code="invalid_config")
    return TrainConfig(**raw)  # InvalidTrainingConfig lists every bad value


def storage_target(storage_path: str | None) -> tuple[str, Any]:
    """(path, pyarrow filesystem or None) for RunConfig; s3:// uses the BRIGHTRUN_S3_* settings."""
    from backend.core.config import get_settings

    if not storage_path:
        return str(get_settings().home / "ray_results"), None
    if not storage_path.startswith("s3://"):
        return str(Path(storage_path).expanduser().resolve()), None
    from pyarrow import fs

    settings = get_settings()
    endpoint = settings.s3_endpoint or ""
    secure = settings.s3_secure if settings.s3_secure is not None else endpoint.startswith("https")
    filesystem = fs.S3FileSystem(
        endpoint_override=endpoint.split("://", 1)[-1], scheme="https" if secure else "http",
        access_key=settings.s3_access_key, secret_key=settings.s3_secret_key,
        region=settings.s3_region)
    return storage_path[len("s3://"):], filesystem


def loop_config(recipe: Recipe) -> dict[str, Any]:
    """The ``train_loop_config`` handed to every worker (plain JSON-able values)."""
    root = recipe.storage_path if recipe.storage_filesystem is None \
        else f"s3://{recipe.storage_path}"
    return {"config": recipe.config.model_dump(), "dataset": recipe.dataset,
            "output": recipe.output, "sink": recipe.sink_spec, "home": recipe.home,
            "checkpoint_root": f"{root.rstrip('/')}/{recipe.name}",
            "metrics_every_steps": 10, "metrics_every_s": 5.0, "fail_at_step": recipe.fail_at_step,
            "upload_prefix": recipe.upload_prefix, "use_gpu": recipe.use_gpu, "card": recipe.card}


# ----- train -------------------------------------------------------------------------------------
def connect_ray(address: str | None) -> bool:
    """Join the given cluster, the job's cluster (``RAY_ADDRESS`` set by Ray), or start a local
    Ray. Returns True when this process started Ray (and must shut it down)."""
    import ray

    if ray.is_initialized():
        return False
    env_address = os.environ.get("RAY_ADDRESS", "")
    if address or (env_address and not env_address.startswith("http")):
        ray.init(address=address or env_address)
        return False
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    paths = [str(REPO_ROOT)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    os.environ["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))  # workers import ray_jobs
    os.environ.pop("RAY_ADDRESS", None)  # a dashboard URL is not something ray.init can join
    ray.init(include_dashboard=False)
    return True


def train(recipe: Recipe):
    """Run the ``TorchTrainer`` — or the same loop in this process (one CPU worker), or in
    processes forked by it (CPU workers on a local cluster): :func:`ray_jobs.worker.runtime.runtime_kind`
    — and return Ray's ``Result`` (or an :class:`InProcessResult`). Raises ray's
    TrainingFailedError (or the loop's last error) when the workers failed more than
    ``max_failures`` times."""
    from ray_jobs.worker.runtime import runtime_kind

    kind = "ray_train" if recipe.ray_train else runtime_kind(recipe.workers, recipe.use_gpu,
                                                             recipe.local_cluster)
    if kind == "in_driver":
        return train_in_process(recipe)
    if kind == "local_group":
        return train_local_group(recipe)
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    recipe.started_ray = connect_ray(recipe.ray_address)
    _phase(recipe, "worker_group", workers=recipe.workers, mode="Ray Train")
    trainer = TorchTrainer(
        train_loop_per_worker,
        train_loop_config=loop_config(recipe),
        scaling_config=ScalingConfig(num_workers=recipe.workers, use_gpu=recipe.use_gpu,
                                     resources_per_worker=worker_resources(recipe.use_gpu)),
        run_config=RunConfig(name=recipe.name, storage_path=recipe.storage_path,
                             storage_filesystem=recipe.storage_filesystem,
                             failure_config=FailureConfig(max_failures=recipe.max_failures),
                             checkpoint_config=CheckpointConfig(num_to_keep=2)),
    )
    with abort_on_sigterm():
        return trainer.fit()


@contextlib.contextmanager
def abort_on_sigterm() -> Iterator[None]:
    """Stopping a Ray job (``cancel``) sends its driver SIGTERM, which would kill it on the spot
    and leave Ray Train's controller, workers and detached ``PlacementGroupCleaner`` actor to
    notice on their own. Turn it into a Ctrl-C, which Ray Train's ``fit()`` handles by aborting the
    run: the controller stops the worker group and the cleaner, then exits."""
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, lambda *_: signal.raise_signal(signal.SIGINT))
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def worker_resources(use_gpu: bool, environ: dict[str, str] | None = None
                     ) -> dict[str, float] | None:
    """``resources_per_worker`` of the worker group: 1 CPU per CPU worker (Ray's default for a GPU
    worker). Test hook, not a setting: ``BRIGHTRUN_TEST_WORKER_RESOURCE=NAME`` (in the job's
    environment) also asks 1 unit of the custom resource NAME per worker, so a test can place the
    workers on the node that has it (tests/e2e/test_two_node.py)."""
    extra = (os.environ if environ is None else environ).get(TEST_WORKER_RESOURCE_VAR, "").strip()
    base: dict[str, float] | None = None if use_gpu else {"CPU": 1}
    if not extra:
        return base
    return {**(base or {"GPU": 1}), extra: 1}


@dataclass
class InProcessResult:
    """What :func:`save` reads from Ray's ``Result``: rank 0's return value and the checkpoint."""

    return_value: dict[str, Any] | None
    checkpoint: Any = None


def train_in_process(recipe: Recipe) -> InProcessResult:
    """One CPU worker in this process with 1 torch thread (what a 1-CPU Ray worker gets), with
    Ray Train's FailureConfig meaning: an error other than bad input restarts the loop from the
    newest checkpoint, at most ``max_failures`` times."""
    import torch

    from ray_jobs.worker.runtime import InProcessRuntime

    torch.set_num_threads(1)
    _log(recipe, "info", "1 CPU worker: training in this process (no Ray Train worker group)")
    runtime = InProcessRuntime(recipe.storage_path, recipe.name, recipe.storage_filesystem)

    def attempt() -> InProcessResult:
        value = train_loop_per_worker(loop_config(recipe), runtime=runtime)
        return InProcessResult(value, runtime.get_checkpoint())

    return _with_retries(recipe, attempt, Exception,  # retried like a lost Ray Train worker
                         lambda exc: f"training failed ({failure_message(exc)});")


def _with_retries(recipe: Recipe, attempt, retried: type[BaseException], lead) -> Any:
    """``attempt()``, run again from the newest checkpoint after a ``retried`` error other than
    bad input (BrightRunError), at most ``recipe.max_failures`` times (Ray Train's FailureConfig
    meaning); each retry is logged as "``lead(exc)`` restarting from the last checkpoint (retry
    i of n)". The last error is raised."""
    for n in range(recipe.max_failures + 1):
        try:
            return attempt()
        except retried as exc:
            if isinstance(exc, BrightRunError) or n == recipe.max_failures:
                raise
            _log(recipe, "warning", f"{lead(exc)} restarting from the last checkpoint "
                 f"(retry {n + 1} of {recipe.max_failures})")
    raise AssertionError("unreachable")


def train_local_group(recipe: Recipe) -> InProcessResult:
    """Train ``recipe`` on ``recipe.workers`` ranks forked by this process
    (:mod:`ray_jobs.driver.local_group`); returns an :class:`InProcessResult` with rank 0's value.
    Retries the group from the newest checkpoint at most ``recipe.max_failures`` times; raises a
    rank's BrightRunError at once, :class:`RankFailed` after the last retry, KeyboardInterrupt
    when the Ray job is stopped (SIGTERM)."""
    from backend.base_models.registry import resolve_base_model
    from ray_jobs.driver.local_group import RankFailed, run_group, warm_imports
    from ray_jobs.worker.runtime import InProcessRuntime

    try:
        model_path = str(resolve_base_model(recipe.config.base_model, recipe.home))
    except Exception:  # noqa: BLE001 - the ranks report a missing model as bad input
        model_path = None
    warm_imports(model_path)
    _phase(recipe, "imports", where="driver")
    store = InProcessRuntime(recipe.storage_path, recipe.name, recipe.storage_filesystem)
    loop, world = loop_config(recipe), recipe.workers
    _log(recipe, "info", f"{world} CPU workers: {world} processes forked by this driver "
                         "(no Ray Train worker group)")

    def started(pids: list[int]) -> None:
        _phase(recipe, "worker_group", workers=world, mode="local processes", pids=pids)

    def attempt() -> InProcessResult:
        value = run_group(world, loop, store, on_start=started)
        return InProcessResult(value, store.get_checkpoint())

    with _interrupt_on_sigterm():
        return _with_retries(recipe, attempt, RankFailed, lambda exc: f"{exc},")


class _interrupt_on_sigterm:
    """Stopping the Ray job sends the driver SIGTERM: raise KeyboardInterrupt in the main thread,
    so :func:`run_group` stops the ranks on its way out (Ray also signals them itself)."""

    def __enter__(self):
        import threading

        self.previous = None
        if threading.current_thread() is threading.main_thread():
            self.previous = signal.signal(signal.SIGTERM, _stopped)
        return self

    def __exit__(self, *exc_info) -> None:
        if self.previous is not None:
            signal.signal(signal.SIGTERM, self.previous)


def _stopped(*_: Any) -> None:
    raise KeyboardInterrupt("the Ray job was stopped (SIGTERM)")


def _phase(recipe: Recipe, name: str, **meta: Any) -> None:
    from ray_jobs.worker.startup import phase

    sink = make_sink(recipe.sink_spec)
    phase(sink, name, **meta)
    getattr(sink, "flush_logs", lambda: None)()


def _log(recipe: Recipe, level: str, message: str) -> None:
    sink = make_sink(recipe.sink_spec)
    sink.log(level, message)
    getattr(sink, "flush_logs", lambda: None)()


# ----- save and cleanup --------------------------------------------------------------------------
def save(recipe: Recipe, result, sink: ProgressSink) -> dict[str, Any]:
    """Hand rank 0's result to the sink (``completed``). Raises InvalidInput when Ray returned no
    result (rank 0 did not finish)."""
    value = getattr(result, "return_value", None)
    if not isinstance(value, dict):
        raise InvalidInput("training finished without a result from rank 0", code="no_result")
    if getattr(result, "checkpoint", None) is not None:
        value["last_checkpoint"] = result.checkpoint.path
    sink.completed(value)
    return value


def cleanup(recipe: Recipe) -> None:
    """Shut down the local Ray this process started (a joined cluster is left running)."""
    if recipe.started_ray:
        import ray

        ray.shutdown()


def failure_message(exc: BaseException) -> str:
    """The root cause's message (Ray wraps worker errors)."""
    cause = exc
    while cause.__cause__ is not None:
        cause = cause.__cause__
    return f"{type(cause).__name__}: {cause}"
