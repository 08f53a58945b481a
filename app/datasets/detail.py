"""Datasets page, detail view of one dataset: status, statistics with the length chart, the
validation problems, a preview of the first conversations, rename/describe, re-validate, delete and
"Start training"."""
from __future__ import annotations

import pandas as pd
import streamlit as st

from app.datasets.listing import BUSY, flash, open_dataset
from app.ui import charts
from app.ui.widgets import (
    badge_markdown,
    confirm_delete,
    fmt_bytes,
    fmt_float,
    fmt_int,
    fmt_time,
    format_label,
    handled,
    literal,
    page_path,
    show_error,
)
from backend.core.errors import BrightRunError
from backend.datasets import service as ds


def detail_view(actor, dataset_id: str) -> None:
    st.button("← All datasets", key="datasets_back", on_click=open_dataset, args=(None,))
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
    cut = stats.get("truncation")
    if cut:
        st.caption(f"At max sequence length {fmt_int(cut.get('max_seq_length'))}: "
                   f"{fmt_int(cut.get('truncated'))} conversation(s) shortened to their last whole "
                   f"assistant turn, {fmt_int(cut.get('left_out'))} left out (no assistant turn "
                   f"fits); {fmt_int(cut.get('trained_tokens_cut'))} trained tokens cut. Configure "
                   "shows the same for the length you choose.")
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
    # a static table: long messages and suggestions wrap instead of being cut at the column edge
    st.table(df.fillna("").astype({"line": str}).set_index("line"))


def _preview(d) -> None:
    sample = d.sample_data or []
    if not sample:
        return
    pairs = d.format == "preference"
    st.markdown(f"#### Preview: first {len(sample)} {'preference pair' if pairs else 'conversation'}(s)")
    for i, conv in enumerate(sample):
        turns = conv.get("turns") or []
        label = f"Conversation {literal(conv.get('conversation_id', '—'))} · {len(turns)} turn(s)"
        if pairs:  # prompt turns, then the chosen and the rejected answer (line: the file's)
            turns = [*(conv.get("prompt") or []),
                     {"role": "assistant", "content": f"✅ chosen: {conv.get('chosen', '')}"},
                     {"role": "assistant", "content": f"❌ rejected: {conv.get('rejected', '')}"}]
            label = f"Pair {literal(conv.get('id', '—'))} · line {conv.get('line', '—')}"
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
            flash("success", "Saved.")
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
            flash("info", "Validation started again.")
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
    open_dataset(None)
    flash("success", f"Deleted {literal(d.name)}.")
    st.rerun()
