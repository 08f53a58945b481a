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

import streamlit as st

from app.auth import current_user
from app.monitor.panels import charts, checkpoints, logs, preference, snapshot
from app.monitor.startup import startup
from app.monitor.summary import cancel, current_metrics, header, outcome
from app.ui.job_widgets import job_label, maybe_reconcile
from app.ui.samples import monitor_panel as samples
from app.ui.widgets import handled, page_path, show_error
from backend.core import states
from backend.core.errors import BrightRunError
from backend.jobs import service as jobs

POLL_SECONDS = 3


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


def _live(actor, job_id: str, polling: bool) -> None:
    """The whole job view, re-read from the database on each (fragment) run."""
    from backend.jobs.figures import get_figures

    if polling:
        maybe_reconcile()
    try:
        job = jobs.get_job(actor, job_id)
    except BrightRunError as exc:
        show_error(exc)
        return
    if polling and job.status not in states.JOB_ACTIVE:
        st.rerun()  # ended: a full run redraws the page without polling
    header(job)
    with handled():
        points, saved = snapshot(actor, job)  # one moment: nothing past the header's step
        current_metrics(job, points, get_figures(actor, job.id))
        startup(actor, job)
        outcome(job)
        cancel(actor, job)
        charts(points, job)
        preference(actor, job)
        samples(actor, job)
        logs(actor, job)
        checkpoints(saved)
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
