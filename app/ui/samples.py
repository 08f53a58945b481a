"""What the model answers: the evaluation samples of a job (greedy answers to 3 fixed held-out
prompts at step 0 — the base model — and at every evaluation) on the Monitor (a step slider), in
Compare runs (runs side by side) and on the model page (base vs adapter vs reference).

Data from ``backend/jobs/samples.py``; every text shown is the user's data, escaped with
``literal``."""
from __future__ import annotations

import streamlit as st

from app.ui.widgets import literal
from backend.jobs import samples as js

NO_TEXT = "(no text: only whitespace or special tokens)"
EMPTY = ("Answers to up to 3 held-out prompts appear here: the base model's before the first "
         "step, then the adapter's at every evaluation.")


def answer_markdown(text: str | None) -> str:
    """An answer as escaped markdown; an empty answer says so."""
    if text is None:
        return "—"
    return literal(text) if text.strip() else f"*{NO_TEXT}*"


def step_label(step: int) -> str:
    return "step 0 · base model" if step == 0 else f"step {step}"


def _cell(column, title: str, text: str | None, caption: str | None = None) -> None:
    with column.container(border=True):
        st.markdown(f"**{title}**")
        if caption:
            st.caption(caption)
        st.markdown(answer_markdown(text))


def _prompt_expander(prompt: str) -> None:
    with st.expander("Prompt as the model saw it (chat template)", icon=":material/code:"):
        st.code(prompt, language="text", wrap_lines=True)


def _rows(rows: list[dict], adapter_title: str) -> None:
    for row in rows:
        st.markdown(f"**Prompt {row['index'] + 1}** · {literal(row['question'])}")
        c = st.columns(3)
        _cell(c[0], "Base model", row["base"], "before training (step 0)")
        _cell(c[1], adapter_title, row["adapter"],
              None if row["step"] is None else step_label(row["step"]))
        _cell(c[2], "Reference", row["reference"], "the dataset's answer")
        _prompt_expander(row["prompt"])


def monitor_panel(actor, job) -> None:
    """Monitor: the answers at a chosen evaluation (default the latest) next to the base model's
    and the reference."""
    st.markdown("#### What the model answers")
    samples = js.job_samples(actor, job.id)
    steps = list(js.by_step(samples))
    if not steps:
        st.caption(EMPTY)
        return
    trained = [s for s in steps if s > 0]
    step = None
    if len(trained) > 1:
        step = st.select_slider("Evaluation", options=trained, value=trained[-1],
                                format_func=step_label, key=f"monitor_samples_step_{len(trained)}",
                                help="Greedy answers at each evaluation; the latest is shown "
                                     "first.")
    _rows(js.base_vs_adapter(samples, step), "Adapter")
    st.caption("Greedy decoding, at most 64 new tokens, the first held-out conversations of the "
               "dataset (prompt = the turns before its last answer).")


def model_panel(actor, m) -> None:
    """Model page: base model vs the trained adapter (the job's last evaluation) vs reference."""
    samples = js.job_samples(actor, m.job_id)
    if not samples:
        st.caption("No evaluation samples were recorded for this model's job (trained before they "
                   "existed, or without a validation split). Try the Playground tab.")
        return
    _rows(js.base_vs_adapter(samples), "This adapter")


def compare_panel(actor, picked: list, labels: dict[str, str]) -> None:
    """Compare runs: each run's latest answers side by side, prompt by prompt, with the
    reference. ``labels``: job id → run label."""
    runs = js.compare_samples(actor, [j.id for j in picked])
    rows = js.side_by_side({labels[job_id]: items for job_id, items in runs.items()})
    st.markdown("**What each run answers** (latest evaluation)")
    if not rows:
        st.caption("None of these jobs has recorded evaluation samples yet.")
        return
    names = [labels[j.id] for j in picked]
    for row in rows:
        st.markdown(f"**Prompt {row['index'] + 1}** · {literal(row['question'])}")
        if not row["same_prompt"]:
            st.caption("These runs were asked different prompts at this position (different "
                       "datasets or validation splits); each answers its own.")
        cols = st.columns(len(names) + 1)
        for col, name in zip(cols, names):
            got = row["answers"].get(name)
            _cell(col, literal(name), got[1] if got else None,
                  step_label(got[0]) if got else "no samples")
        _cell(cols[-1], "Reference", row["reference"])
