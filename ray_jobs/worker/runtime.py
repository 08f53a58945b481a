"""Where the worker loop's Ray Train calls go: Ray Train itself, or processes of the job's own.

:func:`ray_jobs.worker.loop.train_loop_per_worker` asks a runtime for its rank, the checkpoint to
resume from, the device, and hands it checkpoints. :func:`runtime_kind` decides which one a job
uses (the service, to reserve the driver's CPUs, and the job itself ask it):

- ``in_driver`` — :class:`InProcessRuntime`, a world of one run by the job's driver itself: one
  CPU worker. Starting a Train worker group costs 15–30 s before the first step on a small machine
  (bench/RESULTS.md §3).
- ``local_group`` — :class:`ray_jobs.driver.local_group.LocalGroupRuntime`: N CPU ranks forked by the
  driver after it imported torch/transformers/peft, DDP over gloo on 127.0.0.1. Only on a local
  cluster (the product's own head: one machine), where the driver's node is the workers' node.
- ``ray_train`` — :class:`RayTrainRuntime`, a ``TorchTrainer`` worker group: GPU jobs, remote
  clusters, ``--ray-train``, and the two-node test hook (:data:`TEST_WORKER_RESOURCE_VAR`).

:class:`InProcessRuntime` keeps checkpoints where Ray Train would
(``{storage_path}/{name}/{checkpoint_dir_name}``, local folder or S3 through pyarrow), hands the
newest complete one back on a retry or a resumed run, and keeps the newest ``keep``.

Every runtime's ``report`` returns a checkpoint's path only once it is persisted where a restart
resumes from (Ray Train: committed by its controller), so "checkpoint saved" is never said of a
checkpoint a restart would not use.
"""
from __future__ import annotations

import contextlib
import tempfile
from dataclasses import dataclass
from typing import Any, Iterator

from backend.training.runtime_plan import RUNTIME_KINDS, TEST_WORKER_RESOURCE_VAR, driver_cpus, runtime_kind  # noqa: F401 - re-exported for the job side

COMPLETE_MARKER = ".brightrun_complete"
COMMIT_TIMEOUT_S = 300.0  # how long rank 0 waits for Ray Train to commit a reported checkpoint


class RayTrainRuntime:
    """The loop inside a Ray Train worker group."""

    in_process = False

    def context(self) -> tuple[int, int]:
        """(world rank, world size)."""
        import ray.train

        ctx = ray.train.get_context()
        return ctx.get_world_rank(), ctx.get_world_size()

    def get_checkpoint(self):
        import ray.train

        return ray.train.get_checkpoint()

    def report(self, metrics: dict[str, Any], folder: str | None, name: str) -> str | None:
        """A barrier across workers; ``folder`` (rank 0 only) is kept as checkpoint ``name``.
        Returns, for the rank that attached ``folder``, the checkpoint's path once Ray Train has
        committed it (registered it as the one a restarted worker group resumes from), or None
        when Ray did not confirm it within :data:`COMMIT_TIMEOUT_S`."""
        import ray.train

        checkpoint = ray.train.Checkpoint.from_directory(folder) if folder else None
        ray.train.report(metrics, checkpoint=checkpoint, checkpoint_dir_name=name)
        if not folder:
            return None
        if _local_mode():  # Ray Train's local mode (tests): no controller, no restart
            return folder
        return self._committed(name)

    @staticmethod
    def _committed(name: str) -> str | None:
        """The path of the committed checkpoint called ``name`` (waits for Ray Train's controller
        to process this report), or None."""
        import ray.train

        reported = ray.train.get_all_reported_checkpoints(
            consistency_mode=ray.train.CheckpointConsistencyMode.COMMITTED,
            timeout_s=COMMIT_TIMEOUT_S)
        for item in reversed(reported):
            if item.checkpoint.path.rstrip("/").endswith("/" + name):
                return item.checkpoint.path
        return None

    def prepare_model(self, model):
        import ray.train.torch

        return ray.train.torch.prepare_model(model)

    def device(self):
        import ray.train.torch

        return ray.train.torch.get_device()


def _local_mode() -> bool:
    """Whether the loop runs in Ray Train's local mode (``num_workers=0``: in the caller's
    process, nothing persisted, never restarted)."""
    try:
        from ray.train.v2._internal.execution.train_fn_utils import LocalTrainFnUtils, get_train_fn_utils
        return isinstance(get_train_fn_utils(), LocalTrainFnUtils)
    except (ImportError, RuntimeError):
        return False


@dataclass
class StoredCheckpoint:
    """A complete checkpoint folder in the run's storage."""

    path: str  # as Ray Train reports it: local absolute path, or "bucket/prefix/…" on S3
    filesystem: Any = None  # pyarrow filesystem, None for a local folder

    @contextlib.contextmanager
    def as_directory(self) -> Iterator[str]:
        """A local folder holding the checkpoint's files (downloaded first from S3)."""
        if self.filesystem is None:
            yield self.path
            return
        from pyarrow import fs

        with tempfile.TemporaryDirectory(prefix="brightrun-restore-") as tmp:
            fs.copy_files(self.path, tmp, source_filesystem=self.filesystem,
                          destination_filesystem=fs.LocalFileSystem())
            yield tmp


class InProcessRuntime:
    """A world of one in this process; checkpoints under ``{storage_path}/{name}/``."""

    in_process = True

    def __init__(self, storage_path: str, name: str, filesystem: Any = None, keep: int = 2):
        self.root = f"{storage_path.rstrip('/')}/{name}"
        self.filesystem = filesystem
        self.keep = max(1, keep)

    def _fs(self):
        from pyarrow import fs

        return self.filesystem or fs.LocalFileSystem()

    def context(self) -> tuple[int, int]:
        return 0, 1

    def prepare_model(self, model):
        return model

    def device(self):
        import torch

        return torch.device("cpu")

    def _folders(self) -> list[str]:
        """Paths of the checkpoint folders in storage, committed or not, oldest first."""
        from pyarrow import fs

        infos = self._fs().get_file_info(fs.FileSelector(self.root, allow_not_found=True))
        return sorted(i.path for i in infos if i.type == fs.FileType.Directory
                      and i.base_name.startswith("checkpoint_"))

    def _complete(self, folders: list[str] | None = None) -> list[str]:
        """Paths of the complete checkpoints among ``folders`` (default: all in storage), oldest
        first (names sort by step)."""
        from pyarrow import fs

        folders = self._folders() if folders is None else folders
        done = self._fs().get_file_info([f"{f}/{COMPLETE_MARKER}" for f in folders])
        return [f for f, marker in zip(folders, done) if marker.type == fs.FileType.File]

    def get_checkpoint(self) -> StoredCheckpoint | None:
        """The newest complete checkpoint of this run (a retry or a resumed run), or None."""
        folders = self._complete()
        return StoredCheckpoint(folders[-1], self.filesystem) if folders else None

    def report(self, metrics: dict[str, Any], folder: str | None, name: str) -> str | None:
        """Copy ``folder`` to the run's storage as ``name`` and commit it (:meth:`stage`, then
        :meth:`commit`). Returns the stored checkpoint's path (None without ``folder``)."""
        if folder is None:
            return None
        return self.commit(self.stage(folder, name))

    def stage(self, folder: str, name: str) -> str:
        """Copy ``folder``'s files to the run's storage as ``name``, without the complete marker:
        nothing resumes from it until :meth:`commit`. Returns its path."""
        from pyarrow import fs

        target, filesystem = f"{self.root}/{name}", self._fs()
        filesystem.create_dir(target, recursive=True)
        fs.copy_files(folder, target, source_filesystem=fs.LocalFileSystem(),
                      destination_filesystem=filesystem)
        return target

    def commit(self, target: str) -> str:
        """Write ``target``'s complete marker (a restart may now resume from it), then drop all
        but the newest ``keep`` complete checkpoints and any uncommitted folder older than it (a
        stage whose group failed before committing). Returns ``target``."""
        filesystem = self._fs()
        with filesystem.open_output_stream(f"{target}/{COMPLETE_MARKER}") as out:
            out.write(b"{}")
        folders = self._folders()
        complete = self._complete(folders)
        stale = [f for f in folders if f < target and f not in complete]
        for old in complete[:-self.keep] + stale:
            filesystem.delete_dir(old)
        return target
