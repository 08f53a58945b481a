"""Configure training: pick a ready dataset (preselected when coming from Datasets → "Start
training"), then presets, hyperparameters, hardware and the estimate (jobs service)."""
from __future__ import annotations

import streamlit as st

from app.auth import current_user
from app.widgets import fmt_int, format_label, handled, literal, page_path
from backend import datasets as ds


def _preselected() -> str | None:
    """The dataset chosen on the Datasets page (session) or in the URL (?dataset_id=)."""
    return st.query_params.get("dataset_id") or st.session_state.get("configure_dataset_id")


def _dataset_picker(actor):
    ready = ds.list_datasets(actor, status="ready", training_ready=True, per_page=200).items
    if not ready:
        st.info("No ready datasets yet — upload one and wait for validation to finish.",
                icon=":material/dataset:")
        st.page_link(page_path("datasets"), label="Go to Datasets", icon=":material/dataset:")
        return None
    ids = [d.id for d in ready]
    by_id = {d.id: d for d in ready}
    wanted = _preselected()
    chosen = st.selectbox("Dataset", ids, index=ids.index(wanted) if wanted in ids else 0,
                          format_func=lambda i: by_id[i].name, key="configure_dataset")
    st.session_state["configure_dataset_id"] = chosen
    d = by_id[chosen]
    c = st.columns(4)
    c[0].metric("Conversations", fmt_int(d.total_conversations))
    c[1].metric("Training pairs", fmt_int(d.total_training_pairs))
    c[2].metric("Total tokens", fmt_int(d.total_tokens))
    c[3].metric("Assistant tokens", fmt_int(d.assistant_tokens))
    st.caption(f"Format {literal(format_label(d.format))} · file {literal(d.file_name)}")
    return d


def main() -> None:
    actor = current_user()
    st.title("Configure training")
    st.caption("Pick a ready dataset, a preset and the hardware; the estimate updates as you go.")
    with handled():
        _dataset_picker(actor)


main()
