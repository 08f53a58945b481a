"""The Models page's *Export* section: choose merged / GGUF / Ollama (and f16 / q8_0), start the
export (a Ray job, reused when it exists), watch its progress bar, download its files (streamed
from the local store, presigned links on S3)."""
from __future__ import annotations

import streamlit as st

from app.ui.widgets import fmt_bytes, literal, show_error
from backend.adapters import files_served_locally
from backend.core.errors import BrightRunError
from backend.exports import service as exports

FORMATS = {"merged": "Merged Hugging Face folder (safetensors)",
           "gguf": "GGUF for llama.cpp", "ollama": "Ollama (GGUF + Modelfile)"}
EAGER_BYTES = 50 * 1024 * 1024  # bigger files are read only when their button is clicked
REFRESH_S = 2.0


def section(actor, m) -> None:
    """The export form and the model's exports."""
    st.markdown("#### Export")
    c = st.columns([2.4, 1, 1], vertical_alignment="bottom")
    fmt = c[0].selectbox("Format", tuple(FORMATS), format_func=FORMATS.get, key="models_export_format")
    quant = c[1].selectbox("Weights", ("f16", "q8_0"), key="models_export_quant",
                           disabled=fmt == "merged", help="GGUF only; merged is fp32")
    if c[2].button("Export", key="models_export_start", icon=":material/output:", width="stretch"):
        try:
            info, reused = exports.request_export(actor, m.id, fmt,
                                                  None if fmt == "merged" else quant)
        except BrightRunError as exc:
            show_error(exc)
        else:
            st.toast(f"{info.label}: {'already stored' if reused else 'export started'}")
    active = any(r.status in exports.ACTIVE for r in exports.list_exports(actor, m.id))
    st.fragment(_exports, run_every=REFRESH_S if active else None)(actor, m.id)


def _exports(actor, model_id: str) -> None:
    rows = exports.list_exports(actor, model_id)
    if not rows:
        st.caption("No exports yet.")
        return
    for row in rows:
        st.markdown(f"**{literal(row.label)}** — {literal(row.status)}")
        if row.status in exports.ACTIVE:
            st.progress(min(row.progress, 100.0) / 100.0, text=literal(row.stage or row.status))
        elif row.status == "failed":
            st.error(literal(row.error or "failed"), icon=":material/error:")
        else:
            _files(actor, row)
    if any(r.status in exports.ACTIVE for r in rows):
        st.caption("Refreshing every few seconds while an export runs.")


def _files(actor, row) -> None:
    files = exports.export_files(actor, row.id)
    local = files_served_locally(files)
    urls = {} if local else {f["name"]: f["url"] for f in exports.download_urls(actor, row.id)}
    for f in files:
        c = st.columns([4, 1.2, 1.4], vertical_alignment="center")
        c[0].markdown(literal(f["name"]))
        c[1].markdown(fmt_bytes(f["size"]))
        if not local:
            c[2].link_button("Download", urls[f["name"]], icon=":material/download:",
                             width="stretch")
            continue

        def read(name=f["name"], export_id=row.id):
            with exports.open_export_file(actor, export_id, name) as fh:
                return fh.read()

        c[2].download_button("Download", data=read() if f["size"] <= EAGER_BYTES else read,
                             file_name=f["name"], key=f"models_export_dl_{row.id}_{f['name']}",
                             icon=":material/download:", on_click="ignore", width="stretch")
