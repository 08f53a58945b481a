"""Read-only parts of the Models page: the list table, the rating badge, and the detail view's
quality metrics, training summary, configuration, loss curve and lineage."""
from __future__ import annotations

import pandas as pd
import streamlit as st

from app.ui import gpu_widgets, job_charts
from app.ui.job_widgets import cell_text, fmt_duration, fmt_money
from app.ui.widgets import badge_markdown, fmt_int, fmt_time, literal, page_path, short_label
from backend.core.errors import BrightRunError
from backend.jobs import service as jobs
from backend.training.quality import THRESHOLDS

RATING_COLOURS = {"excellent": ("green", "verified"), "good": ("blue", "thumb_up"),
                  "fair": ("orange", "trending_flat"), "poor": ("red", "thumb_down")}
LIST_COLS = [3.4, 1.4, 1.6, 1.1, 1.1, 1.0]  # model (base model · created below it), …, Open
LINK_CHARS = 24  # a lineage column (a quarter of the page) shows about this much of a name


def rating_badge(rating: str | None) -> str:
    """Convergence rating (excellent / good / fair / poor) as a coloured badge."""
    colour, icon = RATING_COLOURS.get(rating or "", ("gray", "help"))
    return f":{colour}-badge[:material/{icon}: {literal(rating or 'unrated')}]"


def _loss(value) -> str:
    return "—" if value is None else f"{value:.4f}"


def list_table(items, on_open) -> None:
    head = st.columns(LIST_COLS, vertical_alignment="bottom", gap="xsmall")
    for col, label in zip(head, ("Model · base model · created", "Status", "Rating",
                                 "Val. loss", "Perplexity", "")):
        if label:
            col.markdown(f"**{label}**")
    for m in items:
        q = m.quality_metrics or {}
        row = st.columns(LIST_COLS, vertical_alignment="center", gap="xsmall")
        with row[0]:
            st.markdown(f"**{literal(m.name)}** {literal(m.version)}")
            st.caption(f"{literal(m.base_model)} · {fmt_time(m.created_at)}")
        row[1].markdown(badge_markdown(m.status))
        row[2].markdown(rating_badge(q.get("convergence_quality")))
        row[3].markdown(_loss(q.get("final_validation_loss")))
        ppl = q.get("perplexity")
        row[4].markdown("—" if ppl is None else f"{ppl:,.2f}")
        row[5].button("Open", key=f"models_open_{m.id}", on_click=on_open, args=(m.id,),
                      width="stretch")


def header(m) -> None:
    q = m.quality_metrics or {}
    st.subheader(f"{literal(m.name)} {literal(m.version)}", anchor=False)
    st.markdown(f"{badge_markdown(m.status)} &nbsp; {rating_badge(q.get('convergence_quality'))}"
                f" &nbsp; base model {literal(m.base_model)} · created {fmt_time(m.created_at)}")
    if m.description:
        st.markdown(literal(m.description))


def quality(m) -> None:
    q = m.quality_metrics or {}
    reduction = q.get("loss_reduction")
    base = q.get("base_validation_loss")
    c = st.columns(6)
    c[0].metric("Base model val. loss", _loss(base),
                help="The base model's validation loss, measured before the first step "
                     "(step 0 of the loss curve).")
    c[1].metric("Final validation loss", _loss(q.get("final_validation_loss")),
                delta=None if reduction is None or base is None else f"{-reduction:+.1%}",
                delta_color="inverse", help="Change against the base model's validation loss.")
    c[2].metric("Best validation loss", _loss(q.get("best_validation_loss")))
    c[3].metric("Final training loss", _loss(q.get("final_training_loss")))
    ppl = q.get("perplexity")
    c[4].metric("Perplexity", "—" if ppl is None else f"{ppl:,.2f}",
                help="exp(final validation loss)")
    c[5].metric("Best epoch", "—" if q.get("best_epoch") is None else str(q["best_epoch"]))
    st.caption(f"Convergence **{literal(q.get('convergence_quality') or 'unrated')}**: "
               + rating_rule_text(q))


def rating_rule_text(q: dict) -> str:
    """How the rating was reached, in words (the rule: backend/training/quality.py)."""
    reduction = q.get("loss_reduction")
    if reduction is None:
        return "no validation loss to rate against."
    against = ("the base model's validation loss" if q.get("reduction_reference")
               == "base_validation_loss" else "the first training loss (no base model loss "
               "was recorded)")
    where = f"{reduction:.1%} below" if reduction >= 0 else f"{-reduction:.1%} above"
    rule = ", ".join(f"≥ {low:.0%} and gap ≤ {gap:.0%}: {name}" for name, low, gap in THRESHOLDS)
    return (f"validation loss {where} {against}. Rule (reduction, and the gap between validation "
            f"and training loss): {rule}; otherwise poor.")


def training_summary(m, fig) -> None:
    """``fig``: the job's figures (backend/jobs/figures.get_figures)."""
    t = m.training_summary or {}
    c = st.columns(4)
    c[0].metric("Training time", fmt_duration(fig.training_seconds),
                help=f"First training step to the end. Total {fmt_duration(fig.total_seconds)} "
                     "from the job's start, start-up and saving included.")
    c[1].metric("Epochs / steps", f"{fmt_int(fig.epochs_planned)} / {fmt_int(fig.steps_done)}")
    c[2].metric("Tokens processed", fmt_int(fig.tokens_processed),
                help="Templated tokens (the base model's chat template) trained on, padding "
                     "excluded.")
    tps = fig.throughput
    c[3].metric("Avg throughput", "—" if tps is None else f"{tps:,.0f} tok/s",
                help="Tokens processed ÷ training time.")
    c = st.columns(4)
    c[0].metric("Hardware", f"{fig.workers} × {fig.hardware}")
    c[1].metric(fig.hours_label.capitalize(), "—" if fig.hours is None else f"{fig.hours:,.3f}",
                help="Total time × workers.")
    c[2].metric("Training cost", fmt_money(fig.cost))
    c[3].metric("Truncated conversations", fmt_int(t.get("truncated_conversations")))
    spent, duration = t.get("eval_samples_seconds"), t.get("duration_seconds")
    if spent is not None and duration:
        st.caption(f"Evaluation samples (greedy answers at each evaluation) took {spent:,.1f} s, "
                   f"{spent / duration:.1%} of the run.")
    gpu_widgets.summary_caption(t)


def configuration(m) -> None:
    cfg = m.configuration or {}
    hyper = cfg.get("hyperparameters") or {}
    st.caption(f"Preset {literal(cfg.get('preset_id') or '—')} · dataset "
               f"{literal(cfg.get('dataset_name') or '—')}")
    rows = [{"field": k, "value": cell_text(v)} for k, v in hyper.items()]
    from backend.jobs.figures import is_gpu_hardware

    hw = cfg.get("gpu_config") or {}
    prefix = "gpu_config" if is_gpu_hardware(hw.get("gpu_type")) else "hardware"
    rows += [{"field": f"{prefix}.{k}", "value": cell_text(v)} for k, v in hw.items()]
    if rows:
        st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch", height="content")


def loss_curve(actor, m) -> None:
    try:
        points = jobs.job_metrics(actor, m.job_id, max_points=1000)
    except BrightRunError:
        points = []
    chart = job_charts.loss_chart(points) if points else None
    if chart is None:
        st.caption("No loss history recorded for this model's job.")
        return
    st.altair_chart(chart, width="stretch")


def lineage_links(info: dict) -> None:
    """Dataset → job → model, parent and children, as links to their pages."""
    c = st.columns(4)
    ds, job, parent = info.get("dataset"), info.get("job"), info.get("parent")
    with c[0]:
        st.caption("Dataset")
        if ds:
            st.page_link(page_path("datasets"), label=literal(short_label(ds["name"], LINK_CHARS)),
                         help=literal(ds["name"]),
                         query_params={"id": ds["id"]}, icon=":material/dataset:")
        else:
            st.markdown("—")
    with c[1]:
        st.caption("Training job")
        if job:
            st.page_link(page_path("monitor"), label=f"{job['id'][:8]} · {literal(job['status'])}",
                         query_params={"job_id": job["id"]}, icon=":material/monitoring:")
        else:
            st.markdown("—")
    with c[2]:
        st.caption("Parent model")
        if parent:
            st.page_link(page_path("models"),
                         label=literal(short_label(parent["name"], LINK_CHARS)),
                         help=literal(parent["name"]),
                         query_params={"id": parent["id"]}, icon=":material/account_tree:")
        else:
            st.markdown("none (trained from the base model)")
    with c[3]:
        st.caption("Trained from this model")
        for child in info.get("children") or []:
            st.page_link(page_path("models"), label=literal(short_label(child["name"], LINK_CHARS)),
                         help=literal(child["name"]),
                         query_params={"id": child["id"]},
                         icon=":material/subdirectory_arrow_right:")
        if not info.get("children"):
            st.markdown("none yet")
