"""How a job ran on its hardware, shown on the Monitor and the Models page: device and dtypes,
attention, gradient checkpointing, and the peak GPU memory per worker against the estimate's
prediction (``VramEstimate.allocated_gb``)."""
from __future__ import annotations

import streamlit as st

from app.ui.widgets import literal
from backend.training.memory_check import memory_check


def precision_text(precision: dict | None) -> str:
    """'cuda · base weights bfloat16, LoRA float32 · TF32 on · attention sdpa · gradient
    checkpointing off' (empty when the job recorded nothing: jobs from before this was kept)."""
    if not precision:
        return ""
    return (f"{precision.get('device', '—')} · base weights {precision.get('base_dtype', '—')}, "
            f"LoRA {precision.get('trainable_dtype', '—')} · TF32 "
            f"{'on' if precision.get('tf32') else 'off'} · attention "
            f"{precision.get('attn_implementation') or '—'} · gradient checkpointing "
            f"{'on' if precision.get('gradient_checkpointing') else 'off'}")


def memory_text(peak_gb: float | None, predicted_gb: float | None) -> str:
    """'peak 33.0 GB allocated per worker (predicted 30.1 GB, 9 % under)'."""
    if peak_gb is None:
        return "no GPU memory measured" + (f" (predicted {predicted_gb:,.1f} GB allocated per "
                                           "worker)" if predicted_gb else "")
    text = f"peak {peak_gb:,.2f} GB allocated per worker"
    check = memory_check("", predicted_gb, peak_gb)
    if check is not None:
        text += (f" (predicted {predicted_gb:,.2f} GB, {abs(check.error_percent):.0f} % "
                 f"{'under' if check.error_percent < 0 else 'over'})")
    return text


def gpu_memory(job) -> None:
    """Monitor: peak allocated GPU memory (largest worker) next to the estimate's prediction, and
    each worker's utilisation and memory from the latest metric point. Nothing for CPU jobs."""
    if not (job.gpu_config or {}).get("use_gpu"):
        return
    cm = job.current_metrics or {}
    predicted = ((job.estimate or {}).get("vram") or {}).get("allocated_gb")
    peak = cm.get("gpu_peak_allocated_gb")
    c = st.columns(4)
    c[0].metric("Peak GPU memory", "—" if peak is None else f"{peak:,.1f} GB",
                help="Largest torch.cuda.max_memory_allocated over the workers so far.")
    c[1].metric("Predicted", "—" if predicted is None else f"{predicted:,.1f} GB",
                help="The estimate's allocated memory per worker (weights + LoRA and optimizer "
                     "+ activations, without the runtime overhead).")
    util = cm.get("gpu_utilization")
    c[2].metric("GPU utilisation", "—" if util is None else f"{util:.0f} %",
                help="Mean over the workers (NVML), latest point.")
    used = cm.get("gpu_memory_used_gb")
    c[3].metric("GPU memory used", "—" if used is None else f"{used:,.1f} GB",
                help="Largest worker, as the driver reports it (NVML): includes the CUDA "
                     "context and the allocator's cache.")
    workers = cm.get("gpu_workers") or []
    if len(workers) > 1:
        st.caption(" · ".join(
            f"worker {w.get('rank')}: {_num(w.get('utilization'), '%')} · "
            f"{_num(w.get('memory_used_gb'), 'GB used')} · "
            f"{_num(w.get('peak_allocated_gb'), 'GB peak')}" for w in workers))


def _num(value, unit: str) -> str:
    return "—" if value is None else f"{value:,.1f} {unit}"


def summary_caption(summary: dict) -> None:
    """Models page: how the job ran (precision line and measured vs predicted memory)."""
    line = precision_text(summary.get("precision"))
    if line:
        st.caption(literal(line) + " · " + memory_text(summary.get("gpu_peak_allocated_gb"),
                                                       summary.get("predicted_allocated_gb")))
