"""Monitor one training job: header (status, progress, dataset, preset, hardware), stage
indicator, current metrics, loss / learning-rate / throughput charts, cost so far vs estimate,
ETA, logs with a level filter, cancel, and the outcome (model link, or the error and its stack).

The job is chosen by ``?job_id=`` (or ``?job=`` from notifications), else the session's last job,
else a picker. Everything shown is read from the database on each run, so a reload or a second
tab shows the same; while the job is active the body re-reads every few seconds (a fragment with
``run_every``) and asks the reconciler about dead Ray jobs at most every ~10 s.
"""
from __future__ import annotations

from datetime import datetime, timezone

import pandas as pd
import streamlit as st

from app import job_charts
from app.auth import current_user
from app.job_widgets import (elapsed_s, eta_short, eta_text, fmt_duration, fmt_duration_short,
                             fmt_money, hardware_text, job_cost, job_label, maybe_reconcile,
                             name_markdown, progress_fraction, stage_markdown)
from app.widgets import (badge_markdown, fmt_bytes, fmt_int, handled, literal, page_path,
                         show_error)
from backend import jobs, states
from backend.errors import BrightRunError

POLL_SECONDS = 3
LEVELS = ("all", "INFO", "WARNING", "ERROR")
LOG_LINES = 200


# ----- which job ---------------------------------------------------------------------------------
def _pick(job_id: str) -> None:
    st.query_params["job_id"] = job_id
    st.session_state["monitor_job_id"] = job_id


def _on_select() -> None:
    _pick(st.session_state["monitor_job"])
    st.session_state.pop("monitor_confirm_cancel", None)


def _requested() -> str | None:
    job_id = st.query_params.get("job_id") or st.query_params.get("job")
    if "job" in st.query_params:
        st.query_params.pop("job")
    return job_id or st.session_state.get("monitor_job_id")


def _choose_job(actor) -> str | None:
    """The job to show (kept in the URL and the session), with a picker of recent jobs."""
    job_id = _requested()
    recent = jobs.list_jobs(actor, per_page=50).items
    if not recent and not job_id:
        return None
    labels = {j.id: job_label(j) for j in recent}
    if job_id is None:
        active = [j for j in recent if j.status in states.JOB_ACTIVE]
        job_id = (active or recent)[0].id
    if job_id not in labels:
        labels = {job_id: job_id, **labels}
    _pick(job_id)
    st.session_state["monitor_job"] = job_id
    st.selectbox("Job", list(labels), key="monitor_job", format_func=labels.get,
                 on_change=_on_select, label_visibility="collapsed")
    return job_id


# ----- sections ----------------------------------------------------------------------------------
def _header(job) -> None:
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


def _current_metrics(job, points) -> None:
    cm = job.current_metrics or {}

    def value(field):
        return cm.get(field) if cm.get(field) is not None else _latest(points, field)

    train, val, lr, tps = (value(f) for f in ("training_loss", "validation_loss",
                                              "learning_rate", "throughput"))
    c = st.columns(4)
    c[0].metric("Training loss", "—" if train is None else f"{train:.4f}")
    c[1].metric("Validation loss", "—" if val is None else f"{val:.4f}")
    c[2].metric("Learning rate", "—" if lr is None else f"{lr:.2e}")
    c[3].metric("Throughput (tokens/s)", "—" if tps is None else f"{tps:,.0f}")
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
    else:
        c[2].metric("Duration", fmt_duration(elapsed_s(job)))
        c[3].metric("Ended", job.completed_at.strftime("%H:%M UTC") if job.completed_at else "—")


def _charts(points) -> None:
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


def _outcome(job) -> None:
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


def _logs(actor, job) -> None:
    c = st.columns([4, 1], vertical_alignment="bottom")
    c[0].markdown("#### Logs")
    level = c[1].selectbox("Level", LEVELS, key="monitor_log_level",
                           help="Show this level and above.")
    lines = jobs.job_logs(actor, job.id, level=None if level == "all" else level, limit=LOG_LINES)
    if not lines:
        st.caption("No log lines at this level yet.")
        return
    text = "\n".join(f"{ln.timestamp:%H:%M:%S} {ln.level:<7} {ln.message}" for ln in lines)
    st.code(text, language="text", height=280 if len(lines) > 12 else "content")
    st.caption(f"Last {len(lines)} line(s), oldest first.")


def _checkpoints(actor, job) -> None:
    points = jobs.job_checkpoints(actor, job.id)
    if not points:
        return
    with st.expander(f"Checkpoints ({len(points)})", icon=":material/save:"):
        st.dataframe(pd.DataFrame([{"step": c.step, "epoch": c.epoch, "loss": c.loss,
                                    "size": fmt_bytes(c.file_size), "stored at": c.storage_path}
                                   for c in points]), hide_index=True, width="stretch")


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


def _cancel(actor, job) -> None:
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


def _live(actor, job_id: str, polling: bool) -> None:
    """The whole job view, re-read from the database on each (fragment) run."""
    if polling:
        maybe_reconcile()
    try:
        job = jobs.get_job(actor, job_id)
    except BrightRunError as exc:
        show_error(exc)
        return
    if polling and job.status not in states.JOB_ACTIVE:
        st.rerun()  # ended: a full run redraws the page without polling
    _header(job)
    with handled():
        points = jobs.job_metrics(actor, job.id, max_points=1000)
        _current_metrics(job, points)
        _outcome(job)
        _cancel(actor, job)
        _charts(points)
        _logs(actor, job)
        _checkpoints(actor, job)
    now = datetime.now(timezone.utc).strftime("%H:%M:%S UTC")
    every = f"; refreshes every {POLL_SECONDS} s while the job is active" if polling else ""
    st.caption(f"Read from the database at {now}{every}.")


def main() -> None:
    actor = current_user()
    st.title("Monitor")
    job_id = None
    with handled():
        job_id = _choose_job(actor)
    if job_id is None:
        st.info("No job to monitor — start a training job from Configure, or open one from Jobs.",
                icon=":material/monitoring:")
        c = st.columns(2)
        c[0].page_link(page_path("jobs"), label="Jobs", icon=":material/list_alt:")
        c[1].page_link(page_path("configure"), label="Configure training", icon=":material/tune:")
        return
    try:
        active = jobs.get_job(actor, job_id).status in states.JOB_ACTIVE
    except BrightRunError as exc:
        show_error(exc)
        return
    st.fragment(_live, run_every=POLL_SECONDS if active else None)(actor, job_id, active)


main()
