"""Monitor page, the job's summary: header with progress and stage, current metrics, cost and
ETA, the outcome (model link or error), and cancel with a confirmation step."""
from __future__ import annotations

import streamlit as st

from app.ui.gpu_widgets import gpu_memory
from app.ui.job_widgets import (
    elapsed_s,
    eta_short,
    eta_text,
    fmt_duration,
    fmt_duration_short,
    fmt_money,
    hardware_text,
    job_cost,
    name_markdown,
    progress_fraction,
    stage_markdown,
)
from app.ui.widgets import badge_markdown, fmt_int, literal, page_path, show_error
from backend.core import states
from backend.core.errors import BrightRunError
from backend.jobs import service as jobs


def header(job) -> None:
    st.subheader(name_markdown(job), anchor=False)
    st.markdown(f"{badge_markdown(job.status)} &nbsp; dataset "
                f"**{literal(job.dataset_name or '—')}**"
                f" · preset {literal(job.preset_id)} · {literal(hardware_text(job))} · "
                f"base model {literal((job.hyperparameters or {}).get('base_model', '—'))}")
    steps = f"step {job.current_step:,} / {fmt_int(job.total_steps)}"
    st.progress(progress_fraction(job), text=f"{float(job.progress or 0):.0f} % · epoch "
                                             f"{job.current_epoch} / {job.total_epochs} · {steps}")
    st.markdown(stage_markdown(job))


def _latest(points, field: str):
    for p in reversed(points):
        value = getattr(p, field)
        if value is not None:
            return value
    return None


def current_metrics(job, points, fig=None) -> None:
    """``fig``: the job's figures (backend/jobs/figures.get_figures), the values every page shows."""
    cm = job.current_metrics or {}

    def value(field):
        return cm.get(field) if cm.get(field) is not None else _latest(points, field)

    train, val, lr, tps = (value(f) for f in ("training_loss", "validation_loss",
                                              "learning_rate", "throughput"))
    train_label, tps_label = "Training loss", "Throughput (tokens/s)"
    if fig is not None:
        tps, tps_label = fig.throughput, "Avg throughput (tokens/s)"
        if fig.final_training_loss is not None:
            train, train_label = fig.final_training_loss, "Final training loss"
        val = fig.final_validation_loss if fig.final_validation_loss is not None else val
    c = st.columns(4)
    c[0].metric(train_label, "—" if train is None else f"{train:.4f}")
    c[1].metric("Validation loss", "—" if val is None else f"{val:.4f}")
    c[2].metric("Learning rate", "—" if lr is None else f"{lr:.2e}")
    c[3].metric(tps_label, "—" if tps is None else f"{tps:,.0f}",
                help="Tokens processed ÷ training time (first step to end).")
    c = st.columns(4)
    active = job.status in states.JOB_ACTIVE
    c[0].metric("Cost so far" if active else "Final cost", fmt_money(job_cost(job)),
                help="Compute accrued while the job runs (workers × hours × price).")
    c[1].metric("Estimated total", fmt_money(job.estimated_total_cost),
                help="The estimate made when the job was created.")
    if active:
        eta = eta_text(job)
        c[2].metric("ETA", eta_short(job),
                    help=f"Estimated time left, from the training loop's own pace: {eta}.")
        if "(" in eta:  # 'in 4 min 10 s (14:05 UTC)'
            left, when = eta.removeprefix("in ").rstrip(")").split(" (")
            c[2].caption(f"finishes at {when} (in {left})")
        c[3].metric("Running for", fmt_duration_short(elapsed_s(job)) if job.started_at else "—",
                    help=fmt_duration(elapsed_s(job)))
    elif fig is not None and fig.training_seconds is not None:
        c[2].metric("Training time", fmt_duration(fig.training_seconds),
                    help=f"First training step to the end. Total {fmt_duration(fig.total_seconds)} "
                         "from the job's start, start-up and saving included.")
    else:
        c[2].metric("Duration", fmt_duration(elapsed_s(job)))
        c[3].metric("Ended", job.completed_at.strftime("%H:%M UTC") if job.completed_at else "—")
    gpu_memory(job)


def outcome(job) -> None:
    if job.status == "completed":
        st.success(f"Training completed; final cost {fmt_money(job_cost(job))}.",
                   icon=":material/check_circle:")
        if job.artifact_id:
            st.page_link(page_path("models"), label="Open the trained model",
                         icon=":material/model_training:", query_params={"id": job.artifact_id})
    elif job.status == "failed":
        st.error(f"**Training failed.** {literal(job.error_message or 'no reason recorded')}",
                 icon=":material/error:")
        if job.error_stack:
            with st.expander("Error details (stack trace)", icon=":material/bug_report:"):
                st.code(job.error_stack, language="text")
    elif job.status == "cancelled":
        st.info(f"Cancelled. {literal(job.error_message or '')}", icon=":material/cancel:")


def _ask_cancel(job_id: str) -> None:
    st.session_state["monitor_confirm_cancel"] = job_id


def _keep_running() -> None:
    st.session_state.pop("monitor_confirm_cancel", None)


def _do_cancel(actor, job_id: str) -> None:
    st.session_state.pop("monitor_confirm_cancel", None)
    try:
        jobs.cancel_job(actor, job_id)
    except BrightRunError as exc:
        st.session_state["monitor_error"] = exc


def cancel(actor, job) -> None:
    """Cancel with a confirmation step (button callbacks, so it works inside the fragment)."""
    error = st.session_state.pop("monitor_error", None)
    if error is not None:
        show_error(error)
    if job.status not in states.JOB_ACTIVE:
        return
    if st.session_state.get("monitor_confirm_cancel") != job.id:
        st.button("Cancel job", key="monitor_cancel", icon=":material/stop_circle:",
                  on_click=_ask_cancel, args=(job.id,))
        return
    st.warning("Cancel this job? Its Ray job is stopped; the cost so far stays recorded.",
               icon=":material/stop_circle:")
    c = st.columns([1, 1, 4])
    c[0].button("Yes, cancel", key="monitor_cancel_confirm", type="primary",
                on_click=_do_cancel, args=(actor, job.id))
    c[1].button("Keep running", key="monitor_cancel_keep", on_click=_keep_running)
