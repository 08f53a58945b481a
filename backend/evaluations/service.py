"""Evaluations: a trained adapter scored on any ready dataset, as a Ray job on the cluster
(``python -m ray_jobs.evaluate_model --evaluation-id ID``, submitted through the gateway like
training jobs and validations).

An evaluation records the mean assistant-token loss of the base model (adapter disabled) and of
the adapter over the dataset's conversations, and for each conversation up to ``max_answers`` the
greedy answers of both to the turns before its last assistant turn, with the reference, scored
as the training samples are (``backend/jobs/samples.py``: ``base_vs_adapter`` rows, ``scores``,
``learning_line``; ``backend/training/scoring.py``). Nothing is half-written: bad input (dataset
not ready, unknown model, adapter files gone, base model not here) is refused before a row
exists; the figures and answers are written in one transaction at the end. Statuses follow the
job machine (``queued → running → completed | failed | cancelled``); :func:`reconcile_evaluations`
fails an active evaluation whose Ray job is gone.
"""
from __future__ import annotations

import json
import logging

from sqlalchemy import select

from backend.cluster.ended import stop_quietly
from backend.core import states
from backend.core.access import check_owner, scope
from backend.core.config import get_settings
from backend.core.errors import BrightRunError, InvalidInput, NotFound
from backend.core.schemas import UserInfo
from backend.db.models import Dataset, Evaluation, ModelArtifact, utcnow
from backend.db.session import session_scope

log = logging.getLogger(__name__)
DEFAULT_MAX_ANSWERS = 64
MAX_ANSWERS_LIMIT = 1000
ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors")
ACTIVE = ("queued", "running")


# ----- what callers see ---------------------------------------------------------------------------
def _summary(row: Evaluation, model_name: str | None = None,
             dataset_name: str | None = None) -> dict:
    sc = row.scores or {}
    from backend.jobs.samples import learning_line

    return {"id": row.id, "model_id": row.model_id, "model_name": model_name,
            "dataset_id": row.dataset_id, "dataset_name": dataset_name, "status": row.status,
            "max_answers": row.max_answers, "external_job_id": row.external_job_id,
            "error_message": row.error_message, "base_loss": row.base_loss,
            "adapter_loss": row.adapter_loss, "conversations": row.conversations,
            "scores": sc or None, "line": learning_line(sc) if sc else None,
            "timings": row.timings, "answers_count": len(row.answers or []),
            "created_at": row.created_at.isoformat() if row.created_at else None,
            "started_at": row.started_at.isoformat() if row.started_at else None,
            "completed_at": row.completed_at.isoformat() if row.completed_at else None}


def _names(s, row: Evaluation) -> tuple[str | None, str | None]:
    m, d = s.get(ModelArtifact, row.model_id), s.get(Dataset, row.dataset_id)
    return (m.name if m else None), (d.name if d else None)


def _row(s, actor: UserInfo, evaluation_id: str) -> Evaluation:
    row = s.get(Evaluation, evaluation_id)
    check_owner(actor, row, "Evaluation", evaluation_id)
    return row


def rows_of(answers: list[dict] | None) -> list[dict]:
    """The stored raw answers as ``backend.jobs.samples.base_vs_adapter`` rows (base = step 0,
    adapter = step 1), each scored: ``base_rouge_l``, ``adapter_rouge_l``, ``*_exact_match``,
    ``*_fact``."""
    from backend.jobs.samples import SampleInfo, base_vs_adapter

    samples = []
    for a in answers or []:
        for step, who in ((0, "base"), (1, "adapter")):
            samples.append(SampleInfo(step=step, index=int(a["index"]), question=a["question"],
                                      prompt=a.get("prompt") or "", reference=a["reference"],
                                      answer=a[who], key_fact=list(a.get("key_fact") or [])))
    return base_vs_adapter(samples)


def get_evaluation(actor: UserInfo, evaluation_id: str, *, rows: bool = False) -> dict:
    """One evaluation's summary (``rows=True``: with its scored ``rows``). Raises NotFound."""
    with session_scope() as s:
        row = _row(s, actor, evaluation_id)
        out = _summary(row, *_names(s, row))
        if rows:
            out["rows"] = rows_of(row.answers)
        return out


def list_evaluations(actor: UserInfo, *, model_id: str | None = None,
                     dataset_id: str | None = None, status: str | None = None) -> list[dict]:
    """The actor's evaluations (admins: all), newest first, of one model and/or one dataset."""
    stmt = scope(select(Evaluation), Evaluation, actor)
    if model_id:
        stmt = stmt.where(Evaluation.model_id == model_id)
    if dataset_id:
        stmt = stmt.where(Evaluation.dataset_id == dataset_id)
    if status:
        stmt = stmt.where(Evaluation.status == status)
    with session_scope() as s:
        return [_summary(r, *_names(s, r)) for r in
                s.scalars(stmt.order_by(Evaluation.created_at.desc(), Evaluation.id))]


def compare_on_dataset(actor: UserInfo, dataset_id: str) -> list[dict]:
    """The completed evaluations of one dataset, one per model (its latest), best adapter loss
    first: what compares models on the same test set. Raises NotFound (dataset)."""
    with session_scope() as s:
        check_owner(actor, s.get(Dataset, dataset_id), "Dataset", dataset_id)
    latest: dict[str, dict] = {}
    for ev in list_evaluations(actor, dataset_id=dataset_id, status="completed"):
        latest.setdefault(ev["model_id"], ev)
    return sorted(latest.values(), key=lambda e: (e["adapter_loss"] is None,
                                                  e["adapter_loss"] or 0.0))


def evaluation_jsonl(actor: UserInfo, evaluation_id: str) -> str:
    """The evaluation as JSONL: one line per answered conversation (the scored row plus the
    evaluation and model ids), then nothing else. Raises NotFound."""
    ev = get_evaluation(actor, evaluation_id, rows=True)
    lines = [json.dumps({"evaluation_id": ev["id"], "model_id": ev["model_id"],
                         "dataset_id": ev["dataset_id"], **{k: v for k, v in r.items()
                                                            if k != "step"}},
                        ensure_ascii=False) for r in ev["rows"]]
    return "".join(line + "\n" for line in lines)


# ----- create / cancel ----------------------------------------------------------------------------
def check_inputs(actor: UserInfo, model_id: str, dataset_id: str) -> None:
    """Refuse what cannot be evaluated, before anything is stored. Raises NotFound (model or
    dataset unknown, deleted, someone else's), InvalidInput (dataset not ready, a preference
    dataset, adapter files gone from the object store, base model not on this machine)."""
    from backend.base_models.registry import resolve_base_model
    from backend.storage import get_object_store

    with session_scope() as s:
        model = s.get(ModelArtifact, model_id)
        check_owner(actor, model, "Model", model_id)
        ds = s.get(Dataset, dataset_id)
        check_owner(actor, ds, "Dataset", dataset_id)
        prefix = (model.artifacts or {}).get("prefix") or f"models/{model.id}/"
        base_model, status, fmt = model.base_model, ds.status, ds.format
        ds_name, why = ds.name, (ds.error_message or "").splitlines()[0:1]
    if status != "ready":
        raise InvalidInput(f"dataset “{ds_name}” is {status}, not ready"
                           + (f" ({why[0]})" if why else "") + "; fix it and validate it again",
                           code="dataset_not_ready")
    if fmt == "preference":
        raise InvalidInput(f"dataset “{ds_name}” holds preference pairs; evaluate on a dataset of "
                           "conversations with reference answers", code="dataset_not_evaluable")
    store = get_object_store()
    names = {k[len(prefix):] for k in store.list(prefix)}
    missing = [f for f in ADAPTER_FILES if f not in names]
    if missing:
        raise InvalidInput(f"model {model_id}'s adapter files are gone from the object store "
                           f"({', '.join(missing)} missing under {prefix}); it cannot be "
                           "evaluated", code="adapter_unloadable")
    resolve_base_model(base_model, get_settings().home)


def create_evaluation(actor: UserInfo, model_id: str, dataset_id: str, *,
                      max_answers: int = DEFAULT_MAX_ANSWERS, submit: bool = True) -> dict:
    """Check the inputs (:func:`check_inputs`), store a queued evaluation and submit its Ray job.
    A failed submission leaves the evaluation failed with the reason. Raises NotFound,
    InvalidInput (also ``max_answers`` outside 0..MAX_ANSWERS_LIMIT)."""
    if not 0 <= int(max_answers) <= MAX_ANSWERS_LIMIT:
        raise InvalidInput(f"--max-answers must be between 0 and {MAX_ANSWERS_LIMIT}, "
                           f"got {max_answers}", code="invalid_max_answers")
    check_inputs(actor, model_id, dataset_id)
    with session_scope() as s:
        row = Evaluation(user_id=actor.id, model_id=model_id, dataset_id=dataset_id,
                         status="queued", max_answers=int(max_answers))
        s.add(row)
        s.flush()
        evaluation_id = row.id
    if submit:
        submit_evaluation(evaluation_id)
    return get_evaluation(actor, evaluation_id)


def submit_evaluation(evaluation_id: str) -> str | None:
    """Submit the Ray job of a queued evaluation; a failed submission marks it failed."""
    from backend.cluster.gateway import get_gateway

    try:
        sub = get_gateway().submit("ray_jobs.evaluate_model", ["--evaluation-id", evaluation_id],
                                   kind="evaluate", object_id=evaluation_id,
                                   entrypoint_num_cpus=1)
    except BrightRunError as exc:
        fail_evaluation(evaluation_id, f"could not submit the evaluation to Ray: {exc}")
        return None
    with session_scope() as s:
        s.get(Evaluation, evaluation_id).external_job_id = sub
    return sub


def cancel_evaluation(actor: UserInfo, evaluation_id: str) -> dict:
    """Stop the evaluation's Ray job and mark it cancelled (its answers are not kept). Raises
    NotFound, InvalidTransition (already ended)."""

    with session_scope() as s:
        row = _row(s, actor, evaluation_id)
        states.check("job", row.status, "cancelled")
        row.status, row.completed_at = "cancelled", utcnow()
        row.error_message = f"cancelled by {actor.email}"
        sub = row.external_job_id
    stop_quietly(sub)
    return get_evaluation(actor, evaluation_id)


# ----- the Ray job's side -------------------------------------------------------------------------
def evaluation_inputs(evaluation_id: str) -> dict:
    """What the evaluation job needs: base model, max sequence length (the model's training
    setting), the dataset's object key and format, the adapter's prefix in the object store,
    ``max_answers``, ``batch_size`` and ``home``. Raises NotFound."""
    with session_scope() as s:
        row = s.get(Evaluation, evaluation_id)
        if row is None:
            raise NotFound(f"evaluation {evaluation_id} not found", code="evaluation_not_found")
        model, ds = s.get(ModelArtifact, row.model_id), s.get(Dataset, row.dataset_id)
        hyper = dict((model.configuration or {}).get("hyperparameters") or {})
        return {"evaluation_id": row.id, "base_model": model.base_model,
                "max_seq_length": int(hyper.get("max_seq_length") or 2048),
                "batch_size": max(1, min(8, int(hyper.get("batch_size") or 4))),
                "dataset_key": ds.storage_path, "dataset_format": ds.format,
                "adapter_prefix": (model.artifacts or {}).get("prefix") or f"models/{model.id}/",
                "max_answers": row.max_answers, "home": str(get_settings().home)}


def start_evaluation(evaluation_id: str) -> bool:
    """queued → running; False when it is no longer queued (cancelled meanwhile)."""
    with session_scope() as s:
        row = s.get(Evaluation, evaluation_id)
        if row is None or row.status != "queued":
            return False
        row.status, row.started_at = "running", utcnow()
        return True


def complete_evaluation(evaluation_id: str, *, base_loss: float | None,
                        adapter_loss: float | None, conversations: int, answers: list[dict],
                        timings: dict | None = None) -> bool:
    """Store the figures and answers in one transaction and mark the evaluation completed.
    ``answers``: ``{index, question, prompt, reference, key_fact, base, adapter}`` per prompt;
    the scores are computed here (:func:`rows_of`, ``backend.jobs.samples.scores``). False (and
    nothing written) when the evaluation is no longer running (cancelled)."""
    from backend.jobs.samples import scores

    sc = scores(rows_of(answers)) if answers else {}
    with session_scope() as s:
        row = s.get(Evaluation, evaluation_id)
        if row is None or row.status != "running":
            return False
        row.base_loss, row.adapter_loss, row.conversations = base_loss, adapter_loss, conversations
        row.answers, row.scores, row.timings = list(answers), sc, timings
        row.status, row.completed_at, row.error_message = "completed", utcnow(), None
        return True


def fail_evaluation(evaluation_id: str, message: str) -> bool:
    """An active evaluation → failed with ``message``; False when it had already ended."""
    with session_scope() as s:
        row = s.get(Evaluation, evaluation_id)
        if row is None or row.status not in ACTIVE:
            return False
        row.status, row.completed_at = "failed", utcnow()
        row.error_message = message[:10000]
        row.answers, row.scores = None, None
        return True


def reconcile_evaluations() -> int:
    """Active evaluations whose Ray job is not running them become failed with the reason (the
    Ray job failed, was stopped, vanished, or ended without reporting; or it was never
    submitted). Returns how many changed."""
    from backend.cluster.ended import ended_info, ended_reason, never_submitted

    with session_scope() as s:
        active = [(r.id, r.external_job_id, r.updated_at, r.created_at) for r in s.scalars(
            select(Evaluation).where(Evaluation.status.in_(ACTIVE)))]
    changed = 0
    for evaluation_id, sub, updated, created in active:
        if sub is None:
            if never_submitted(created):
                changed += fail_evaluation(evaluation_id, "the evaluation was never submitted "
                                                          "to Ray; start it again")
            continue
        info = ended_info(sub, updated)
        if info is not None:
            changed += fail_evaluation(evaluation_id, ended_reason(sub, info))
    return changed
