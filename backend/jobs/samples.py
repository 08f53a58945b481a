"""Evaluation samples of training jobs: the greedy answers to a job's fixed validation prompts
stored at each evaluation (step 0: the base model's answers), read with access checks, and the pure
arrangements the pages show (answers by step, base vs adapter vs reference, runs side by side).

Written by the training job through its progress sink (``backend/jobs/progress.add_samples``).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import select

from backend.core.access import check_owner
from backend.core.errors import InvalidInput
from backend.core.schemas import UserInfo
from backend.db.models import EvalSample, TrainingJob
from backend.db.session import session_scope
from backend.training.scoring import contains_fact, score_answer, score_answers

MAX_COMPARED = 8


@dataclass(frozen=True)
class SampleInfo:
    """One stored answer: ``step`` 0 is the base model (before training)."""

    step: int
    index: int
    question: str
    prompt: str
    reference: str
    answer: str
    created_at: datetime | None = None
    key_fact: list[str] = field(default_factory=list)  # the reference's key fact(s), if named


def job_samples(actor: UserInfo, job_id: str) -> list[SampleInfo]:
    """Every evaluation sample of a job, by step then prompt index. Raises NotFound (unknown job
    or someone else's)."""
    with session_scope() as s:
        check_owner(actor, s.get(TrainingJob, job_id), "Job", job_id)
        rows = s.scalars(select(EvalSample).where(EvalSample.job_id == job_id)
                         .order_by(EvalSample.step, EvalSample.prompt_index)).all()
        return [_info(r) for r in rows]


def recorded_scores(session, job_id: str) -> dict:
    """:func:`scores` of a job's recorded samples (base vs its last step), read in ``session``
    without an access check: what the job's completion keeps in the model's quality metrics."""
    rows = session.scalars(select(EvalSample).where(EvalSample.job_id == job_id)).all()
    return scores(base_vs_adapter([_info(r) for r in rows]))


def compare_samples(actor: UserInfo, job_ids: list[str]) -> dict[str, list[SampleInfo]]:
    """The latest evaluation's samples of each job (access checked for every job), keyed by job id
    in the order given. Raises NotFound, InvalidInput (more than ``MAX_COMPARED`` jobs)."""
    if len(job_ids) > MAX_COMPARED:
        raise InvalidInput(f"compare at most {MAX_COMPARED} runs at once")
    out = {}
    for job_id in job_ids:
        steps = by_step(job_samples(actor, job_id))
        out[job_id] = steps[max(steps)] if steps else []
    return out


def _info(row: EvalSample) -> SampleInfo:
    return SampleInfo(step=row.step, index=row.prompt_index, question=row.question,
                      prompt=row.prompt, reference=row.reference, answer=row.answer,
                      created_at=row.created_at, key_fact=_facts(row.key_fact))


def _facts(text: str | None) -> list[str]:
    try:
        value = json.loads(text) if text else []
    except ValueError:
        return []
    return [str(v) for v in value] if isinstance(value, list) else []


# ----- pure arrangements -------------------------------------------------------------------------
def by_step(samples: list[SampleInfo]) -> dict[int, list[SampleInfo]]:
    """Samples grouped by step (ascending), each step's by prompt index."""
    out: dict[int, list[SampleInfo]] = {}
    for sample in sorted(samples, key=lambda x: (x.step, x.index)):
        out.setdefault(sample.step, []).append(sample)
    return out


def base_vs_adapter(samples: list[SampleInfo], step: int | None = None) -> list[dict]:
    """One row per prompt: ``index, question, reference, base`` (the step-0 answer, None when the
    base was not sampled), ``adapter`` (the answer at ``step``, default the latest step after 0;
    None when there is none yet), ``step``, and the answers' scores against the reference
    (``backend/training/scoring.py``): ``base_rouge_l``, ``base_exact_match``,
    ``adapter_rouge_l``, ``adapter_exact_match`` (None where there is no answer), and where the
    conversation names a key fact (``key_fact``) ``base_fact`` / ``adapter_fact``: whether the
    answer states it (``scoring.contains_fact``; None without a key fact or an answer)."""
    steps = by_step(samples)
    trained = [s for s in steps if s > 0]
    if step is None:
        step = max(trained) if trained else None
    base = {x.index: x for x in steps.get(0, [])}
    at = {x.index: x for x in steps.get(step, [])} if step is not None else {}
    rows = []
    for index in sorted(set(base) | set(at)):
        first = at.get(index) or base[index]
        rows.append({"index": index, "question": first.question, "prompt": first.prompt,
                     "reference": first.reference, "key_fact": first.key_fact,
                     "base": base[index].answer if index in base else None,
                     "adapter": at[index].answer if index in at else None, "step": step})
        for who in ("base", "adapter"):
            sc = score_answer(rows[-1][who], first.reference) if rows[-1][who] is not None \
                else {"rouge_l": None, "exact_match": None}
            rows[-1][f"{who}_rouge_l"], rows[-1][f"{who}_exact_match"] = \
                sc["rouge_l"], sc["exact_match"]
            rows[-1][f"{who}_fact"] = contains_fact(rows[-1][who], first.key_fact) \
                if rows[-1][who] is not None else None
    return rows


def scores(rows: list[dict]) -> dict:
    """Mean scores of :func:`base_vs_adapter` rows: ``{"base": {...}, "adapter": {...},
    "compared": n, "closer": m}``; each side ``{rouge_l, exact_match, count, facts, facts_total}``
    (``backend.training.scoring.score_answers``; ``facts`` of ``facts_total`` answers with a key
    fact state it). ``closer``: of the ``compared`` prompts both answered, how many the adapter's
    answer is closer to the reference than the base model's (higher ROUGE-L)."""
    out: dict = {}
    for who in ("base", "adapter"):
        out[who] = score_answers((r[who], r["reference"]) for r in rows)
        judged = [r[f"{who}_fact"] for r in rows if r.get(f"{who}_fact") is not None]
        out[who]["facts"], out[who]["facts_total"] = sum(judged), len(judged)
    both = [r for r in rows if r["base"] is not None and r["adapter"] is not None]
    out["compared"] = len(both)
    out["closer"] = sum(r["adapter_rouge_l"] > r["base_rouge_l"] for r in both)
    return out


def learning_line(sc: dict) -> str | None:
    """The scores in one line, as the Monitor, the model page and the CLI say them: "ROUGE-L 0.18
    → 0.61 · 23 of 40 answers closer to the reference · key fact 1 → 9 of 12"; None before the
    adapter has answered."""
    b, a = sc.get("base") or {}, sc.get("adapter") or {}
    if not a.get("count"):
        return None
    parts = []
    if b.get("rouge_l") is not None:
        parts.append(f"ROUGE-L {b['rouge_l']:.2f} → {a['rouge_l']:.2f}")
    else:
        parts.append(f"ROUGE-L {a['rouge_l']:.2f}")
    if sc.get("compared"):
        parts.append(f"{sc['closer']} of {sc['compared']} answers closer to the reference")
    if a.get("facts_total"):
        before = f"{b['facts']} → " if b.get("facts_total") else ""
        parts.append(f"key fact {before}{a['facts']} of {a['facts_total']}")
    return " · ".join(parts)


def best_and_worst(rows: list[dict], n: int = 2) -> tuple[list[dict], list[dict]]:
    """The ``n`` rows where the adapter gained most over the base model (ROUGE-L) and the ``n``
    where it gained least (or lost), among rows both answered; the two lists never share a row."""
    both = [r for r in rows if r["base"] is not None and r["adapter"] is not None]
    ranked = sorted(both, key=lambda r: (r["adapter_rouge_l"] - r["base_rouge_l"], -r["index"]),
                    reverse=True)
    best = ranked[:n]
    worst = [r for r in reversed(ranked) if r not in best][:n]
    return best, worst


def side_by_side(runs: dict[str, list[SampleInfo]]) -> list[dict]:
    """Several runs' latest samples aligned by prompt index: one row per index with ``question``
    and ``reference`` (of the first run that has the prompt) and ``answers`` {run: (step, answer)}.
    Runs on different datasets may have different prompts at an index: ``same_prompt`` says
    whether every run that has the index asked the same question."""
    rows: dict[int, dict] = {}
    for run, samples in runs.items():
        for x in samples:
            row = rows.setdefault(x.index, {"index": x.index, "question": x.question,
                                            "reference": x.reference, "answers": {},
                                            "same_prompt": True})
            row["answers"][run] = (x.step, x.answer)
            row["same_prompt"] = row["same_prompt"] and x.question == row["question"]
    return [rows[i] for i in sorted(rows)]
