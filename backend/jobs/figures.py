"""One definition per figure of a training job, used by every page, the CLI and the adapter README.

Monitor, Jobs, Models, Costs, Home, ``brightrun jobs show --json`` and the adapter's README show a
job's steps, tokens, held-out conversations, durations, throughput, losses, cost and hours; each of
those values comes from :func:`job_figures` (pure, from the job, its model's summary and quality
metrics and its latest metric point), so two places can never disagree. The definitions:

- **steps**: ``steps_done`` (optimizer steps run) of ``steps_planned`` (the trainer's plan,
  ``backend/training/plan.py``);
- **tokens**: ``tokens_processed`` — templated tokens (the base model's chat template) that went
  through the model in training, padding excluded; the plan's ``tokens_to_train`` is the same
  quantity planned;
- **held out**: ``validation_conversations`` of the trainer's exact split;
- **durations**: ``training_seconds`` — wall time from the first training step to the end of
  training (evaluation included, loading and saving not; while running: to the latest metric
  point); ``total_seconds`` — from the job's start
  to its end (or now), start-up, loading and saving included;
- **throughput**: ``tokens_processed / training_seconds`` (all workers together);
- **losses**: ``training_loss`` — the latest step's loss while running; ``final_training_loss`` —
  the mean over the last epoch once finished; ``final_validation_loss`` and
  ``best_validation_loss`` from the evaluations;
- **cost**: once ended, the final cost — compute plus the adapter's first month of storage, which
  is the cost ledger's sum for the job (the Costs page) — else the compute accrued so far;
- **hours**: ``total_seconds × workers / 3600``, called GPU-hours on GPU hardware and
  worker-hours on CPU hardware (``hours_label``).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from typing import Any

from backend.costs import money_text

# The plan's names, shared by `jobs estimate --json` and `jobs show --json` (plan and actual).
PLAN_FIELDS = ("total_steps", "steps_per_epoch", "tokens_to_train", "trained_tokens_to_train",
               "train_conversations", "validation_conversations", "truncated", "left_out",
               "trained_tokens_cut", "evaluations", "eval_tokens", "checkpoints")


@dataclass(frozen=True)
class JobFigures:
    """A job's figures (see the module docstring for each definition); None: not known yet."""

    status: str
    steps_done: int
    steps_planned: int | None
    epochs_done: int
    epochs_planned: int
    tokens_processed: int | None
    validation_conversations: int | None
    train_conversations: int | None
    training_seconds: float | None
    total_seconds: float | None
    throughput: float | None
    training_loss: float | None
    final_training_loss: float | None
    final_validation_loss: float | None
    best_validation_loss: float | None
    best_epoch: int | None
    convergence: str | None
    cost: float
    estimated_cost: float
    workers: int
    hardware: str
    is_gpu: bool
    hours: float | None
    hours_label: str
    plan: dict[str, Any]
    actual: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _aware(when: datetime | None) -> datetime | None:
    if when is None:
        return None
    return when if when.tzinfo else when.replace(tzinfo=timezone.utc)


def durations(summary: dict | None, started: datetime | None, completed: datetime | None,
              now: datetime | None = None) -> tuple[float | None, float | None]:
    """(training_seconds, total_seconds) of a job: the trainer's training wall time from its
    summary (a run without one: its recorded duration), and start → end (or ``now``). Raises
    nothing."""
    summary = summary or {}
    training = summary.get("training_seconds") or summary.get("duration_seconds")
    started = _aware(started)
    end = _aware(completed) or now
    total = (end - started).total_seconds() if started and end else None
    if total is not None and training is not None:
        total = max(total, float(training))
    return (float(training) if training is not None else None), total


def job_cost(job: Any) -> float:
    """The job's cost: final once ended, else accrued so far (dollars)."""
    return float(job.final_cost if job.final_cost is not None else job.current_cost or 0.0)


def total_seconds(job: Any, now: datetime | None = None) -> float | None:
    """Seconds from the job's start to its end (or ``now``); None before it started."""
    return durations(None, job.started_at, job.completed_at,
                     now or datetime.now(timezone.utc))[1]


def is_gpu_hardware(hardware_id: str | None) -> bool:
    """Whether the catalog entry is a GPU (unknown ids: not ``cpu…``). Raises nothing."""
    from backend.training.catalogs import get_hardware

    try:
        return get_hardware(hardware_id or "").kind == "gpu"
    except Exception:  # noqa: BLE001 - an unknown or removed catalog entry
        return not (hardware_id or "").startswith("cpu")


def job_figures(job: Any, summary: dict | None = None, quality: dict | None = None,
                latest: Any = None, first: Any = None, trainer_plan: dict | None = None,
                now: datetime | None = None) -> JobFigures:
    """The figures of ``job`` (a JobInfo) from its model's ``summary`` and ``quality`` metrics
    (finished jobs), its ``latest`` and ``first`` metric points (MetricsPointInfo, while running)
    and ``trainer_plan`` (the plan the trainer logged, while running). Raises nothing."""
    summary, quality = summary or {}, quality or {}
    gpu = job.gpu_config or {}
    hardware = gpu.get("gpu_type") or "—"
    workers = int(gpu.get("num_workers") or 1)
    is_gpu = is_gpu_hardware(gpu.get("gpu_type"))
    now = now or datetime.now(timezone.utc)
    finished = job.completed_at is not None
    training_s, total_s = durations(summary, job.started_at, job.completed_at,
                                    None if finished else now)
    tokens = summary.get("total_tokens_processed")
    if tokens is None and latest is not None:
        tokens = latest.tokens_processed
    if training_s is None and first is not None and latest is not None and not finished:
        # as of the latest point: its time since the first point, plus the first step's own time
        step_s = (first.tokens_processed / first.throughput
                  if first.tokens_processed and first.throughput else 0.0)
        training_s = max(0.0, (_aware(latest.timestamp) - _aware(first.timestamp))
                         .total_seconds() + step_s)
    throughput = tokens / training_s if tokens and training_s else None
    current = job.current_metrics or {}
    latest_loss = current.get("training_loss")
    if latest_loss is None and latest is not None:
        latest_loss = latest.training_loss
    ran = summary.get("plan") or trainer_plan or {}
    plan = {k: (job.estimate or {}).get(k) for k in PLAN_FIELDS}
    actual = {k: ran.get(k) for k in PLAN_FIELDS}
    actual["total_steps"] = (summary.get("total_steps") or job.total_steps) if finished \
        else job.total_steps
    actual["steps_done"] = job.current_step
    actual["tokens_to_train"] = tokens if finished else ran.get("tokens_to_train")
    actual["tokens_processed"] = tokens
    hours = total_s * workers / 3600.0 if total_s is not None else None
    return JobFigures(
        status=job.status, steps_done=job.current_step, steps_planned=job.total_steps,
        epochs_done=job.current_epoch, epochs_planned=job.total_epochs,
        tokens_processed=tokens, validation_conversations=ran.get("validation_conversations"),
        train_conversations=ran.get("train_conversations"), training_seconds=training_s,
        total_seconds=total_s, throughput=throughput, training_loss=latest_loss,
        final_training_loss=quality.get("final_training_loss"),
        final_validation_loss=quality.get("final_validation_loss",
                                          current.get("validation_loss")),
        best_validation_loss=quality.get("best_validation_loss"),
        best_epoch=quality.get("best_epoch"), convergence=quality.get("convergence_quality"),
        cost=job_cost(job),
        estimated_cost=float(job.estimated_total_cost or 0.0), workers=workers,
        hardware=hardware, is_gpu=is_gpu, hours=hours,
        hours_label="GPU-hours" if is_gpu else "worker-hours", plan=plan, actual=actual)


# ----- the service: one job's figures from the database ------------------------------------------
def get_figures(actor: Any, job_id: str, now: datetime | None = None) -> JobFigures:
    """The figures of one job the actor may see. Raises NotFound."""
    return _load(job_id, actor, now)


def _load(job_id: str, actor: Any = None, now: datetime | None = None) -> JobFigures:
    """The figures of a job; with ``actor``, only a job the actor may see (None: service-internal,
    the Ray job writing its own adapter's README). Raises NotFound."""
    from sqlalchemy import select

    from backend.core.access import check_owner
    from backend.core.errors import NotFound
    from backend.db.models import JobLog, MetricsPoint, ModelArtifact, TrainingJob
    from backend.db.session import session_scope

    with session_scope() as s:
        row = s.get(TrainingJob, job_id)
        if actor is not None:
            check_owner(actor, row, "Job", job_id)
        elif row is None:
            raise NotFound(f"Job {job_id} not found", code="job_not_found")
        artifact = s.get(ModelArtifact, row.artifact_id) if row.artifact_id else None
        summary = dict(artifact.training_summary or {}) if artifact else {}
        quality = dict(artifact.quality_metrics or {}) if artifact else {}
        points = select(MetricsPoint).where(MetricsPoint.job_id == job_id)
        first = s.scalars(points.order_by(MetricsPoint.step).limit(1)).first()
        latest = s.scalars(points.order_by(MetricsPoint.step.desc()).limit(1)).first()
        trainer_plan = None
        if not summary.get("plan"):
            for meta in s.scalars(select(JobLog.metadata_).where(
                    JobLog.job_id == job_id, JobLog.level == "INFO")
                    .order_by(JobLog.timestamp).limit(50)):
                if isinstance(meta, dict) and "validation_conversations" in meta:
                    trainer_plan = meta
        return job_figures(row, summary, quality, latest, first, trainer_plan, now)


def adapter_readme(fig: JobFigures, name: str, base_model: str) -> str:
    """The adapter's README.md (markdown): what it is and the job's figures, as every page shows
    them. Raises nothing."""
    def num(value, fmt="{:,}"):
        return "—" if value is None else fmt.format(value)

    from backend.training.quality import rating_text

    return "\n".join([
        f"# {name}", "",
        f"A LoRA adapter for `{base_model}`, trained with BrightRun LoRA Studio.", "",
        "| figure | value |", "|---|---|",
        f"| optimizer steps | {num(fig.steps_done)} of {num(fig.steps_planned)} planned |",
        f"| epochs | {num(fig.epochs_planned)} |",
        f"| conversations trained on / held out | {num(fig.train_conversations)} / "
        f"{num(fig.validation_conversations)} |",
        f"| tokens processed (chat template applied) | {num(fig.tokens_processed)} |",
        f"| training time (first step to end) | {num(fig.training_seconds, '{:,.1f} s')} |",
        f"| total time (start-up and saving included) | {num(fig.total_seconds, '{:,.1f} s')} |",
        f"| average throughput | {num(fig.throughput, '{:,.0f} tokens/s')} |",
        f"| final training loss (last epoch) | {num(fig.final_training_loss, '{:.4f}')} |",
        f"| final / best validation loss | {num(fig.final_validation_loss, '{:.4f}')} / "
        f"{num(fig.best_validation_loss, '{:.4f}')} |",
        f"| quality | {rating_text(fig.convergence)} |",
        f"| hardware | {fig.workers} × {fig.hardware} |",
        f"| {fig.hours_label} | {num(fig.hours, '{:,.4f}')} |",
        f"| cost | {money_text(fig.cost)} |", ""])


def write_adapter_readme(job_id: str) -> int:
    """Replace the stored adapter's README.md (PEFT's blank model card) by :func:`adapter_readme`
    once the job completed; returns the bytes written (0 without a model). Service-internal (the
    Ray job that trained it). Raises NotFound."""
    from backend.db.models import ModelArtifact, TrainingJob
    from backend.db.session import session_scope
    from backend.storage import get_object_store

    fig = _load(job_id)
    with session_scope() as s:
        row = s.get(TrainingJob, job_id)
        artifact = s.get(ModelArtifact, row.artifact_id) if row.artifact_id else None
        if artifact is None:
            return 0
        prefix = (artifact.artifacts or {}).get("prefix") or f"models/{artifact.id}/"
        text = adapter_readme(fig, artifact.name, artifact.base_model)
    return get_object_store().put_bytes(prefix + "README.md", text.encode())
