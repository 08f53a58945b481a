"""Monitor one training job (``?job_id=``): status, stage, metrics, loss curve, cost, logs."""
from __future__ import annotations

import importlib

import streamlit as st

from app.auth import current_user
from app.widgets import badge_markdown, handled, literal, page_path


def _get_job(actor, job_id: str):
    try:
        jobs = importlib.import_module("backend.jobs")
    except ImportError:
        return None
    return jobs.get_job(actor, job_id) if hasattr(jobs, "get_job") else None


def main() -> None:
    actor = current_user()
    st.title("Monitor")
    job_id = st.query_params.get("job_id")
    job = None
    if job_id:
        with handled():
            job = _get_job(actor, job_id)
    if job is None:
        st.info("No job to monitor — start a training job from Configure, or open one from Jobs.",
                icon=":material/monitoring:")
        c = st.columns(2)
        c[0].page_link(page_path("jobs"), label="Jobs", icon=":material/list_alt:")
        c[1].page_link(page_path("configure"), label="Configure training", icon=":material/tune:")
        return
    st.subheader(literal(job.name or job.id), anchor=False)
    st.markdown(f"{badge_markdown(job.status)} · stage {literal(job.current_stage)}")
    st.progress(min(max(float(job.progress or 0) / 100.0, 0.0), 1.0),
                text=f"{float(job.progress or 0):.0f} %")


main()
