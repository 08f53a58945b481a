"""Actions of the Models page's detail view: downloads (all as one zip, each file; presigned,
expiring links when objects live on S3), edit name / description / status, soft delete with a
confirmation, and "Train again" (→ Configure with the parent model set)."""
from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone

import streamlit as st

from app.ui.widgets import confirm_delete, fmt_bytes, literal, page_path, show_error
from backend import adapters as models
from backend.core import states
from backend.core.errors import BrightRunError

EAGER_BYTES = 200 * 1024 * 1024  # above this, files are read only when the button is clicked
URL_EXPIRY_S = 3600


def flash(text: str) -> None:
    st.session_state["models_flash"] = text


def show_flash() -> None:
    text = st.session_state.pop("models_flash", None)
    if text:
        st.success(text, icon=":material/check_circle:")


def safe_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-") or "model"


def _data(size: int, read):
    """Bytes now for small files (what the page and tests use), a callable for big ones."""
    return read() if size <= EAGER_BYTES else read


def downloads(actor, m) -> None:
    files = models.model_files(actor, m.id)
    if not files:
        st.warning("No files are stored for this model.", icon=":material/folder_off:")
        return
    total = sum(f["size"] for f in files)
    st.download_button(f"Download all (.zip, {fmt_bytes(total)})",
                       data=_data(total, lambda: models.archive_bytes(actor, m.id)),
                       file_name=f"{safe_name(m.name)}-{safe_name(m.version)}.zip",
                       mime="application/zip", key="models_download_all", type="primary",
                       icon=":material/folder_zip:", on_click="ignore")
    if models.files_served_locally(files):
        _local_files(actor, m, files)
    else:
        _presigned(actor, m)


def _local_files(actor, m, files) -> None:
    for i, f in enumerate(files):
        c = st.columns([4, 1.2, 1.4], vertical_alignment="center")
        c[0].markdown(f"`{f['name']}`" if re.fullmatch(r"[\w./-]+", f["name"]) else
                      literal(f["name"]))
        c[1].markdown(fmt_bytes(f["size"]))

        def read(name=f["name"]):
            with models.open_file(actor, m.id, name) as fh:
                return fh.read()

        c[2].download_button("Download", data=_data(f["size"], read),
                             file_name=f["name"].rsplit("/", 1)[-1], key=f"models_download_{i}",
                             icon=":material/download:", on_click="ignore", width="stretch")


def _presigned(actor, m) -> None:
    urls = models.download_urls(actor, m.id, expires_s=URL_EXPIRY_S)
    until = datetime.now(timezone.utc) + timedelta(seconds=URL_EXPIRY_S)
    st.caption(f"Presigned links, valid for {URL_EXPIRY_S // 60} min (until "
               f"{until:%H:%M UTC}); reload the page for fresh ones.")
    for f in urls:
        c = st.columns([4, 1.2, 1.4], vertical_alignment="center")
        c[0].markdown(literal(f["name"]))
        c[1].markdown(fmt_bytes(f["size"]))
        c[2].link_button("Download", f["url"], icon=":material/download:", width="stretch")


def edit_form(actor, m) -> None:
    if st.session_state.get("models_edit_for") != (m.id, m.updated_at):
        st.session_state["models_edit_for"] = (m.id, m.updated_at)
        st.session_state["models_edit_name"] = m.name
        st.session_state["models_edit_description"] = m.description or ""
        st.session_state["models_edit_status"] = m.status
    allowed = [m.status, *sorted(states.MODEL.get(m.status, set()))]
    with st.form("models_edit_form"):
        name = st.text_input("Name", key="models_edit_name", max_chars=200)
        description = st.text_area("Description", key="models_edit_description", max_chars=5000)
        status = st.selectbox("Status", allowed, key="models_edit_status",
                              help="stored ↔ deployed; archived is final.")
        saved = st.form_submit_button("Save", key="models_edit_save", type="primary")
    if saved:
        try:
            models.update_model(actor, m.id, name=name, description=description, status=status)
        except BrightRunError as exc:
            show_error(exc)
            return
        flash("Saved.")
        st.rerun()


def train_again(m) -> None:
    """Open Configure with this model as parent, its dataset and its hyperparameters."""
    cfg = m.configuration or {}
    st.session_state["configure_parent_model_id"] = m.id
    st.session_state["configure_dataset_id"] = m.dataset_id
    st.session_state["configure_prefill"] = {"preset_id": cfg.get("preset_id"),
                                             "hyperparameters": cfg.get("hyperparameters") or {}}
    st.switch_page(page_path("configure"), query_params={"dataset_id": m.dataset_id})


def delete_section(actor, m, on_close) -> None:
    if st.session_state.get("models_confirm_delete") != m.id:
        if st.button("Delete model", key="models_delete", icon=":material/delete:"):
            st.session_state["models_confirm_delete"] = m.id
            st.rerun()
        return
    question = (f"Delete the model **{literal(m.name)}** {literal(m.version)}? It disappears from "
                "every list; its files are kept for lineage until purged.")
    if not confirm_delete("models", question, lambda: models.delete_model(actor, m.id)):
        return
    on_close()
    flash(f"Deleted {literal(m.name)} {literal(m.version)}.")
    st.rerun()
