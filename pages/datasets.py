"""Datasets page: header counts, upload, list (search, filters, sort, pages), detail view with the
validation report, rename/describe, re-validate, delete, and "Start training" → Configure.

While any dataset is uploading or validating, the counts and the list/detail refresh themselves
every few seconds (fragments with ``run_every``); a validation whose Ray job died is turned into an
error on those polls (``reconcile_validations``).
"""
from __future__ import annotations

import pandas as pd
import streamlit as st

from app import charts
from app.auth import current_user
from app.widgets import (ROOT, badge_markdown, confirm_delete, fmt_bytes, fmt_float, fmt_int,
                         fmt_time, format_label, handled, literal, open_detail, page_path,
                         show_error)
from backend import datasets as ds
from backend.errors import BrightRunError

EXAMPLE = ROOT / "examples" / "demo-support-v4.jsonl"
AUTO = "auto-detect"
ANY = "any"
STATUSES = (ANY, "uploading", "validating", "ready", "error")
READY = {ANY: None, "training-ready": True, "not training-ready": False}
SORTS = {"newest": ("created_at", True), "oldest": ("created_at", False),
         "name": ("name", False), "size": ("file_size", True), "tokens": ("total_tokens", True)}
PER_PAGE = 10
POLL_SECONDS = 3
BUSY = ("uploading", "validating")
COLS = [2.7, 1.2, 1.4, 1.6, 1.2, 1.0, 1.1, 0.9]


def _flash(kind: str, text: str) -> None:
    st.session_state["datasets_flash"] = (kind, text)


def _show_flash() -> None:
    kind, text = st.session_state.pop("datasets_flash", (None, None))
    if kind == "success":
        st.success(text, icon=":material/check_circle:")
    elif kind == "info":
        st.info(text)


def _busy(counts: dict[str, int]) -> bool:
    return any(counts.get(s, 0) for s in BUSY)


# ----- header ------------------------------------------------------------------------------------
def _header(actor) -> None:
    with handled():
        counts = ds.dataset_counts(actor)
        c = st.columns(4)
        c[0].metric("Datasets", counts["total"])
        c[1].metric("Ready", counts["ready"])
        c[2].metric("Validating", counts["uploading"] + counts["validating"])
        c[3].metric("Error", counts["error"])


# ----- upload ------------------------------------------------------------------------------------
def _upload_form(actor, expanded: bool) -> None:
    with st.expander("Upload a dataset", expanded=expanded, icon=":material/upload:"):
        with st.form("datasets_upload_form", clear_on_submit=True):
            file = st.file_uploader("JSONL file (one conversation per line, up to 500 MB)",
                                    type=["jsonl"], key="datasets_upload_file")
            name = st.text_input("Name", key="datasets_upload_name", max_chars=200,
                                 placeholder="defaults to the file name")
            description = st.text_area("Description", key="datasets_upload_description",
                                       max_chars=5000)
            fmt = st.selectbox("Format", (AUTO, *ds.FORMATS), key="datasets_upload_format",
                               format_func=lambda f: f if f == AUTO else format_label(f),
                               help="Leave on auto-detect unless the file is ambiguous.")
            submitted = st.form_submit_button("Upload", type="primary",
                                              key="datasets_upload_submit")
    if submitted:
        _do_upload(actor, file, name, description, fmt)


def _do_upload(actor, file, name: str, description: str, fmt: str) -> None:
    if file is None:
        st.error("Choose a JSONL file to upload.", icon=":material/error:")
        return
    name = (name or "").strip() or file.name.rsplit(".", 1)[0]
    try:
        info = ds.upload_dataset(actor, file, file.name, name, description=description or None,
                                 format=None if fmt == AUTO else fmt, size=file.size)
    except BrightRunError as exc:
        show_error(exc)
        return
    _flash("success", f"Uploaded {literal(info.name)} ({fmt_bytes(info.file_size)}); "
                      f"validation is running.")
    st.rerun()


def _load_example(actor) -> None:
    try:
        with EXAMPLE.open("rb") as fh:
            info = ds.upload_dataset(actor, fh, EXAMPLE.name, "Demo support (v4 example)",
                                     description="Example customer-support conversations "
                                                 "shipped with BrightRun.",
                                     size=EXAMPLE.stat().st_size)
    except BrightRunError as exc:
        show_error(exc)
        return
    _flash("success", f"Loaded the example dataset {literal(info.name)}; validation is running.")
    st.rerun()


# ----- list --------------------------------------------------------------------------------------
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


def _open(dataset_id: str | None) -> None:
    open_detail(dataset_id, "datasets_confirm_delete")


def _list_view(actor) -> None:
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


def _empty_state(actor, filtered: bool) -> None:
    if filtered:
        st.info("No datasets match these filters.", icon=":material/filter_alt_off:")
        return
    st.info("No datasets yet — upload one", icon=":material/dataset:")
    if EXAMPLE.is_file():
        st.caption("Or try the product with an example: 200 short customer-support "
                   "conversations in the BrightRun v4 format.")
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
        row[7].button("Open", key=f"datasets_open_{d.id}", on_click=_open, args=(d.id,),
                      width="stretch")


def _pager(page) -> None:
    c = st.columns([1, 4, 1], vertical_alignment="center")
    c[0].button("← Previous", key="datasets_prev", disabled=page.page <= 1,
                on_click=_set_page, args=(-1,), width="stretch")
    c[1].markdown(f"Page {page.page} of {page.pages} · {page.total} dataset(s)",
                  text_alignment="center")
    c[2].button("Next →", key="datasets_next", disabled=page.page >= page.pages,
                on_click=_set_page, args=(1,), width="stretch")


# ----- detail ------------------------------------------------------------------------------------
def _detail_view(actor, dataset_id: str) -> None:
    st.button("← All datasets", key="datasets_back", on_click=_open, args=(None,))
    try:
        d = ds.get_dataset(actor, dataset_id)
    except BrightRunError as exc:
        show_error(exc)
        return
    st.subheader(literal(d.name), anchor=False)
    st.markdown(f"{badge_markdown(d.status)} &nbsp; "
                f"{literal(format_label(d.format) if d.format else 'format not detected yet')}"
                f" · {literal(d.file_name)} · {fmt_bytes(d.file_size)} · uploaded "
                f"{fmt_time(d.created_at)}")
    if d.description:
        st.markdown(literal(d.description))
    if d.status in BUSY:
        st.info("Validating… this page refreshes by itself.", icon=":material/hourglass_top:")
    elif d.status == "error" and d.error_message:
        st.error(literal(d.error_message), icon=":material/error:")
    _actions(actor, d)
    if d.statistics:
        _statistics(d)
    _issues(d)
    _preview(d)
    _edit_form(actor, d)


def _statistics(d) -> None:
    st.markdown("#### Statistics")
    c = st.columns(5)
    c[0].metric("Conversations", fmt_int(d.total_conversations))
    c[1].metric("Training pairs", fmt_int(d.total_training_pairs))
    c[2].metric("Validation pairs", fmt_int(d.total_validation_pairs))
    c[3].metric("Total tokens", fmt_int(d.total_tokens))
    c[4].metric("Assistant tokens", fmt_int(d.assistant_tokens),
                help="Tokens the model is trained on (assistant turns only).")
    stats = d.statistics or {}
    pct = stats.get("length_percentiles") or {}
    c = st.columns(6)
    c[0].metric("Avg turns / conversation", fmt_float(d.avg_turns_per_conversation))
    c[1].metric("Avg tokens / turn", fmt_float(d.avg_tokens_per_turn))
    for col, key in zip(c[2:], ("p10", "p50", "p90", "max")):
        col.metric(f"Length {key}", fmt_int(pct.get(key)), help="Tokens per conversation.")
    st.caption(f"Tokens counted with {literal(d.tokenizer_name or stats.get('tokenizer') or '—')}.")
    chart = charts.length_histogram(stats.get("length_histogram") or [], pct)
    if chart is not None:
        st.markdown("#### Length distribution")
        st.altair_chart(chart, width="stretch")


def _issues(d) -> None:
    issues = d.validation_errors or []
    total = (d.error_count or 0) + (d.warning_count or 0)
    if not issues and not total:
        if d.status == "ready":
            st.success("No problems found.", icon=":material/check_circle:")
        return
    st.markdown(f"#### Problems: {d.error_count} error(s), {d.warning_count} warning(s)")
    if total > len(issues):
        st.caption(f"Showing first {len(issues)} of {total}.")
    cols = ["line", "code", "severity", "error", "suggestion"]
    df = pd.DataFrame([{k: i.get(k) for k in cols} for i in issues], columns=cols)
    st.dataframe(df, hide_index=True, width="stretch", key="datasets_issues",
                 column_config={"line": st.column_config.NumberColumn(width="small"),
                                "severity": st.column_config.TextColumn(width="small"),
                                "error": st.column_config.TextColumn(width="large"),
                                "suggestion": st.column_config.TextColumn(width="large")})


def _preview(d) -> None:
    sample = d.sample_data or []
    if not sample:
        return
    st.markdown(f"#### Preview: first {len(sample)} conversation(s)")
    for i, conv in enumerate(sample):
        turns = conv.get("turns") or []
        label = f"Conversation {literal(conv.get('conversation_id', '—'))} · {len(turns)} turn(s)"
        with st.expander(label, expanded=i == 0, icon=":material/forum:"):
            for turn in turns:
                role = str(turn.get("role") or "user")
                avatar = ":material/settings:" if role == "system" else None
                with st.chat_message(role if role in ("user", "assistant") else "system",
                                     avatar=avatar):
                    if role not in ("user", "assistant"):
                        st.caption(literal(role))
                    st.markdown(literal(turn.get("content", "")))


def _edit_form(actor, d) -> None:
    if st.session_state.get("datasets_edit_for") != (d.id, d.updated_at):
        st.session_state["datasets_edit_for"] = (d.id, d.updated_at)
        st.session_state["datasets_edit_name"] = d.name
        st.session_state["datasets_edit_description"] = d.description or ""
    with st.expander("Rename / describe", icon=":material/edit:"):
        with st.form("datasets_edit_form"):
            name = st.text_input("Name", key="datasets_edit_name", max_chars=200)
            description = st.text_area("Description", key="datasets_edit_description",
                                       max_chars=5000)
            saved = st.form_submit_button("Save", key="datasets_edit_save")
    if saved:
        with handled():
            ds.update_dataset(actor, d.id, name=name, description=description)
            _flash("success", "Saved.")
            st.rerun()


def _actions(actor, d) -> None:
    c = st.columns([1.3, 1.2, 1, 3])
    if c[0].button("Start training", key="datasets_start_training", type="primary",
                   disabled=not d.training_ready, icon=":material/rocket_launch:",
                   help=None if d.training_ready else "Only a ready dataset can be trained on."):
        st.session_state["configure_dataset_id"] = d.id
        st.switch_page(page_path("configure"), query_params={"dataset_id": d.id})
    if c[1].button("Re-validate", key="datasets_revalidate", disabled=d.status in BUSY,
                   icon=":material/refresh:"):
        with handled():
            ds.revalidate(actor, d.id)
            _flash("info", "Validation started again.")
            st.rerun()
    if c[2].button("Delete", key="datasets_delete", icon=":material/delete:"):
        st.session_state["datasets_confirm_delete"] = d.id
    if st.session_state.get("datasets_confirm_delete") == d.id:
        _confirm_delete(actor, d)


def _confirm_delete(actor, d) -> None:
    question = (f"Delete the dataset **{literal(d.name)}**? It disappears from every list; "
                "models trained on it keep their lineage.")
    if not confirm_delete("datasets", question, lambda: ds.delete_dataset(actor, d.id)):
        return
    _open(None)
    _flash("success", f"Deleted {literal(d.name)}.")
    st.rerun()


# ----- page --------------------------------------------------------------------------------------
def _body(actor, polling: bool) -> None:
    """List or detail. When started as a poller, reconcile dead validations each run and switch
    back to a plain page (full rerun) once nothing is in progress."""
    if polling:
        with handled():
            ds.reconcile_validations()
        with handled():
            if not _busy(ds.dataset_counts(actor)):
                st.rerun()
    with handled():
        dataset_id = st.query_params.get("id")
        if dataset_id:
            _detail_view(actor, dataset_id)
        else:
            _list_view(actor)


def main() -> None:
    actor = current_user()
    st.title("Datasets")
    st.caption("Upload conversation datasets (JSONL), read their validation report, and start "
               "training from a ready one.")
    _show_flash()
    try:
        counts = ds.dataset_counts(actor)
    except BrightRunError as exc:
        show_error(exc)
        return
    every = POLL_SECONDS if _busy(counts) else None
    st.fragment(_header, run_every=every)(actor)
    _upload_form(actor, expanded=counts["total"] == 0)
    st.fragment(_body, run_every=every)(actor, every is not None)


main()
