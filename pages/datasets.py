"""Datasets page: header counts, upload, list (search, filters, sort, pages), detail view with the
validation report, rename/describe, re-validate, delete, and "Start training" → Configure.

While any dataset is uploading or validating, the counts and the list/detail refresh themselves
every few seconds (fragments with ``run_every``); a validation whose Ray job died is turned into an
error on those polls (``reconcile_validations``).
"""
from __future__ import annotations

import streamlit as st

from app.auth import current_user
from app.datasets.detail import detail_view
from app.datasets.listing import BUSY, list_view, show_flash
from app.datasets.upload import upload_form
from app.ui.widgets import handled, show_error
from backend.core.errors import BrightRunError
from backend.datasets import service as ds

POLL_SECONDS = 3


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
            detail_view(actor, dataset_id)
        else:
            list_view(actor)


def main() -> None:
    actor = current_user()
    st.title("Datasets")
    st.caption("Upload conversation datasets (JSONL), read their validation report, and start "
               "training from a ready one.")
    show_flash()
    try:
        counts = ds.dataset_counts(actor)
    except BrightRunError as exc:
        show_error(exc)
        return
    every = POLL_SECONDS if _busy(counts) else None
    st.fragment(_header, run_every=every)(actor)
    upload_form(actor, expanded=counts["total"] == 0)
    st.fragment(_body, run_every=every)(actor, every is not None)


main()
