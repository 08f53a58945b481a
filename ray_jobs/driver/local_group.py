"""N CPU ranks as processes forked by the Ray job's driver (``runtime_kind`` ``local_group``).

On a local cluster (the product's own Ray head: one machine) a Ray Train worker group costs ~17 s
before the first step of a 2-worker job — controller, worker processes, and each worker importing
torch/transformers/peft again (bench/RESULTS.md §3, §10). Here the driver imports them once, then
forks one process per rank; the children share the imported modules and start training at once.
The ranks form a gloo process group on 127.0.0.1 (a free port per attempt), run 1 torch thread
each (what a 1-CPU Ray worker gets; the service reserves ``workers`` CPUs for the driver) and run
:func:`ray_jobs.worker.loop.train_loop_per_worker` with a :class:`LocalGroupRuntime`: the same
contract as Ray Train's — ``report`` is a barrier, rank 0 persists checkpoints exactly like
:class:`~ray_jobs.worker.runtime.InProcessRuntime` (same layout, complete marker, local or S3), every rank
resumes from the newest complete one, ``prepare_model`` wraps the model in DDP.

Why fork (not spawn/forkserver): the point is to inherit the imports already done. What the parent
holds when it forks, and how the children treat it:

- database: the driver has written the job's state through SQLAlchemy; a child disposes the
  inherited engines with ``close=False`` (``backend.db.session.after_fork``) so it never touches
  the parent's pooled connections, and builds its sink (``make_sink``) itself;
- Ray: the driver does not connect to Ray in this mode (nothing of Ray to inherit);
- threads: the driver starts none of its own; native ones (pyarrow's pools, an S3 client) are not
  copied into the children, which only use the libraries' fork-safe entry points (pyarrow
  re-initialises its thread pools after fork).

Failures: a rank that raises, exits non-zero or is killed stops the others (SIGTERM, then SIGKILL),
and the whole group restarts from the newest checkpoint, at most ``max_failures`` times (Ray
Train's FailureConfig meaning); a BrightRunError (bad input) is raised at once. Cancelling the Ray
job (SIGTERM to the driver) terminates the ranks; each rank also asks the kernel to kill it when
the driver dies (``PR_SET_PDEATHSIG``), so a SIGKILLed driver leaves no orphan.
"""
from __future__ import annotations

import os
import signal
import socket
import sys
import time
import traceback
from typing import Any

from backend.core.errors import BrightRunError
from ray_jobs.worker.runtime import InProcessRuntime

STOP_WAIT_S = 5.0  # how long a rank may take to exit after SIGTERM before it is SIGKILLed
PR_SET_PDEATHSIG = 1


class RankFailed(RuntimeError):
    """A rank of the group failed (raised, exited non-zero or was killed)."""

    def __init__(self, rank: int, reason: str):
        super().__init__(f"worker {rank} failed: {reason}")
        self.rank, self.reason = rank, reason


class LocalGroupRuntime:
    """Rank ``rank`` of ``world`` forked ranks; checkpoints through an :class:`InProcessRuntime`
    (rank 0 writes, every rank reads)."""

    in_process = True

    def __init__(self, rank: int, world: int, store: InProcessRuntime):
        self.rank, self.world, self.store = rank, world, store

    def context(self) -> tuple[int, int]:
        return self.rank, self.world

    def get_checkpoint(self):
        return self.store.get_checkpoint()

    def report(self, metrics: dict[str, Any], folder: str | None, name: str) -> str | None:
        """A barrier across ranks, and a checkpoint committed only once every rank reached it
        (Ray Train's rule): rank 0 copies ``folder`` to storage as ``name`` without its complete
        marker, all ranks meet at the barrier, then rank 0 writes the marker. A rank lost before
        the barrier leaves an uncommitted copy that no restart resumes from (and the job never
        records). Returns the committed path on rank 0, else None."""
        import torch.distributed as dist

        staged = self.store.stage(folder, name) if folder else None
        dist.barrier()
        return self.store.commit(staged) if staged else None

    def prepare_model(self, model):
        from torch.nn.parallel import DistributedDataParallel

        return DistributedDataParallel(model)

    def device(self):
        import torch

        return torch.device("cpu")


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now (rank 0's rendezvous)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def warm_imports(model_path: str | None) -> None:
    """Import what every rank needs before forking: torch, torch.distributed, transformers (and
    the base model's architecture module, which transformers imports lazily), peft, safetensors,
    and our loop's modules."""
    import peft  # noqa: F401
    import safetensors.torch  # noqa: F401
    import torch  # noqa: F401
    import torch.distributed  # noqa: F401
    import torch.nn.parallel  # noqa: F401
    import transformers
    from transformers import AutoModelForCausalLM, AutoTokenizer  # noqa: F401

    import ray_jobs.worker.loop  # noqa: F401

    if model_path:
        try:  # the model class and tokenizer class of this architecture
            config = transformers.AutoConfig.from_pretrained(model_path, local_files_only=True)
            AutoModelForCausalLM._model_mapping[type(config)]  # noqa: B018 - imports the module
        except Exception:  # noqa: BLE001 - only a warm-up: the rank reports a real problem
            pass


# ----- one rank ----------------------------------------------------------------------------------
def _die_with_parent() -> None:
    """Ask the kernel to SIGKILL this process when its parent (the driver) dies (Linux)."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        pass


def rank_main(rank: int, world: int, port: int, loop: dict[str, Any], store: InProcessRuntime,
              parent: int, conn, train=None) -> None:
    """What a forked rank runs: join the group, train, send ``("ok", value)`` or
    ``("error", exception or None, reason, stack)`` to the driver, exit (1 on error). ``train``:
    the loop (default :func:`~ray_jobs.worker.loop.train_loop_per_worker`)."""
    _die_with_parent()
    if os.getppid() != parent:  # the driver died before the line above took effect
        os._exit(1)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # not the driver's handler
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    if "backend.db.session" in sys.modules:  # the driver used the database: not its connections
        sys.modules["backend.db.session"].after_fork()
    import torch
    import torch.distributed as dist

    from ray_jobs.worker.loop import train_loop_per_worker

    torch.set_num_threads(1)
    os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
    try:
        dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank,
                                world_size=world)
        value = (train or train_loop_per_worker)(loop, runtime=LocalGroupRuntime(rank, world,
                                                                                 store))
        conn.send(("ok", value))
    except BaseException as exc:  # noqa: BLE001 - reported to the driver, which decides
        keep = exc if isinstance(exc, BrightRunError) else None
        try:
            conn.send(("error", keep, f"{type(exc).__name__}: {exc}", traceback.format_exc()))
        except Exception:  # noqa: BLE001 - e.g. an unpicklable error: the reason still goes
            conn.send(("error", None, f"{type(exc).__name__}: {exc}", traceback.format_exc()))
        conn.close()
        os._exit(1)
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
    conn.close()


# ----- the group ---------------------------------------------------------------------------------
def _exit_reason(exitcode: int | None) -> str:
    if exitcode is not None and exitcode < 0:
        return f"killed by {signal.Signals(-exitcode).name}"
    return f"exited with status {exitcode}"


def stop_all(procs: list) -> None:
    """SIGTERM every live rank, then SIGKILL those still alive after :data:`STOP_WAIT_S`."""
    for proc in procs:
        if proc.exitcode is None:
            proc.terminate()
    deadline = time.monotonic() + STOP_WAIT_S
    for proc in procs:
        proc.join(max(0.0, deadline - time.monotonic()))
        if proc.exitcode is None:
            proc.kill()
            proc.join()


def run_group(world: int, loop: dict[str, Any], store: InProcessRuntime,
              on_start=None, train=None) -> Any:
    """Fork ``world`` ranks, wait for them, return rank 0's value. Raises the rank's
    BrightRunError, or :class:`RankFailed` for the first rank that failed (the others are
    stopped). ``on_start(pids)`` is called once all ranks are forked; ``train`` replaces the
    loop (tests: a wrapper around it)."""
    import multiprocessing as mp
    from multiprocessing.connection import wait

    ctx = mp.get_context("fork")  # deliberately: the children inherit the driver's imports
    port, parent = free_port(), os.getpid()
    procs, readers = [], {}
    try:
        for rank in range(world):
            receive, send = ctx.Pipe(duplex=False)
            proc = ctx.Process(target=rank_main, name=f"brightrun-rank-{rank}", daemon=True,
                               args=(rank, world, port, loop, store, parent, send, train))
            proc.start()
            send.close()
            procs.append(proc)
            readers[receive] = rank
        if on_start:
            on_start([p.pid for p in procs])
        return _wait(procs, readers, wait)
    finally:
        stop_all(procs)
        for conn in readers:
            conn.close()


def _wait(procs: list, readers: dict, wait) -> Any:
    """Collect the ranks' messages until all exited; stop at the first failure."""
    messages: dict[int, tuple] = {}
    open_readers = dict(readers)
    while True:
        sentinels = [p.sentinel for p in procs if p.exitcode is None]
        for ready in wait(list(open_readers) + sentinels, timeout=1.0):
            if ready in open_readers:
                try:
                    messages[open_readers[ready]] = ready.recv()
                except (EOFError, OSError):
                    del open_readers[ready]
        failed = _first_failure(procs, messages)
        if failed is not None:
            raise failed
        if not open_readers and all(p.exitcode == 0 for p in procs):
            message = messages.get(0)
            return message[1] if message and message[0] == "ok" else None


def _first_failure(procs: list, messages: dict[int, tuple]) -> BaseException | None:
    """The error to act on: a BrightRunError a rank raised, else the first rank that failed,
    preferring one that raised over one torn down by its peer (a gloo error)."""
    failed = [rank for rank, p in enumerate(procs)
              if (p.exitcode not in (None, 0)) or messages.get(rank, ("ok",))[0] == "error"]
    if not failed:
        return None
    for rank in failed:
        message = messages.get(rank)
        if message and message[0] == "error" and isinstance(message[1], BrightRunError):
            return message[1]
    def cause(rank: int) -> str:
        message = messages.get(rank)
        return message[2] if message and message[0] == "error" \
            else _exit_reason(procs[rank].exitcode)

    own = [r for r in failed if "DistBackendError" not in cause(r) and "Gloo" not in cause(r)]
    rank = (own or failed)[0]
    return RankFailed(rank, cause(rank))
