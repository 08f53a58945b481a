"""Models: trained LoRA adapters. List (sort by date / quality / name, filter by status, search);
detail (``?id=``) with quality metrics and rating (against the base model), its answers to the
held-out prompts next to the base model's and the reference, training summary, configuration, loss curve,
lineage, downloads, exports (merged / GGUF / Ollama), a playground (base vs base + adapter), edit, delete and "Train again"."""
from __future__ import annotations

import streamlit as st

from app.auth import current_user
from app.models import actions
from app.models import export as model_export
from app.models import widgets as mw
from app.models.evaluate import evaluations_section
from app.models.playground import playground
from app.ui.samples import model_panel as answers
from app.ui.widgets import handled, open_detail, page_path, show_error
from backend import adapters as models
from backend.core.errors import BrightRunError

SORTS = {"newest": "created_at", "quality": "quality", "name": "name"}
STATUSES = ("any", "stored", "deployed", "archived")


def _open(model_id: str | None) -> None:
    open_detail(model_id, "models_confirm_delete")


def _list_view(actor) -> None:
    c = st.columns([3, 1.5, 1.5])
    search = c[0].text_input("Search by name", key="models_search", icon=":material/search:")
    status = c[1].selectbox("Status", STATUSES, key="models_status")
    sort = c[2].selectbox("Sort", tuple(SORTS), key="models_sort",
                          help="quality: lowest final validation loss first")
    page = models.list_models(actor, status=None if status == "any" else status,
                              search=search.strip() or None, sort=SORTS[sort], per_page=100)
    if not page.items:
        if search.strip() or status != "any":
            st.info("No models match these filters.", icon=":material/filter_alt_off:")
            return
        st.info("No models yet — they appear here when a training job completes.",
                icon=":material/model_training:")
        st.page_link(page_path("configure"), label="Configure training", icon=":material/tune:")
        return
    mw.list_table(page.items, _open)
    st.caption(f"{page.total} model(s).")


def _detail_view(actor, model_id: str) -> None:
    from backend.jobs.figures import get_figures

    st.button("← All models", key="models_back", on_click=_open, args=(None,))
    try:
        m = models.get_model(actor, model_id)
    except BrightRunError as exc:
        show_error(exc)
        return
    mw.header(m)
    if st.button("Train again", key="models_train_again", type="primary", icon=":material/replay:",
                 help="Open Configure with this adapter's settings; the new job records this "
                      "model as its parent."):
        actions.train_again(m)
    overview, files, play, evaluate, settings = st.tabs(
        ["Overview", "Files & downloads", "Playground", "Evaluate", "Edit / delete"])
    with overview:
        with handled():
            st.markdown("#### Quality")
            mw.quality(m)
            st.markdown("#### Loss curve")
            mw.loss_curve(actor, m)
            st.markdown("#### Answers: base model vs adapter vs reference")
            answers(actor, m)
            st.markdown("#### Training summary")
            mw.training_summary(m, get_figures(actor, m.job_id))
            st.markdown("#### Lineage")
            mw.lineage_links(models.lineage(actor, m.id))
            st.markdown("#### Configuration")
            mw.configuration(m)
    with files, handled():
        actions.downloads(actor, m)
        model_export.section(actor, m)
    with play:
        playground(actor, m)
    with evaluate, handled():
        evaluations_section(actor, m)
    with settings:
        actions.edit_form(actor, m)
        actions.delete_section(actor, m, lambda: _open(None))


def main() -> None:
    actor = current_user()
    st.title("Models")
    actions.show_flash()
    with handled():
        model_id = st.query_params.get("id")
        if model_id:
            _detail_view(actor, model_id)
        else:
            _list_view(actor)


main()
