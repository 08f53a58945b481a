"""Home: stats cards (datasets, active jobs, models, spend this month), recent datasets, active
jobs and quick actions."""
from __future__ import annotations

import streamlit as st

from app.auth import current_user
from app.ui.widgets import badge_markdown, fmt_int, fmt_time, handled, literal, page_path, short_label
from backend import adapters, costs
from backend.datasets import service as ds
from backend.jobs import service as jobs

ACTIVE = ("queued", "initializing", "running")
NAME_CHARS = 22  # what the name column of a half-width list shows on a 1400 px window


def _active_jobs(actor) -> list:
    """Queued, initializing and running jobs."""
    found = []
    for status in ACTIVE:
        found += jobs.list_jobs(actor, status=status, per_page=20).items
    return found


def _model_count(actor) -> int:
    return adapters.list_models(actor, per_page=1).total


def _spend(actor) -> float:
    return float(costs.summary(actor).total)


def _cards(actor, active: list) -> None:
    counts = ds.dataset_counts(actor)
    c = st.columns(5)
    c[0].metric("Datasets", counts["total"], help="All your datasets.")
    c[1].metric("Ready datasets", counts["ready"], help="Validated and ready to train on.")
    c[2].metric("Active jobs", len(active), help="Queued, initializing or running.")
    c[3].metric("Models", _model_count(actor))
    c[4].metric("Spend this month", costs.money_text(_spend(actor)))


def _quick_actions() -> None:
    st.markdown("#### Quick actions")
    c = st.columns(3)
    c[0].page_link(page_path("datasets"), label="Upload dataset", icon=":material/upload:")
    c[1].page_link(page_path("configure"), label="Configure training", icon=":material/tune:")
    c[2].page_link(page_path("jobs"), label="View jobs", icon=":material/list_alt:")


def _recent_datasets(actor) -> None:
    st.markdown("#### Recent datasets")
    recent = ds.list_datasets(actor, per_page=5).items
    if not recent:
        st.info("No datasets yet — upload one on the Datasets page.", icon=":material/dataset:")
        return
    for d in recent:
        c = st.columns([3.4, 1.9, 1.4, 1.6], vertical_alignment="center")
        c[0].page_link(page_path("datasets"), label=literal(short_label(d.name, NAME_CHARS)),
                       query_params={"id": d.id}, help=literal(d.name))
        c[1].markdown(badge_markdown(d.status))
        c[2].markdown(f"{fmt_int(d.total_conversations)} conv.")
        c[3].markdown(fmt_time(d.created_at))


def _active_jobs_section(active: list) -> None:
    st.markdown("#### Active jobs")
    if not active:
        st.info("No active training jobs — configure one from a ready dataset.",
                icon=":material/model_training:")
        return
    for j in active:
        c = st.columns([4, 1.4, 2], vertical_alignment="center")
        c[0].page_link(page_path("monitor"), label=literal(short_label(j.name or j.id[:8],
                                                                       NAME_CHARS)),
                       help=literal(j.name or j.id),
                       query_params={"job_id": j.id})
        c[1].markdown(badge_markdown(j.status))
        c[2].progress(min(max(float(j.progress or 0) / 100.0, 0.0), 1.0))


def main() -> None:
    actor = current_user()
    st.title("BrightRun LoRA Studio")
    st.caption("Upload → validate → configure → train on Ray → monitor → collect the model.")
    with handled():
        active = _active_jobs(actor)
        _cards(actor, active)
        _quick_actions()
        left, right = st.columns(2, gap="large")
        with left:
            _recent_datasets(actor)
        with right:
            _active_jobs_section(active)


main()
