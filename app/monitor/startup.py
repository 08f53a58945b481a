"""Monitor page, the start-up timeline: what a job did between being created and its first
optimizer step (submitted, driver, worker group, workers up, imports, data, model, first step),
each with the seconds it took, so a user waiting at "initializing" sees why."""
from __future__ import annotations

from datetime import datetime, timezone

import streamlit as st

from app.ui.widgets import literal
from backend.core import states
from backend.jobs.startup import job_startup


def startup(actor, job) -> None:
    """An expander with the timeline; open while the job has not made its first step."""
    phases = job_startup(actor, job.id)
    waiting = job.status in states.JOB_ACTIVE and job.current_step == 0
    if not phases and not waiting:
        return
    total = f" · first step after {phases[-1].since_start_s:.1f} s" \
        if phases and phases[-1].phase == "first_step" else ""
    with st.expander(f"Start-up timeline{total}", expanded=waiting, icon=":material/timer:"):
        rows = [f"| +{p.since_start_s:.1f} s | {literal(p.label)} | {p.took_s:.1f} s |"
                for p in phases]
        if rows:
            st.markdown("| since created | phase | took |\n|---:|---|---:|\n" + "\n".join(rows))
        if waiting:
            since = phases[-1].at if phases else job.created_at
            since = since if since.tzinfo else since.replace(tzinfo=timezone.utc)
            idle = (datetime.now(timezone.utc) - since).total_seconds()
            last = phases[-1].label if phases else "created"
            st.caption(f"Waiting {idle:.0f} s since: {literal(last)}.")
