"""Configure training: pick a ready dataset (preselected when coming from Datasets → "Start
training"), a preset that fills the form, advanced settings, hardware and workers; the estimate
(cost, duration, memory fit, budget) is recomputed on every change. "Start training" creates the
job (jobs service), which submits it to Ray, and opens it in Monitor."""
from __future__ import annotations

import streamlit as st

from app.auth import current_user
from app.configure import form
from app.configure.estimate import cached_estimate, show_budget, show_estimate, show_mask_preview
from app.ui.widgets import fmt_int, format_label, handled, literal, page_path, show_error
from backend.core.errors import BrightRunError
from backend.datasets import service as ds
from backend.jobs import service as jobs

PARENT_KEY = "configure_parent_model_id"


def _preselected() -> str | None:
    """The dataset chosen on the Datasets page (session) or in the URL (?dataset_id=)."""
    return st.query_params.get("dataset_id") or st.session_state.get("configure_dataset_id")


def _dataset_picker(actor):
    """The dataset select and its numbers; returns (dataset, slot for the split caption) or
    None."""
    ready = ds.list_datasets(actor, status="ready", training_ready=True, per_page=200).items
    if not ready:
        st.info("No ready datasets yet — upload one and wait for validation to finish.",
                icon=":material/dataset:")
        st.page_link(page_path("datasets"), label="Go to Datasets", icon=":material/dataset:")
        return None
    ids = [d.id for d in ready]
    by_id = {d.id: d for d in ready}
    wanted = _preselected()
    current = st.session_state.get("configure_dataset")
    if current not in ids or (wanted in ids and wanted != st.session_state.get(
            "configure_dataset_seen")):  # first visit, or a new "Start training" from elsewhere
        st.session_state["configure_dataset"] = wanted if wanted in ids else ids[0]
    chosen = st.selectbox("Dataset", ids, format_func=lambda i: by_id[i].name,
                          key="configure_dataset")
    st.session_state["configure_dataset_seen"] = chosen
    st.session_state["configure_dataset_id"] = chosen
    st.query_params["dataset_id"] = chosen
    d = by_id[chosen]
    c = st.columns(4)
    c[0].metric("Conversations", fmt_int(d.total_conversations))
    c[1].metric("Training pairs", fmt_int(d.total_training_pairs))
    c[2].metric("Total tokens", fmt_int(d.total_tokens))
    c[3].metric("Assistant tokens", fmt_int(d.assistant_tokens))
    return d, st.empty()  # the split caption follows the form's validation fraction


def _split_caption(slot, dataset, fraction) -> None:
    text, help_text = form.split_caption(dataset, fraction)
    slot.caption(f"Format {literal(format_label(dataset.format))} · file "
                 f"{literal(dataset.file_name)} · {text}", help=help_text)


def _parent_banner(actor) -> str | None:
    """'Training again from model X' while a parent model is set; returns its id."""
    parent_id = st.session_state.get(PARENT_KEY)
    if not parent_id:
        return None
    from backend import adapters as models

    try:
        m = models.get_model(actor, parent_id)
    except BrightRunError as exc:
        show_error(exc)
        st.session_state.pop(PARENT_KEY, None)
        return None
    c = st.columns([5, 1], vertical_alignment="center")
    c[0].info(f"Training again from the adapter **{literal(m.name)}** {literal(m.version)}: the "
              "new job records it as its parent model.", icon=":material/account_tree:")
    if c[1].button("Start fresh", key="configure_clear_parent", icon=":material/close:"):
        st.session_state.pop(PARENT_KEY, None)
        st.rerun()
    return parent_id


def _estimate(actor, dataset, preset: str, values: dict, hw_id: str, workers: int):
    """The estimate dict (cached per set of inputs), or None after showing why there is none."""
    try:
        config = jobs.build_config(preset, overrides=form.overrides(values))
        return cached_estimate(actor, dataset.id, config, hw_id, workers)
    except BrightRunError as exc:
        show_error(exc)
        return None


def _launch(actor, dataset, preset: str, values: dict, hw_id: str, workers: int,
            parent_id: str | None) -> None:
    """Estimate, name, over-budget confirmation and the Start button (a fragment: typing a name
    or ticking the confirmation reruns only this column); creates the job and opens Monitor."""
    st.markdown("#### Estimate")
    slot = st.empty()  # "estimating…" replaces the last estimate at once, then the new one
    slot.caption(":material/hourglass_top: Estimating…")
    with slot.container():
        est = _estimate(actor, dataset, preset, values, hw_id, workers)
        if est is not None:
            show_estimate(est)
            needs_confirmation = show_budget(est["budget"])
        else:
            needs_confirmation = False
    job_preset = form.job_preset(values, preset)
    name = st.text_input("Job name", key="configure_name", max_chars=200,
                         placeholder=jobs.default_job_name(dataset.name, job_preset))
    confirmed = False
    if needs_confirmation:
        confirmed = st.checkbox("I confirm starting over budget",
                                key="configure_confirm_over_budget")
    blocked = est is None or (needs_confirmation and not confirmed)
    if not st.button("Start training", key="configure_start", type="primary", disabled=blocked,
                     icon=":material/rocket_launch:", width="stretch"):
        return
    try:  # exactly the values shown: the same preset, overrides, hardware and workers
        job = jobs.create_job(actor, dataset.id, preset_id=job_preset,
                              overrides=form.overrides(values), hardware_id=hw_id,
                              workers=workers, allow_over_budget=confirmed,
                              name=(name or "").strip() or None, parent_model_id=parent_id)
    except BrightRunError as exc:
        show_error(exc)
        return
    st.session_state["monitor_job_id"] = job.id
    st.session_state.pop(PARENT_KEY, None)
    st.switch_page(page_path("monitor"), query_params={"job_id": job.id})


def main() -> None:
    actor = current_user()
    st.title("Configure training")
    st.caption("Pick a ready dataset, a preset and the hardware; the estimate updates as you go.")
    picked = None
    with handled():
        picked = _dataset_picker(actor)
    if picked is None:
        return
    dataset, split_slot = picked
    parent_id = _parent_banner(actor)
    with handled():
        form.init_state(dataset.id)
        left, right = st.columns([3, 2], gap="large")
        with left:  # the form first: it is drawn before anything slow runs
            preset = form.preset_buttons()
            method = form.method_choice(dataset.format)
            values = {**form.advanced_settings(), **method}
            st.caption(form.summary_caption(values, preset))
            hw_id, workers = form.hardware_picker()
            form.save_draft(dataset.id, preset, values, hw_id, workers)
            preview = st.container()
        with right:
            st.fragment(_launch)(actor, dataset, preset, values, hw_id, workers, parent_id)
        _split_caption(split_slot, dataset, values["validation_fraction"])
        with preview:  # last: its tokenizer never delays the form or the estimate
            if dataset.format != "preference":  # pairs: previewed on the Datasets page
                show_mask_preview(dataset, values["base_model"], values["max_seq_length"])


main()
