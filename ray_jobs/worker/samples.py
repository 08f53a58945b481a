"""Evaluation samples: greedy answers to a fixed set of validation prompts, generated at every
evaluation so that a run's learning can be read, not only charted.

The prompts are the first ``count`` (:data:`PROMPT_CAP` at most) held-out conversations (in file order) that have an assistant
turn: a prompt is the conversation's turns up to its **last** assistant turn, rendered with the
base model's chat template and its generation prompt; the reference is that assistant turn's
content. Answers are greedy (no sampling), at most :data:`MAX_NEW_TOKENS` new tokens, from the PEFT
model with the adapter on, or off (``model.disable_adapter()``) for the base model's answers.

:func:`choose_prompts`, :func:`within_budget` and :func:`sink_items` are pure; :func:`render` needs only a tokenizer;
:func:`generate` runs the model. Used by ``ray_jobs/worker/evaluation.py``.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any, Iterable

MAX_NEW_TOKENS = 64
PROMPT_COUNT = 3  # prompts answered at evaluations between the first and the last
PROMPT_CAP = 64  # held-out conversations answered (and scored) by the base model and at the end


@dataclass(frozen=True)
class SamplePrompt:
    """One fixed validation prompt: ``turns`` up to (not including) the reference answer."""

    index: int
    turns: list[dict[str, str]]
    question: str  # the last user turn before the reference (what pages show)
    reference: str
    text: str = ""  # ``turns`` rendered with the chat template and generation prompt
    key_fact: tuple[str, ...] = ()  # the conversation's metadata.key_fact (scoring.key_facts)


def choose_prompts(conversations: Iterable[Any], count: int = PROMPT_CAP) -> list[SamplePrompt]:
    """The first ``count`` conversations (objects with ``.turns`` and optionally ``.metadata``, or
    turn lists) whose last assistant turn follows at least one user turn, as prompts (not rendered
    yet), with the conversation's key fact(s). Raises nothing."""
    from backend.training.scoring import key_facts

    out: list[SamplePrompt] = []
    for conv in conversations:
        if len(out) >= count:
            break
        turns = list(conv.turns if hasattr(conv, "turns") else conv)
        last = max((i for i, t in enumerate(turns) if t.get("role") == "assistant"), default=None)
        if last is None:
            continue
        users = [t for t in turns[:last] if t.get("role") == "user"]
        if not users:
            continue
        out.append(SamplePrompt(index=len(out), turns=[dict(t) for t in turns[:last]],
                                question=str(users[-1].get("content") or ""),
                                reference=str(turns[last].get("content") or ""),
                                key_fact=tuple(key_facts(getattr(conv, "metadata", None)))))
    return out


def render(tokenizer, prompts: list[SamplePrompt]) -> list[SamplePrompt]:
    """Each prompt with ``text`` = its turns through the tokenizer's chat template plus the
    generation prompt (the fallback template when the model has none)."""
    from backend.training.data import ensure_chat_template

    ensure_chat_template(tokenizer)
    return [SamplePrompt(p.index, p.turns, p.question, p.reference,
                         tokenizer.apply_chat_template(p.turns, tokenize=False,
                                                       add_generation_prompt=True), p.key_fact)
            for p in prompts]


def generate(model, tokenizer, prompts: list[SamplePrompt], *, adapter: bool = True,
             max_new_tokens: int = MAX_NEW_TOKENS, max_prompt_tokens: int | None = None
             ) -> list[str]:
    """Greedy answers to rendered ``prompts`` in one left-padded batch, from the PEFT ``model``
    with its adapter (``adapter=False``: disabled, the base model). Prompts longer than
    ``max_prompt_tokens`` keep their last tokens. The model is put in eval mode and back."""
    import torch

    if not prompts:
        return []
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None \
        else tokenizer.eos_token_id
    rows = [tokenizer(p.text, add_special_tokens=False)["input_ids"] for p in prompts]
    if max_prompt_tokens:
        rows = [r[-max_prompt_tokens:] for r in rows]
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, width - len(r):] = torch.tensor(r, dtype=torch.long)
        mask[i, width - len(r):] = 1
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        ctx = contextlib.nullcontext() if adapter else model.disable_adapter()
        with torch.inference_mode(), ctx:
            out = model.generate(input_ids=ids.to(device), attention_mask=mask.to(device),
                                 max_new_tokens=max_new_tokens, do_sample=False,
                                 pad_token_id=pad, eos_token_id=tokenizer.eos_token_id)
    finally:
        model.train(was_training)
    return [tokenizer.decode(row[width:], skip_special_tokens=True).strip() for row in out]


def within_budget(spent_s: float, last_s: float, elapsed_s: float, budget: float | None
                  ) -> bool:
    """Whether one more set of samples (costing about ``last_s``, the previous set's time) keeps
    the samples' time within ``budget`` × the run's time; ``budget`` None or ≥ 1: always."""
    if budget is None or budget >= 1:
        return True
    return spent_s + last_s <= budget * (elapsed_s + last_s)


def sink_items(prompts: list[SamplePrompt], answers: list[str]) -> list[dict[str, Any]]:
    """What ``ProgressSink.samples`` receives: ``{index, question, prompt, reference, answer}``
    and ``key_fact`` (a list) where the conversation names one."""
    return [{"index": p.index, "question": p.question, "prompt": p.text,
             "reference": p.reference, "answer": a,
             **({"key_fact": list(p.key_fact)} if p.key_fact else {})}
            for p, a in zip(prompts, answers)]
