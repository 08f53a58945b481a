"""Jobs: the user's training jobs with a status filter; each opens in Monitor."""
from __future__ import annotations

import importlib

import streamlit as st

from app.auth import current_user
from app.widgets import badge_markdown, fmt_time, handled, literal, page_path

STATUSES = ("any", "queued", "initializing", "running", "completed", "failed", "cancelled")


def _list_jobs(actor, status: str | None) -> list:
    """The actor's jobs from the jobs service; an empty list when this build has none yet."""
    try:
        jobs = importlib.import_module("backend.jobs")
    except ImportError:
        return []
    if not hasattr(jobs, "list_jobs"):
        return []
    return list(jobs.list_jobs(actor, status=status, per_page=50).items)


def _row(j) -> None:
    c = st.columns([3, 2.5, 1.4, 2, 1.6], vertical_alignment="center")
    c[0].page_link(page_path("monitor"), label=literal(j.name or j.id[:8]),
                   query_params={"job_id": j.id})
    c[1].markdown(literal(getattr(j, "dataset_name", None) or "—"))
    c[2].markdown(badge_markdown(j.status))
    c[3].progress(min(max(float(j.progress or 0) / 100.0, 0.0), 1.0),
                  text=f"{float(j.progress or 0):.0f} %")
    c[4].markdown(fmt_time(j.created_at))


def main() -> None:
    actor = current_user()
    st.title("Training jobs")
    status = st.selectbox("Status", STATUSES, key="jobs_status")
    with handled():
        items = _list_jobs(actor, None if status == "any" else status)
        if not items:
            st.info("No training jobs yet — configure one from a ready dataset.",
                    icon=":material/model_training:")
            st.page_link(page_path("configure"), label="Configure training",
                         icon=":material/tune:")
            return
        for j in items:
            _row(j)


main()
