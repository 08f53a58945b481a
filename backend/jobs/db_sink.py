"""DbSink: the ProgressSink (ray_jobs/worker/sinks.py) that writes a running job's progress to the database
through backend.jobs.progress. Lives on rank 0 of the training run."""
from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from sqlalchemy import delete

from backend.db.models import MetricsPoint, utcnow
from backend.db.session import session_scope
from backend.jobs import progress as jp

log = logging.getLogger(__name__)
LOG_FLUSH_S = 2.0


class DbSink:
    """Writes stages, logs, metric batches, progress, checkpoints and the final result of job
    ``job_id``. Writes retry through short database outages (see job_progress.with_retry)."""

    def __init__(self, job_id: str, artifact_id: str | None = None, workers: int | None = None):
        self.job_id, self.artifact_id = job_id, artifact_id
        self._logs: list[dict] = []
        self._last_log_flush = time.monotonic()

    # -- protocol -----------------------------------------------------------------------------
    def stage(self, stage: str) -> None:
        if stage == "completed":
            return  # complete_job sets it together with the artifact
        jp.set_stage(self.job_id, stage)
        self.log("info", f"stage: {stage}")

    def log(self, level: str, message: str, **meta: Any) -> None:
        level = {"debug": "INFO", "warn": "WARNING"}.get(level.lower(), level.upper())
        self._logs.append({"level": level, "message": message, "metadata": meta or None,
                           "timestamp": utcnow()})  # when it happened, not when it was flushed
        if level == "ERROR" or time.monotonic() - self._last_log_flush >= LOG_FLUSH_S:
            self.flush_logs()

    def flush_logs(self) -> None:
        logs, self._logs = self._logs, []
        jp.add_logs(self.job_id, logs)
        self._last_log_flush = time.monotonic()

    def metrics(self, points: list[dict[str, Any]]) -> None:
        jp.append_metrics(self.job_id, points)
        if self._logs:
            self.flush_logs()

    def progress(self, epoch: int, step: int, total_steps: int, percent: float,
                 current_metrics: dict[str, Any], eta_s: float | None) -> None:
        jp.update_progress(self.job_id, epoch=epoch, step=step, total_steps=total_steps,
                           percent=percent, current_metrics=current_metrics, eta_s=eta_s)

    def checkpoint(self, step: int, epoch: int, loss: float | None, uri: str,
                   size_bytes: int) -> None:
        bucket = uri.split("://", 1)[1].split("/", 1)[0] if uri.startswith("s3://") else "local"
        jp.add_checkpoint(self.job_id, step=step, epoch=epoch, loss=loss, bucket=bucket, path=uri,
                          size_bytes=size_bytes)
        self.log("info", f"checkpoint at step {step} (epoch {epoch}) saved to {uri}")

    def samples(self, step: int, items: list[dict[str, Any]]) -> None:
        jp.add_samples(self.job_id, step, items)

    def resumed(self, step: int, epoch: int) -> None:
        def go() -> None:
            with session_scope() as s:
                s.execute(delete(MetricsPoint).where(MetricsPoint.job_id == self.job_id,
                                                     MetricsPoint.step > step))
                jp.refresh_rollups(s, self.job_id, step + 1)
        jp.with_retry(go, "resume")
        self.log("warning", f"resumed from the checkpoint at step {step} (epoch {epoch}) after a "
                            "worker failure")

    def completed(self, result: dict[str, Any]) -> None:
        """Record the adapter as the job's model artifact. In a job, rank 0 uploaded it (from
        whichever node it ran on) under ``models/{artifact_id}/`` and says so in ``uploaded``:
        this only records it. Without ``uploaded`` (a run given no upload prefix) the adapter
        folder must be on this machine and is uploaded here, under the same one prefix.
        Raises InvalidInput when the adapter was uploaded elsewhere or is nowhere."""
        from backend.core.errors import InvalidInput
        from backend.storage import get_object_store

        self.stage("saving")
        artifact_id = self.artifact_id or jp.artifact_id_for(self.job_id)
        prefix = f"models/{artifact_id}/"
        result = normalise_result(result)
        uploaded = result.pop("uploaded", None)
        if uploaded is not None:
            if uploaded.get("prefix") != prefix:
                raise InvalidInput(f"rank 0 uploaded the adapter to {uploaded.get('prefix')!r}, "
                                   f"not to this job's {prefix!r}", code="artifact_mismatch")
            sizes = dict(uploaded["sizes"])
        elif result.get("adapter_dir") and Path(result["adapter_dir"]).is_dir():
            sizes = get_object_store().upload_dir(Path(result["adapter_dir"]), prefix)
        else:
            raise InvalidInput("the adapter was not uploaded by rank 0 and its folder "
                               f"{result.get('adapter_dir')!r} is not on this node",
                               code="adapter_missing")
        tok = sum(v for k, v in sizes.items() if "token" in k or k.endswith("chat_template.jinja"))
        artifacts = {
            "prefix": prefix,
            "adapter_model_path": prefix + "adapter_model.safetensors",
            "adapter_config_path": prefix + "adapter_config.json",
            "tokenizer_path": prefix,
            "files": sorted(sizes),
            "file_sizes": {"adapter_model": _size(sizes, "adapter_model.safetensors"),
                           "adapter_config": _size(sizes, "adapter_config.json"),
                           "tokenizer": tok},
        }
        self.flush_logs()
        jp.complete_job(self.job_id, artifact_id=artifact_id, artifacts=artifacts, result=result)
        from backend.jobs.figures import write_adapter_readme

        try:
            write_adapter_readme(self.job_id)  # the README shows the figures every page shows
        except Exception as exc:  # noqa: BLE001 - the model is stored; its README is a courtesy
            self.log("warning", f"the adapter's README could not be written: {exc}")
            self.flush_logs()

    def failed(self, message: str, stack: str) -> None:
        try:
            self.flush_logs()
        finally:
            jp.fail_job(self.job_id, message, stack)


def _size(sizes: dict[str, int], name: str) -> int:
    for k, v in sizes.items():
        if k == name or k.endswith("/" + name):
            return v
    return 0


def normalise_result(result: dict[str, Any]) -> dict[str, Any]:
    """Map the recipe's result keys (ray_jobs/worker/loop.py ``_result``) onto the names
    ``job_progress.complete_job`` uses; keys already in that form are kept."""
    history = result.get("train_loss_history") or []
    counts = result.get("dataset") or {}
    pick = {
        "adapter_dir": result.get("adapter_dir") or result.get("output"),
        "first_train_loss": result.get("first_train_loss")
        or (history[0].get("training_loss") if history else None),
        "final_train_loss": result.get("final_train_loss", result.get("final_training_loss")),
        "final_val_loss": result.get("final_val_loss", result.get("final_validation_loss")),
        "best_val_loss": result.get("best_val_loss", result.get("best_validation_loss")),
        "best_epoch": result.get("best_epoch"),
        "base_val_loss": result.get("base_val_loss", result.get("base_validation_loss")),
        "tokens_processed": result.get("tokens_processed",
                                       result.get("total_tokens_processed")),
        "duration_s": result.get("duration_s", result.get("duration_seconds")),
        "avg_throughput": result.get("avg_throughput"),
        "final_learning_rate": result.get("final_learning_rate"),
        "total_steps": result.get("total_steps"),
        "model_params": result.get("model_params"),
        "truncated": result.get("truncated", counts.get("truncated") if isinstance(counts, dict)
                                else None),
    }
    return {**result, **pick}
