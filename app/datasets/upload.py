"""Datasets page, upload form: a JSONL file with name, description and format."""
from __future__ import annotations

import streamlit as st

from app.datasets.listing import AUTO, flash
from app.ui.widgets import fmt_bytes, format_label, literal, show_error
from backend.core.errors import BrightRunError
from backend.datasets import service as ds


def upload_form(actor, expanded: bool) -> None:
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
    flash("success", f"Uploaded {literal(info.name)} ({fmt_bytes(info.file_size)}); "
                      f"validation is running.")
    st.rerun()
