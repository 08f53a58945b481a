"""The Models page's *Evaluate* tab: score this model on any ready dataset as a Ray job
(``backend/evaluations/service.py``: base vs adapter loss, greedy answers scored with ROUGE-L, exact match
and key fact), its evaluations (status, figures, cancel, JSONL download) and, per dataset, every
model evaluated on it (comparable on one test set)."""
from __future__ import annotations

import streamlit as st

from app.ui.widgets import literal, show_error
from backend.core.errors import BrightRunError
from backend.datasets import service as datasets
from backend.evaluations import service as ev


def _fmt(v) -> str:
    return "—" if v is None else f"{v:.4f}"


def start_form(actor, m) -> None:
    ready = [d for d in datasets.list_datasets(actor, status="ready", per_page=100).items
             if d.format != "preference"]
    if not ready:
        st.info("No ready dataset to evaluate on: upload a test set on the Datasets page.",
                icon=":material/dataset:")
        return
    names = {d.id: f"{d.name} ({d.total_conversations or 0} conversations)" for d in ready}
    c = st.columns([3, 1])
    dataset_id = c[0].selectbox("Dataset (a test set the model never saw)", list(names),
                                format_func=names.get, key="models_eval_dataset")
    cap = c[1].number_input("Max answers", 0, ev.MAX_ANSWERS_LIMIT, ev.DEFAULT_MAX_ANSWERS,
                            key="models_eval_max", help="conversations answered by the base "
                            "model and the adapter (each a greedy answer)")
    if st.button("Evaluate", key="models_eval_run", type="primary", icon=":material/rule:",
                 help="Runs as a Ray job: loss of base and adapter, and their answers scored "
                      "against the references."):
        try:
            out = ev.create_evaluation(actor, m.id, dataset_id, max_answers=int(cap))
        except BrightRunError as exc:
            show_error(exc)
            return
        st.session_state["models_eval_started"] = out["id"]
        st.success(f"Evaluation {out['id'][:8]} {out['status']}.", icon=":material/rule:")


def _one(actor, e: dict) -> None:
    st.markdown(f"**{literal(e['dataset_name'] or e['dataset_id'])}** · {e['status']} · "
                f"loss {_fmt(e['base_loss'])} → {_fmt(e['adapter_loss'])}")
    if e["line"]:
        st.caption(literal(e["line"]))
    if e["error_message"]:
        st.caption(literal(e["error_message"].splitlines()[0]))
    cols = st.columns(2)
    if e["status"] in ev.ACTIVE:
        if cols[0].button("Cancel", key=f"models_eval_cancel_{e['id']}",
                          icon=":material/cancel:"):
            try:
                ev.cancel_evaluation(actor, e["id"])
            except BrightRunError as exc:
                show_error(exc)
            st.rerun()
    elif e["status"] == "completed":
        cols[0].download_button("Download answers (JSONL)",
                                data=ev.evaluation_jsonl(actor, e["id"]),
                                file_name=f"evaluation-{e['id'][:8]}.jsonl",
                                mime="application/x-ndjson", key=f"models_eval_dl_{e['id']}",
                                icon=":material/download:", on_click="ignore")


def evaluations_section(actor, m) -> None:
    """The Evaluate tab of model ``m``."""
    start_form(actor, m)
    evs = ev.list_evaluations(actor, model_id=m.id)
    st.markdown("#### Evaluations")
    if not evs:
        st.caption("No evaluations of this model yet.")
        return
    for e in evs:
        _one(actor, e)
    st.markdown("#### Compared on the same dataset")
    for dataset_id in dict.fromkeys(e["dataset_id"] for e in evs if e["status"] == "completed"):
        rows = ev.compare_on_dataset(actor, dataset_id)
        st.dataframe([{"model": r["model_name"], "base loss": r["base_loss"],
                       "adapter loss": r["adapter_loss"],
                       "adapter ROUGE-L": ((r["scores"] or {}).get("adapter") or {})
                       .get("rouge_l"), "scores": r["line"]} for r in rows],
                     key=f"models_eval_cmp_{dataset_id}")
