"""Monitor page, the job's panels: loss / learning-rate / throughput charts, the log with a level
filter, and the checkpoints."""
from __future__ import annotations

import pandas as pd
import streamlit as st

from app.ui import job_charts
from app.ui.widgets import fmt_bytes
from backend.jobs import service as jobs

LEVELS = ("all", "INFO", "WARNING", "ERROR")
LOG_LINES = 200


def as_of(items: list, step: int | None) -> list:
    """The items (metric points, checkpoints) of one snapshot: those at or before the header's
    ``step``, so charts and checkpoints never run ahead of the progress shown above them (a read
    that lands between two writes could otherwise mix them). No step yet: all of them."""
    if not step:
        return list(items)
    return [i for i in items if i.step is None or i.step <= step]


def snapshot(actor, job) -> tuple[list, list]:
    """(metric points, checkpoints) read right after ``job`` and cut at its step: the header,
    charts and checkpoints show one moment of the run."""
    points = jobs.job_metrics(actor, job.id, max_points=1000)
    saved = jobs.job_checkpoints(actor, job.id)
    return as_of(points, job.current_step), as_of(saved, job.current_step)


def charts(points, job=None) -> None:
    if not points:
        st.info("No metrics yet — the loss curve appears once training starts.",
                icon=":material/show_chart:")
        return
    left, right = st.columns([3, 2])
    with left:
        st.markdown("**Loss** (training vs validation)")
        chart = job_charts.loss_chart(points)
        if chart is not None:
            st.altair_chart(chart, width="stretch")
    with right:
        lr = job_charts.series_chart(points, "learning_rate", "learning rate", ".1e", "#f58518",
                                     130)
        tps = job_charts.series_chart(points, "throughput", "tokens/s", ",.0f", "#54a24b", 130)
        for title, chart in (("Learning rate", lr), ("Throughput", tps)):
            if chart is not None:
                st.markdown(f"**{title}**")
                st.altair_chart(chart, width="stretch")
    last = max((p.step for p in points), default=0)
    if job is not None and job.current_step and last < job.current_step:
        st.caption(f"Charts up to step {last:,} of {job.current_step:,}: the trainer writes "
                   "metric points in batches (every few steps or seconds).")


def logs(actor, job) -> None:
    c = st.columns([4, 1], vertical_alignment="bottom")
    c[0].markdown("#### Logs")
    level = c[1].selectbox("Level", LEVELS, key="monitor_log_level",
                           help="Show this level and above.")
    lines = jobs.job_logs(actor, job.id, level=None if level == "all" else level, limit=LOG_LINES)
    if not lines:
        st.caption("No log lines at this level yet.")
        return
    text = "\n".join(f"{ln.timestamp:%H:%M:%S} {ln.level:<7} {ln.message}" for ln in lines)
    st.code(text, language="text", height=280 if len(lines) > 12 else "content",
            wrap_lines=True)  # a long line wraps instead of being cut at the edge
    st.caption(f"Last {len(lines)} line(s), oldest first.")


def checkpoints(points) -> None:
    if not points:
        return
    with st.expander(f"Checkpoints ({len(points)})", icon=":material/save:"):
        st.dataframe(pd.DataFrame([{"step": c.step, "epoch": c.epoch, "loss": c.loss,
                                    "size": fmt_bytes(c.file_size), "stored at": c.storage_path}
                                   for c in points]), hide_index=True, width="stretch")


PREFERENCE_SERIES = {"rewards/accuracies": "reward accuracy (training step)",
                     "eval_rewards/accuracies": "reward accuracy (held-out pairs)",
                     "rewards/margins": "reward margin (training step)",
                     "eval_rewards/margins": "reward margin (held-out pairs)"}


def preference(actor, job) -> None:
    """DPO jobs: TRL's rewards/accuracies and rewards/margins, per step and on held-out pairs."""
    from backend.jobs.preference_metrics import preference_history

    if (job.hyperparameters or {}).get("method") != "dpo":
        return
    history = preference_history(actor, job.id)
    if not history:
        return
    frame = pd.DataFrame(history).set_index("step")
    st.markdown("**Preference rewards** (DPO, β × log-ratio to the reference)")
    cols = st.columns(2)
    for col, metric in zip(cols, ("accuracies", "margins")):
        names = [n for n in (f"rewards/{metric}", f"eval_rewards/{metric}") if n in frame]
        if names:
            col.line_chart(frame[names].rename(columns=PREFERENCE_SERIES), height=180)
    last = next((p for p in reversed(history) if "eval_loss" in p), None)
    if last is not None:
        st.caption(f"Held-out pairs at step {last['step']:,}: reward accuracy "
                   f"{last['eval_rewards/accuracies']:.2f}, margin {last['eval_rewards/margins']:.3f}, "
                   f"DPO loss {last['eval_loss']:.4f}.")

