"""The Configure page's live estimate (cost breakdown chart, duration, GPU-hours, tokens, memory
fit, budget state, calibration, warnings) and the assistant-mask preview (which tokens of a
conversation the model is trained on)."""
from __future__ import annotations

import html
import json

import streamlit as st

from app.ui.job_widgets import fmt_duration, fmt_duration_short, fmt_money
from app.ui.widgets import fmt_int, literal, show_error
from backend.core.errors import BrightRunError

TRAINED_STYLE = "background:#c8f0d0;color:#0b3d17;border-radius:3px;"
CONTEXT_STYLE = "color:#7a7f87;"


@st.cache_data(max_entries=256, show_spinner=False)
def _estimate(actor_id: str, dataset_id: str, config_json: str, hw_id: str, workers: int,
              version: tuple, _actor) -> dict:
    """``estimate_for_dataset``, once per process for one set of inputs (keyed by the user, the
    dataset, the whole config, hardware, workers and ``inputs_version``)."""
    from backend.jobs.estimates import estimate_for_dataset
    from backend.training.config import TrainingConfig

    return estimate_for_dataset(_actor, dataset_id, TrainingConfig.model_validate_json(
        config_json), hw_id, workers)


def cached_estimate(actor, dataset_id: str, config, hw_id: str, workers: int) -> dict:
    """The estimate of ``config`` on ``dataset_id``: a pure function of its inputs, so a form
    value the user goes back to answers from the cache. Raises what the estimate raises."""
    from backend.jobs.estimates import inputs_version

    version = inputs_version(actor, dataset_id)  # one small read: calibration, spend, budget
    return _estimate(actor.id, dataset_id, config.model_dump_json(), hw_id, int(workers),
                     version, actor)


def show_estimate(est: dict) -> None:
    """Numbers, cost chart, memory fit, calibration, warnings and assumptions of an estimate."""
    hw = est.get("hardware") or {}
    c = st.columns(2)  # two per row: the panel is narrow and labels must not be cut off
    c[0].metric("Estimated cost", fmt_money(est["cost"]["total"]))
    c[1].metric("Duration", fmt_duration_short(est["duration_s"]),
                help=f"{fmt_duration(est['duration_s'])}, startup included.")
    c = st.columns(2)
    c[0].metric("Tokens to train", fmt_int(est["tokens_to_train"]),
                help="Assistant tokens × epochs (after truncation at the max sequence length).")
    hours = est.get("worker_hours", est.get("gpu_hours", 0.0))  # jobs estimated before the rename
    c[1].metric("GPU-hours" if hw.get("is_gpu") else "Worker-hours", f"{hours:,.3f}")
    c = st.columns(2)
    c[0].metric("Optimizer steps", fmt_int(est.get("total_steps")))
    c[1].metric("Tokens/s", f"{est['throughput_tokens_per_s']:,.0f}",
                help="Training throughput of all workers together.")
    if est["cost"]["total"] > 0:  # plain HTML bars: no chart library to load on this page
        st.markdown(cost_bars(est["cost"]), unsafe_allow_html=True)
    else:
        st.caption(f"No cost: {literal(hw.get('name') or 'this hardware')} has no price, and "
                   "storage and data transfer round to $0.")
    _memory(est["vram"], hw, est.get("memory_check"))
    n = int(est.get("calibrated_from") or 0)
    st.caption(f"Throughput calibrated from {n} finished job(s)." if n else
               "Throughput is the catalog's assumption (calibrated from 0 finished jobs); it is "
               "replaced by measured speed once jobs on this hardware finish.")
    for warning in est.get("warnings") or []:
        st.warning(literal(warning), icon=":material/warning:")
    if est.get("assumptions"):
        with st.expander("How this is estimated", icon=":material/info:"):
            st.markdown("\n".join(f"- {literal(a)}" for a in est["assumptions"]))


COST_BARS = (("compute", "compute", "#4c78a8"), ("storage", "storage", "#f58518"),
             ("data_transfer", "data transfer", "#54a24b"))


def cost_bars(cost: dict) -> str:
    """The estimate's cost by type as three labelled bars (widths relative to the largest) with
    their amounts as ``money_text`` writes them; numbers only, nothing user-typed."""
    from backend.costs import money_text

    amounts = [(label, float(cost.get(k) or 0.0), colour) for k, label, colour in COST_BARS]
    top = max(a for _, a, _ in amounts) or 1.0
    rows = "".join(
        f'<div style="display:flex;align-items:center;gap:8px;margin:2px 0;">'
        f'<span style="width:96px;font-size:0.85rem;">{label}</span>'
        f'<span style="flex:1;height:10px;background:#eceff3;border-radius:3px;">'
        f'<span style="display:block;height:100%;width:{amount / top * 100:.1f}%;'
        f'min-width:{2 if amount > 0 else 0}px;background:{colour};border-radius:3px;"></span>'
        f'</span><span style="width:72px;text-align:right;font-size:0.85rem;">'
        f'{money_text(amount)}</span></div>' for label, amount, colour in amounts)
    return f'<div role="img" aria-label="estimated cost by type">{rows}</div>'


def memory_bar(what: str, total: float, available: float, fits: bool) -> str:
    """'GPU memory per worker: 1.0 of 8 GB (13 %)' over a filled bar, as one markdown block (numbers
    only, nothing user-typed). Not st.progress: its lazily loaded widget shows as an empty grey
    box until the browser has fetched it, which screenshots and slow links caught."""
    share = min(total / available, 1.0) if available > 0 else 1.0
    colour = "#3b6fd8" if fits else "#e45756"
    return (f"**{what} per worker:** {total:,.1f} of {available:,.0f} GB ({share:.0%})\n\n"
            f'<div role="meter" aria-label="{what} per worker" aria-valuemin="0" '
            f'aria-valuemax="{available:g}" aria-valuenow="{total:.2f}" style="height:8px;'
            f'border-radius:4px;background:#e6e9ef;overflow:hidden;margin:-6px 0 4px 0;">'
            f'<div style="width:{share * 100:.1f}%;min-width:2px;height:100%;'
            f'background:{colour};"></div></div>')


def memory_check_text(check: dict | None) -> str:
    """'Last job on A100-80GB: predicted 30.1 GB allocated, measured peak 33.0 GB (9 % under).'"""
    if not check:
        return ("No finished GPU job on this hardware yet: the memory prediction has not been "
                "checked against a measured peak.")
    error = float(check["error_percent"])
    side = "under" if error < 0 else "over"
    return (f"Last job on {check['hardware_id']}: predicted {check['predicted_gb']:,.1f} GB "
            f"allocated per worker, measured peak {check['measured_gb']:,.1f} GB "
            f"({abs(error):.0f} % {side}).")


def _memory(vram: dict, hw: dict, check: dict | None = None) -> None:
    what = "GPU memory" if hw.get("is_gpu") else "Memory"
    total, available = float(vram["total_gb"]), float(vram["available_gb"])
    st.markdown(memory_bar(what, total, available, bool(vram["fits"])), unsafe_allow_html=True)
    st.caption(f"base weights {vram['base_weights_gb']:,.2f} GB · LoRA + optimizer "
               f"{vram['lora_and_optimizer_gb']:,.2f} GB · activations "
               f"{vram['activations_gb']:,.2f} GB · overhead {vram['overhead_gb']:,.2f} GB · "
               f"gradient checkpointing {'on' if vram.get('gradient_checkpointing') else 'off'}")
    if hw.get("is_gpu"):
        st.caption(memory_check_text(check))
    if vram["fits"]:
        st.success(f"Fits: {vram['headroom_gb']:,.1f} GB headroom.", icon=":material/memory:")
    else:
        st.error(f"Does not fit: needs {total - available:,.1f} GB more than the "
                 f"{available:,.0f} GB available. Lower the batch size or sequence length, or "
                 "pick a bigger GPU.", icon=":material/memory:")


def show_budget(budget: dict) -> bool:
    """The budget state of the estimate; True when starting needs an over-budget confirmation."""
    level = budget.get("level")
    projected, limit = budget.get("projected") or 0.0, budget.get("budget")
    if not limit or level == "no_budget":
        st.caption(f"No monthly budget set (spent {fmt_money(budget.get('month_spend'))} this "
                   "month). Set one on the Costs page.")
        return bool(budget.get("over_budget"))
    text = (f"This month's spend after this job: {fmt_money(projected)} of your "
            f"{fmt_money(limit)} budget ({budget.get('percent') or 0:.0f} %).")
    if budget.get("over_budget"):
        st.error("**Over budget.** " + text, icon=":material/report:")
        return True
    if level in ("high", "critical"):
        st.warning("**Close to the budget.** " + text, icon=":material/warning:")
    else:
        st.success("Within budget. " + text, icon=":material/savings:")
    return False


# ----- assistant-mask preview --------------------------------------------------------------------
@st.cache_data(max_entries=64, show_spinner=False)
def mask_segments(base_model: str, max_seq_length: int, turns_json: str) -> dict:
    """Runs of (text, trained) for one conversation encoded exactly as training encodes it."""
    from backend.datasets.templated import load_tokenizer
    from backend.training.data import IGNORE_INDEX, encode_conversation

    tok = load_tokenizer(base_model)
    enc = encode_conversation(tok, json.loads(turns_json), max_seq_length)
    segments: list[tuple[str, bool]] = []
    run: list[int] = []
    current = None
    for token, label in zip(enc.input_ids, enc.labels):
        trained = label != IGNORE_INDEX
        if run and trained != current:
            segments.append((tok.decode(run), bool(current)))
            run = []
        current = trained
        run.append(token)
    if run:
        segments.append((tok.decode(run), bool(current)))
    return {"segments": segments, "tokens": len(enc.input_ids),
            "trained": sum(1 for label in enc.labels if label != IGNORE_INDEX),
            "truncated": enc.truncated}


def mask_html(segments: list[tuple[str, bool]]) -> str:
    """Escaped text; trained runs highlighted, context runs greyed."""
    spans = "".join(f'<span style="{TRAINED_STYLE if trained else CONTEXT_STYLE}">'
                    f"{html.escape(text)}</span>" for text, trained in segments)
    return ('<div style="font-family:ui-monospace,monospace;font-size:0.85rem;line-height:1.6;'
            'white-space:pre-wrap;word-break:break-word;border:1px solid #d0d4da;'
            f'border-radius:6px;padding:10px 12px;">{spans}</div>')


def show_mask_preview(dataset, base_model: str, max_seq_length: int) -> None:
    """One sample conversation as the model sees it, trained tokens highlighted."""
    sample = [c for c in (dataset.sample_data or []) if c.get("turns")]
    with st.expander("What the model is trained on (assistant-mask preview)",
                     icon=":material/visibility:"):
        if not sample:
            st.info("This dataset has no preview conversations.")
            return
        if not st.toggle("Show the preview", key="configure_preview_on",
                         help="Formats a sample conversation with the base model's chat "
                              "template: loads its tokenizer (a few seconds the first time)."):
            st.caption(f"Off: turn it on to see which tokens of a sample conversation "
                       f"{literal(base_model)} is trained on.")
            return
        ids = list(range(len(sample)))
        i = st.selectbox("Conversation", ids, key="configure_preview_conversation",
                         format_func=lambda k: str(sample[k].get("conversation_id") or k))
        turns = [{"role": t.get("role"), "content": t.get("content", "")}
                 for t in sample[i]["turns"]]
        try:
            out = mask_segments(base_model, int(max_seq_length), json.dumps(turns))
        except BrightRunError as exc:
            show_error(exc)
            return
        st.caption(f"Formatted with the chat template of {literal(base_model)}: "
                   f"{out['tokens']:,} tokens, **{out['trained']:,} trained** (highlighted: "
                   "assistant tokens, label ≠ −100); grey tokens are context only (label −100)."
                   + (" Truncated at the max sequence length." if out["truncated"] else ""))
        st.html(mask_html(out["segments"]))
