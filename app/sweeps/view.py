"""The Sweeps page's parts: the sweep picker's labels, the summary, the trials table and the
overlaid validation curves (one colour per trial, the best drawn thicker)."""
from __future__ import annotations

import altair as alt
import pandas as pd
import streamlit as st

from app.ui.widgets import badge_markdown, fmt_time, literal, page_path
from backend.sweeps.grid import params_text
from backend.sweeps.schemas import SweepInfo

ACTIVE = ("queued", "running")


def sweep_label(sw: SweepInfo) -> str:
    """Plain text for a selectbox option (Streamlit shows option labels literally)."""
    return f"{sw.name or sw.id[:8]} · {sw.status} · {sw.trial_count} trials"


def trial_label(t) -> str:
    trial = t.sweep_trial or {}
    return f"#{trial.get('index', 0) + 1} {params_text(trial.get('params') or {})}"


def outcome(t) -> str:
    return "stopped early" if (t.sweep_trial or {}).get("stopped_early") else t.status


def summary(sw: SweepInfo) -> None:
    st.markdown(f"### {literal(sw.name or sw.id)}  {badge_markdown(sw.status)}")
    st.caption(f"dataset {literal(sw.dataset_name or '—')} · preset {literal(sw.preset_id)} · "
               f"scheduler {literal(sw.scheduler)} · {sw.max_concurrent} at a time · created "
               f"{fmt_time(sw.created_at)}")
    counts = sw.counts()
    c = st.columns(5)
    c[0].metric("Trials", sw.trial_count)
    c[1].metric("Completed", counts["completed"])
    c[2].metric("Stopped early", counts["stopped_early"])
    c[3].metric("Running or queued", counts["active"])
    c[4].metric("Estimated cost", f"${sw.estimated_total_cost:,.2f}")
    if sw.error_message:
        (st.warning if sw.status == "cancelled" else st.error)(literal(sw.error_message))
    best = next((t for t in sw.trials if t.id == sw.best_job_id), None)
    if best is not None:
        val = (best.current_metrics or {}).get("validation_loss")
        st.success(f"Best trial {literal(trial_label(best))}: validation loss "
                   f"{val:.4f}" if isinstance(val, (int, float)) else "Best trial marked",
                   icon=":material/trophy:")
        if best.artifact_id:
            st.page_link(page_path("models"), label="Open the best trial's adapter",
                         query_params={"id": best.artifact_id}, icon=":material/model_training:")


def trials_table(sw: SweepInfo) -> None:
    rows = []
    for t in sw.trials:
        val = (t.current_metrics or {}).get("validation_loss")
        rows.append({"#": (t.sweep_trial or {}).get("index", 0) + 1,
                     "params": params_text((t.sweep_trial or {}).get("params") or {}),
                     "outcome": outcome(t), "step": f"{t.current_step}/{t.total_steps or '?'}",
                     "validation loss": round(val, 4) if isinstance(val, (int, float)) else None,
                     "best": "★" if (t.sweep_trial or {}).get("best") else "",
                     "job": t.id})
    st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch", key="sweeps_trials")
    st.caption("Each trial is a training job: open one on the Monitor.")
    picked = st.selectbox("Trial", [t.id for t in sw.trials], key="sweeps_trial",
                          format_func=lambda i: trial_label(next(t for t in sw.trials
                                                                 if t.id == i)))
    st.page_link(page_path("monitor"), label="Open this trial on the Monitor",
                 query_params={"job_id": picked}, icon=":material/monitoring:")


def curves_chart(sw: SweepInfo, curves: dict[str, list[dict]]) -> alt.Chart | None:
    """Validation loss of every trial by step, overlaid; None when no trial has one yet."""
    labels = {t.id: trial_label(t) for t in sw.trials}
    frames = [pd.DataFrame([{"step": p["step"], "loss": p["validation_loss"],
                             "trial": labels.get(job_id, job_id[:8]),
                             "best": job_id == sw.best_job_id} for p in points])
              for job_id, points in curves.items() if points]
    if not frames:
        return None
    data = pd.concat(frames)
    return alt.Chart(data).mark_line(point=True).encode(
        x=alt.X("step:Q", title="step"), y=alt.Y("loss:Q", title="validation loss",
                                                 scale=alt.Scale(zero=False)),
        color=alt.Color("trial:N", legend=alt.Legend(orient="top", labelLimit=260)),
        strokeWidth=alt.condition("datum.best", alt.value(4), alt.value(1.5)),
        tooltip=["trial:N", "step:Q", alt.Tooltip("loss:Q", format=".4f")],
    ).properties(height=320)
