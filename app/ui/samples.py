"""What the model answers: the evaluation samples of a job (greedy answers to the held-out
conversations — all of them up to 64 by the base model at step 0 and at the last step, the first 3
at the evaluations between) on the Monitor (a step slider), in
Compare runs (runs side by side) and on the model page (base vs adapter vs reference).

Data from ``backend/jobs/samples.py``; every text shown is the user's data, escaped with
``literal``."""
from __future__ import annotations

import streamlit as st

from app.ui.widgets import literal
from backend.jobs import samples as js

NO_TEXT = "(no text: only whitespace or special tokens)"
EMPTY = ("Answers to the held-out conversations appear here: the base model's before the first "
         "step, then the adapter's at every evaluation (all of them, up to 64, at the end).")
SHOWN = 3  # prompts shown in full before the rest go in a table


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


def _fact_caption(row: dict, who: str) -> str | None:
    value = row.get(f"{who}_fact")
    return None if value is None else ("states the key fact" if value else "misses the key fact")


def summary(rows: list[dict]) -> None:
    """The scores in one line (``backend.jobs.samples.learning_line``: ROUGE-L base → adapter,
    answers closer to the reference, key facts stated) and the best and worst answers side by
    side."""
    line = js.learning_line(js.scores(rows))
    if not line:
        return
    st.markdown(f"**{line}**")
    best, worst = js.best_and_worst(rows)
    if not best:
        return
    cols = st.columns(2)
    for col, title, picked in ((cols[0], "Where the adapter gained most", best),
                               (cols[1], "Where it gained least", worst)):
        with col:
            st.markdown(f"*{title}*")
            for row in picked:
                with st.container(border=True):
                    st.markdown(f"**{literal(row['question'])}**")
                    st.caption(f"ROUGE-L {row['base_rouge_l']:.2f} → {row['adapter_rouge_l']:.2f}")
                    st.markdown(f"Base: {answer_markdown(row['base'])}")
                    st.markdown(f"Adapter: {answer_markdown(row['adapter'])}")
                    st.markdown(f"Reference: {answer_markdown(row['reference'])}")


def _table(rows: list[dict]) -> None:
    def fact(v):
        return "" if v is None else ("yes" if v else "no")

    st.dataframe([{"#": r["index"] + 1, "question": r["question"], "base": r["base"] or "",
                   "adapter": r["adapter"] or "", "reference": r["reference"],
                   "ROUGE-L base": r["base_rouge_l"], "ROUGE-L adapter": r["adapter_rouge_l"],
                   "key fact base": fact(r.get("base_fact")),
                   "key fact adapter": fact(r.get("adapter_fact"))} for r in rows],
                 hide_index=True, use_container_width=True)


def _rows(rows: list[dict], adapter_title: str) -> None:
    summary(rows)
    answered = [r for r in rows if r["adapter"] is not None] or rows
    if len(rows) > SHOWN:
        with st.expander(f"All {len(rows)} held-out answers", icon=":material/table:"):
            _table(rows)
    for row in answered[:SHOWN]:
        st.markdown(f"**Prompt {row['index'] + 1}** · {literal(row['question'])}")
        c = st.columns(3)
        _cell(c[0], "Base model", row["base"], " · ".join(
            x for x in ("before training (step 0)", _fact_caption(row, "base")) if x))
        _cell(c[1], adapter_title, row["adapter"], " · ".join(
            x for x in (None if row["step"] is None else step_label(row["step"]),
                        _fact_caption(row, "adapter")) if x) or None)
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
    st.caption("Greedy decoding, at most 64 new tokens, the held-out conversations of the "
               "dataset (prompt = the turns before its last answer); ROUGE-L and the key fact "
               "(the conversation's metadata.key_fact) are scored against the reference.")


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
