"""Evaluation samples of training jobs: the greedy answers to a job's fixed validation prompts
stored at each evaluation (step 0: the base model's answers), read with access checks, and the pure
arrangements the pages show (answers by step, base vs adapter vs reference, runs side by side).

Written by the training job through its progress sink (``backend/jobs/progress.add_samples``).
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select

from backend.core.access import check_owner
from backend.core.errors import InvalidInput
from backend.core.schemas import UserInfo
from backend.db.models import EvalSample, TrainingJob
from backend.db.session import session_scope
from backend.training.scoring import score_answer, score_answers

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


def job_samples(actor: UserInfo, job_id: str) -> list[SampleInfo]:
    """Every evaluation sample of a job, by step then prompt index. Raises NotFound (unknown job
    or someone else's)."""
    with session_scope() as s:
        check_owner(actor, s.get(TrainingJob, job_id), "Job", job_id)
        rows = s.scalars(select(EvalSample).where(EvalSample.job_id == job_id)
                         .order_by(EvalSample.step, EvalSample.prompt_index)).all()
        return [_info(r) for r in rows]


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
                      created_at=row.created_at)


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
    ``adapter_rouge_l``, ``adapter_exact_match`` (None where there is no answer)."""
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
                     "reference": first.reference,
                     "base": base[index].answer if index in base else None,
                     "adapter": at[index].answer if index in at else None, "step": step})
        for who in ("base", "adapter"):
            sc = score_answer(rows[-1][who], first.reference) if rows[-1][who] is not None \
                else {"rouge_l": None, "exact_match": None}
            rows[-1][f"{who}_rouge_l"], rows[-1][f"{who}_exact_match"] = \
                sc["rouge_l"], sc["exact_match"]
    return rows


def scores(rows: list[dict]) -> dict:
    """Mean scores of :func:`base_vs_adapter` rows: ``{"base": {...}, "adapter": {...}}``, each
    ``{rouge_l, exact_match, count}`` (``backend.training.scoring.score_answers``)."""
    return {who: score_answers((r[who], r["reference"]) for r in rows)
            for who in ("base", "adapter")}


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
