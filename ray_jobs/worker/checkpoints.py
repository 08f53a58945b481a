"""Checkpoints of the per-worker loop: restore from the runtime's checkpoint (retry or resume),
save one (every rank reports, rank 0 attaches the files), and the per-rank reseed that makes a
resumed run draw what an uninterrupted one would."""
from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

from ray_jobs.worker.state import Run

TRAINER_STATE = "trainer_state.json"
OPTIMIZER_STATE = "optimizer_state.pt"


def restore(run: Run) -> None:
    """Continue from the runtime's checkpoint if there is one (retry or resume)."""
    import torch
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    checkpoint = run.rt.get_checkpoint()
    if checkpoint is None:
        return
    with checkpoint.as_directory() as folder:
        folder = Path(folder)
        set_peft_model_state_dict(run.inner, load_file(str(folder / "adapter_model.safetensors"),
                                                       device=str(run.device)))
        saved = torch.load(folder / OPTIMIZER_STATE, map_location=run.device, weights_only=True)
        run.optimizer.load_state_dict(saved["optimizer"])
        run.scheduler.load_state_dict(saved["scheduler"])
        run.state = json.loads((folder / TRAINER_STATE).read_text())
    run.start_step = run.state["global_step"]
    run.elapsed_before = float(run.state.get("elapsed_s", 0.0))
    run.sink.resumed(run.state["global_step"], run.state["epoch"] + 1)
    run.sink.log("info", f"resumed from the checkpoint at step {run.start_step}")


def reseed(run: Run) -> None:
    """Seed dropout per rank from (seed, rank, step): a resumed run draws what an uninterrupted
    run draws after the same checkpoint, without saving RNG state per worker."""
    import torch

    torch.manual_seed((run.cfg.seed * 1_000_003 + run.rank * 7_919 + run.state["global_step"])
                      % 2**63)


def save_checkpoint(run: Run, train_loss: float, val_loss: float | None) -> None:
    """Every rank reports (``ray.train.report`` is a barrier); rank 0 attaches the files and tells
    the sink about the checkpoint only once the runtime confirms it persisted (Ray Train: committed,
    i.e. what a restarted worker group resumes from)."""
    import torch

    st = run.state
    st["elapsed_s"] = elapsed(run)
    name = f"checkpoint_step_{st['global_step']:07d}"
    metrics = {"step": st["global_step"], "epoch": st["epoch"], "training_loss": train_loss,
               "validation_loss": val_loss}
    if run.rank != 0:
        run.rt.report(metrics, None, name)
        reseed(run)
        return
    with tempfile.TemporaryDirectory(prefix="brightrun-ckpt-") as folder:
        run.inner.save_pretrained(folder)
        torch.save({"optimizer": run.optimizer.state_dict(),
                    "scheduler": run.scheduler.state_dict()}, Path(folder) / OPTIMIZER_STATE)
        (Path(folder) / TRAINER_STATE).write_text(json.dumps(st))
        size = sum(p.stat().st_size for p in Path(folder).rglob("*") if p.is_file())
        persisted = run.rt.report(metrics, folder, name)
    if persisted is None:  # not what a restart would resume from: say so, record nothing
        run.sink.log("warning", f"checkpoint at step {st['global_step']} was not confirmed "
                     "persisted; a restart resumes from the previous one")
    else:
        root = run.loop.get("checkpoint_root") or ""
        run.sink.checkpoint(st["global_step"], st["epoch"], val_loss if val_loss is not None
                            else train_loss, f"{root.rstrip('/')}/{name}" if root else name,
                            size)
    reseed(run)


def elapsed(run: Run) -> float:
    """Seconds spent on this run, including earlier attempts up to their last checkpoint."""
    return run.elapsed_before + time.monotonic() - run.started
