"""Datasets page, list view: filters, the table of datasets with pagination, the empty state with
the example dataset, and the small helpers the list, upload and detail views share (flash messages,
opening a dataset)."""
from __future__ import annotations

import streamlit as st

from app.ui.widgets import (
    badge_markdown,
    fmt_bytes,
    fmt_int,
    fmt_time,
    format_label,
    literal,
    open_detail,
    show_error,
)
from backend.core.errors import BrightRunError
from backend.datasets import service as ds

AUTO = "auto-detect"
ANY = "any"
STATUSES = (ANY, "uploading", "validating", "ready", "error")
READY = {ANY: None, "training-ready": True, "not training-ready": False}
SORTS = {"newest": ("created_at", True), "oldest": ("created_at", False),
         "name": ("name", False), "size": ("file_size", True), "tokens": ("total_tokens", True)}
PER_PAGE = 10
BUSY = ("uploading", "validating")
COLS = [2.7, 1.2, 1.4, 1.6, 1.2, 1.0, 1.1, 0.9]


def example_path():
    """The example dataset shipped in examples/ (read at call time: tests move the root)."""
    import app.ui.widgets

    return app.ui.widgets.ROOT / "examples" / "demo-support-v6.jsonl"


def flash(kind: str, text: str) -> None:
    st.session_state["datasets_flash"] = (kind, text)


def show_flash() -> None:
    kind, text = st.session_state.pop("datasets_flash", (None, None))
    if kind == "success":
        st.success(text, icon=":material/check_circle:")
    elif kind == "info":
        st.info(text)


def _filters() -> dict:
    c = st.columns([3, 1.4, 1.6, 1.6, 1.2])
    search = c[0].text_input("Search by name", key="datasets_search",
                             placeholder="part of a name", icon=":material/search:")
    status = c[1].selectbox("Status", STATUSES, key="datasets_status")
    fmt = c[2].selectbox("Format", (ANY, *ds.FORMATS), key="datasets_format",
                         format_func=lambda f: f if f == ANY else format_label(f))
    ready = c[3].selectbox("Training-ready", tuple(READY), key="datasets_ready")
    sort = c[4].selectbox("Sort", tuple(SORTS), key="datasets_sort")
    sort_key, descending = SORTS[sort]
    flt = {"search": search.strip() or None, "status": None if status == ANY else status,
           "format": None if fmt == ANY else fmt, "training_ready": READY[ready],
           "sort": sort_key, "descending": descending}
    if st.session_state.get("datasets_filters_seen") != flt:  # new filters: back to page 1
        st.session_state["datasets_filters_seen"] = flt
        st.session_state["datasets_page"] = 1
    return flt


def _set_page(delta: int) -> None:
    st.session_state["datasets_page"] = max(1, st.session_state.get("datasets_page", 1) + delta)


def open_dataset(dataset_id: str | None) -> None:
    open_detail(dataset_id, "datasets_confirm_delete")


def list_view(actor) -> None:
    flt = _filters()
    page = ds.list_datasets(actor, page=st.session_state.get("datasets_page", 1),
                            per_page=PER_PAGE, **flt)
    if page.total == 0:
        _empty_state(actor, filtered=any(flt[k] is not None for k in
                                         ("search", "status", "format", "training_ready")))
        return
    if page.page > page.pages:  # e.g. rows deleted under us
        st.session_state["datasets_page"] = page.pages
        page = ds.list_datasets(actor, page=page.pages, per_page=PER_PAGE, **flt)
    _table(page.items)
    _pager(page)


def example_count() -> int:
    """Conversations in the example file (one per non-blank line), counted from the file so the
    text never disagrees with it."""
    with example_path().open("rb") as fh:
        return sum(1 for line in fh if line.strip())


def _empty_state(actor, filtered: bool) -> None:
    if filtered:
        st.info("No datasets match these filters.", icon=":material/filter_alt_off:")
        return
    st.info("No datasets yet — upload one", icon=":material/dataset:")
    if example_path().is_file():
        st.caption(f"Or try the product with an example: {example_count():,} short "
                   "customer-support conversations of one invented outdoor-gear shop (the v4 "
                   "format); its held-out questions ask the shop's facts in new words, so the "
                   "adapter's answers show what training taught.")
        if st.button("Load the example dataset", key="datasets_load_example",
                     icon=":material/download:"):
            _load_example(actor)


def _table(items) -> None:
    head = st.columns(COLS, vertical_alignment="bottom")
    for col, label in zip(head, ("Name", "Status", "Format", "Conversations", "Training pairs",
                                 "Tokens", "Created", "")):
        if label:
            col.markdown(f"**{label}**")
    for d in items:
        row = st.columns(COLS, vertical_alignment="center")
        row[0].markdown(f"**{literal(d.name)}**  \n{literal(d.file_name)} · "
                        f"{fmt_bytes(d.file_size)}")
        row[1].markdown(badge_markdown(d.status))
        row[2].markdown(literal(format_label(d.format)))
        row[3].markdown(fmt_int(d.total_conversations))
        row[4].markdown(fmt_int(d.total_training_pairs))
        row[5].markdown(fmt_int(d.total_tokens))
        row[6].markdown(fmt_time(d.created_at))
        row[7].button("Open", key=f"datasets_open_{d.id}", on_click=open_dataset, args=(d.id,),
                      width="stretch")


def _pager(page) -> None:
    c = st.columns([1, 4, 1], vertical_alignment="center")
    c[0].button("← Previous", key="datasets_prev", disabled=page.page <= 1,
                on_click=_set_page, args=(-1,), width="stretch")
    c[1].markdown(f"Page {page.page} of {page.pages} · {page.total} dataset(s)",
                  text_alignment="center")
    c[2].button("Next →", key="datasets_next", disabled=page.page >= page.pages,
                on_click=_set_page, args=(1,), width="stretch")


def _load_example(actor) -> None:
    example = example_path()
    try:
        with example.open("rb") as fh:
            info = ds.upload_dataset(actor, fh, example.name, "Demo support (Tidewater)",
                                     description="Example customer-support conversations "
                                                 "shipped with BrightRun (examples/README.md).",
                                     size=example.stat().st_size)
    except BrightRunError as exc:
        show_error(exc)
        return
    flash("success", f"Loaded the example dataset {literal(info.name)}; validation is running.")
    st.rerun()
