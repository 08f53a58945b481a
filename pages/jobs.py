"""Jobs: the user's training jobs (status filter, pages) with dataset, preset, progress, cost,
start time and duration; each opens in Monitor. "Compare runs" overlays the loss curves of two or
more jobs, lists how their configurations differ and shows their latest answers side by side."""
from __future__ import annotations

import streamlit as st

from app.auth import current_user
from app.ui import job_charts
from app.ui.job_widgets import (
    config_diff,
    elapsed_s,
    fmt_duration,
    fmt_money,
    job_cost,
    job_label,
    name_markdown,
    progress_fraction,
)
from app.ui.samples import compare_panel
from app.ui.widgets import badge_markdown, fmt_time, handled, literal, page_path
from backend.core import states
from backend.jobs import service as jobs

STATUSES = ("any", *states.JOB)
PER_PAGE = 20
COLS = [3.5, 1.5, 1.6, 1.0, 1.4, 1.4]  # job (dataset · preset below it), status, …
COMPARE_POOL = 100


def _set_page(delta: int) -> None:
    st.session_state["jobs_page"] = max(1, st.session_state.get("jobs_page", 1) + delta)


def _reset_page() -> None:
    st.session_state["jobs_page"] = 1


def _table(items) -> None:
    head = st.columns(COLS, vertical_alignment="bottom", gap="xsmall")
    for col, label in zip(head, ("Job · dataset · preset", "Status", "Progress", "Cost",
                                 "Started", "Duration")):
        col.markdown(f"**{label}**")
    for j in items:
        row = st.columns(COLS, vertical_alignment="center", gap="xsmall")
        with row[0]:
            st.page_link(page_path("monitor"), label=name_markdown(j),
                         query_params={"job_id": j.id}, icon=":material/monitoring:")
            st.caption(f"{literal(j.dataset_name or '—')} · {literal(j.preset_id)}")
        row[1].markdown(badge_markdown(j.status))
        row[2].progress(progress_fraction(j), text=f"{float(j.progress or 0):.0f} %")
        row[3].markdown(fmt_money(job_cost(j)))
        row[4].markdown(fmt_time(j.started_at) if j.started_at else "not started")
        row[5].markdown(fmt_duration(elapsed_s(j)))


def _pager(page) -> None:
    if page.pages <= 1:
        return
    c = st.columns([1, 4, 1], vertical_alignment="center")
    c[0].button("← Previous", key="jobs_prev", disabled=page.page <= 1, on_click=_set_page,
                args=(-1,), width="stretch")
    c[1].markdown(f"Page {page.page} of {page.pages} · {page.total} job(s)",
                  text_alignment="center")
    c[2].button("Next →", key="jobs_next", disabled=page.page >= page.pages, on_click=_set_page,
                args=(1,), width="stretch")


def _compare(actor) -> None:
    pool = jobs.list_jobs(actor, per_page=COMPARE_POOL).items
    if len(pool) < 2:
        return
    st.markdown("#### Compare runs")
    by_id = {j.id: j for j in pool}
    chosen = st.multiselect("Jobs to compare (two or more)", list(by_id), key="jobs_compare",
                            format_func=lambda i: job_label(by_id[i]),
                            placeholder="pick two or more jobs")
    if len(chosen) < 2:
        st.caption("Pick two or more jobs to overlay their loss curves and see how their "
                   "configurations differ.")
        return
    picked = [by_id[i] for i in chosen]
    runs = {job_label(j): jobs.job_metrics(actor, j.id, max_points=500) for j in picked}
    chart = job_charts.compare_chart(runs)
    if chart is None:
        st.info("None of these jobs has recorded a loss yet.", icon=":material/show_chart:")
    else:
        st.altair_chart(chart, width="stretch")
    everything = st.toggle("Show every field", key="jobs_compare_all")
    diff = config_diff(picked, only_different=not everything)
    if diff.empty:
        st.caption("These jobs have the same configuration.")
    else:
        st.dataframe(diff, hide_index=True, width="stretch", key="jobs_compare_table")
    compare_panel(actor, picked, {j.id: job_label(j) for j in picked})


def main() -> None:
    actor = current_user()
    st.title("Training jobs")
    status = st.columns([1, 3])[0].selectbox("Status", STATUSES, key="jobs_status",
                                             on_change=_reset_page)
    with handled():
        page = jobs.list_jobs(actor, status=None if status == "any" else status,
                              page=st.session_state.get("jobs_page", 1), per_page=PER_PAGE)
        if page.total == 0:
            if status != "any":
                st.info(f"No {status} jobs.", icon=":material/filter_alt_off:")
            else:
                st.info("No training jobs yet — configure one from a ready dataset.",
                        icon=":material/model_training:")
                st.page_link(page_path("configure"), label="Configure training",
                             icon=":material/tune:")
            return
        if page.page > page.pages:  # e.g. after a filter change elsewhere
            st.session_state["jobs_page"] = page.pages
            page = jobs.list_jobs(actor, status=None if status == "any" else status,
                                  page=page.pages, per_page=PER_PAGE)
        _table(page.items)
        _pager(page)
        _compare(actor)


main()
