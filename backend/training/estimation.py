"""Pure estimator: tokens, time, GPU-hours, cost and memory of a training job before it runs.

No I/O: callers pass the dataset statistics, the config, a hardware entry and a model spec (see
:mod:`backend.training.catalogs`) and optionally measured throughput of finished jobs. Every formula and
constant is explained in ``docs/estimation.md``; each :class:`Estimate` also lists the assumptions it
made, in words.
"""
from __future__ import annotations

import math
import statistics
from dataclasses import asdict, dataclass, field
from decimal import Decimal
from typing import Any

from backend.training.catalogs import ALL_LINEAR, HardwareEntry, ModelSpec
from backend.errors import InvalidInput
from backend.training.config import TrainingConfig

GIB = 2**30
ACTIVATION_K_PER_DTYPE_BYTE = 17  # k = 17 x dtype bytes: 34 bytes/(token x hidden x layer) in bf16
LOGIT_BYTES = 4                   # logits are upcast to fp32 for the loss
EVAL_SPEEDUP = 3.0                # forward only ~ 1/3 of the forward+backward cost
SIMILAR_SIZE_FACTOR = 2.0         # calibration uses jobs on models within 2x of this size
STORAGE_MONTHS = 1.0              # storage is priced for one month of keeping the outputs
FILE_BYTES_PER_TOKEN = 5.0        # JSONL bytes per token when the file size is unknown
ADAPTER_BYTES_PER_PARAM = 2       # adapter saved in bf16
CHECKPOINT_BYTES_PER_PARAM = 2 + 8  # adapter + two fp32 AdamW moments
TRAINABLE_BYTES_PER_PARAM = 16    # fp32 weight + fp32 grad + two fp32 AdamW moments
BUDGET_HIGH_PERCENT = 80.0


@dataclass(frozen=True)
class LengthPercentiles:
    """Tokens per conversation: 10th, 50th, 90th percentile and maximum."""

    p10: int
    p50: int
    p90: int
    max: int


@dataclass(frozen=True)
class DatasetStatsInput:
    """What the estimator needs from a dataset's statistics (tokens after chat formatting).

    Raises InvalidInput for negative counts or percentiles out of order.
    """

    conversations: int
    total_tokens: int
    assistant_tokens: int
    training_pairs: int
    validation_pairs: int
    length_percentiles: LengthPercentiles
    file_size_bytes: int | None = None

    def __post_init__(self) -> None:
        counts = {"conversations": self.conversations, "total_tokens": self.total_tokens,
                  "assistant_tokens": self.assistant_tokens, "training_pairs": self.training_pairs,
                  "validation_pairs": self.validation_pairs, "file_size_bytes": self.file_size_bytes or 0}
        negative = [name for name, value in counts.items() if value < 0]
        if negative:
            raise InvalidInput(f"dataset statistics cannot be negative: {', '.join(negative)}")
        if self.conversations == 0 or self.total_tokens == 0:
            raise InvalidInput("the dataset has no conversations or no tokens; nothing to train on")
        p = self.length_percentiles
        if not 0 <= p.p10 <= p.p50 <= p.p90 <= p.max:
            raise InvalidInput(f"length percentiles must satisfy 0 <= p10 <= p50 <= p90 <= max; got "
                               f"{p.p10}, {p.p50}, {p.p90}, {p.max}")


@dataclass(frozen=True)
class CalibrationSample:
    """Measured throughput of one finished job (all workers together)."""

    hardware_id: str
    model_params: int
    workers: int
    tokens_per_s: float


@dataclass(frozen=True)
class CostBreakdown:
    compute: float
    storage: float
    data_transfer: float
    total: float


@dataclass(frozen=True)
class VramEstimate:
    """Memory per worker in GiB (data parallel: every worker holds the whole model).
    ``allocated_gb`` is what torch allocates (weights + LoRA/optimizer + activations: the figure
    held against ``torch.cuda.max_memory_allocated``); ``total_gb`` adds the runtime overhead."""

    base_weights_gb: float
    lora_and_optimizer_gb: float
    activations_gb: float
    overhead_gb: float
    total_gb: float
    available_gb: float
    fits: bool
    headroom_gb: float
    sequence_length: int
    allocated_gb: float = 0.0
    gradient_checkpointing: bool = False


@dataclass(frozen=True)
class Estimate:
    """Result of :func:`estimate`; ``to_dict()`` gives plain JSON-able values."""

    tokens_to_train: int
    eval_tokens: int
    throughput_tokens_per_s: float
    duration_s: float
    gpu_hours: float
    cost: CostBreakdown
    vram: VramEstimate
    calibrated_from: int
    assumptions: list[str]
    warnings: list[str]
    hardware_id: str = ""
    model_id: str = ""
    workers: int = 1
    steps_per_epoch: int = 0
    total_steps: int = 0
    evaluations: int = 0
    checkpoints: int = 0
    lora_params: int = 0
    adapter_bytes: int = 0
    kept_fraction: float = 1.0
    breakdown_s: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Nested plain dict (cost and vram as sub-dicts)."""
        return asdict(self)


@dataclass(frozen=True)
class BudgetDecision:
    """Whether a job can start without asking; ``level`` is ok / high (>= 80 %) / critical (>= 100 %)
    / no_budget."""

    allowed_without_confirmation: bool
    projected: float
    budget: float | None
    percent: float | None
    level: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# ----- tokens ----------------------------------------------------------------------------------------
def kept_fraction(p: LengthPercentiles, max_seq_length: int) -> float:
    """Share of all tokens that survive truncation at ``max_seq_length``.

    Lengths are modelled by a piecewise-linear quantile function through (0, p10), (0.1, p10),
    (0.5, p50), (0.9, p90), (1, max); the result is E[min(L, max_seq_length)] / E[L] under that model.
    Raises nothing.
    """
    points = [(0.0, p.p10), (0.1, p.p10), (0.5, p.p50), (0.9, p.p90), (1.0, p.max)]
    full = truncated = 0.0
    for (u0, a), (u1, b) in zip(points, points[1:]):
        width = u1 - u0
        full += width * (a + b) / 2
        truncated += width * _clipped_mean(a, b, max_seq_length)
    return 1.0 if full == 0 else truncated / full


def _clipped_mean(a: float, b: float, cap: float) -> float:
    """Mean of min(x, cap) for x rising linearly from a to b (a <= b)."""
    if b <= cap:
        return (a + b) / 2
    if a >= cap:
        return cap
    t = (cap - a) / (b - a)
    return t * (a + cap) / 2 + (1 - t) * cap


def _count(total_steps: int, every: int | None, epochs: int) -> int:
    """Events (evaluations or checkpoints): once per epoch, or every N steps plus one at the end."""
    return epochs if every is None else math.ceil(total_steps / every)


# ----- throughput ------------------------------------------------------------------------------------
def scaling_factor(workers: int, efficiency_per_doubling: float) -> float:
    """Speed of ``workers`` workers relative to one: workers x efficiency^log2(workers)."""
    return workers * efficiency_per_doubling ** math.log2(workers)


def size_factor(hardware: HardwareEntry, model_params: int) -> float:
    """Per-worker speed for a model of ``model_params`` relative to the hardware's reference model:
    reference/params, capped at ``max_speedup`` for small models."""
    return min(hardware.throughput_reference_params / model_params, hardware.max_speedup)


def throughput(hardware: HardwareEntry, model: ModelSpec, workers: int,
               calibration: list[CalibrationSample] | None = None) -> tuple[float, int, list[str]]:
    """(tokens/s of all workers, number of calibration samples used, assumptions).

    Uses the median of finished jobs on the same hardware with a model within 2x of this size
    (each normalised to one worker and to this model size), else the catalog figure. Raises nothing.
    """
    eff = hardware.scaling_efficiency_per_doubling
    scale = scaling_factor(workers, eff)
    matching = [s for s in calibration or []
                if s.hardware_id == hardware.id and s.tokens_per_s > 0 and s.workers >= 1
                and 1 / SIMILAR_SIZE_FACTOR <= s.model_params / model.params <= SIMILAR_SIZE_FACTOR]
    if matching:
        per_worker = statistics.median(
            s.tokens_per_s / scaling_factor(s.workers, eff) * (s.model_params / model.params)
            for s in matching)
        note = (f"throughput calibrated from {len(matching)} finished job(s) on {hardware.id} with "
                f"models within {SIMILAR_SIZE_FACTOR:g}x of this size: median {per_worker:,.0f} "
                "tokens/s per worker")
        return per_worker * scale, len(matching), [note]
    factor = size_factor(hardware, model.params)
    per_worker = hardware.throughput_tokens_per_s * factor
    notes = [f"throughput {hardware.throughput_tokens_per_s:,.0f} tokens/s per worker for a "
             f"{hardware.throughput_reference_params / 1e9:.3g}B model on {hardware.id} "
             f"({hardware.throughput_source}), scaled by {factor:.3g} for "
             f"{model.params / 1e9:.3g}B params (inverse to size, speed-up capped at "
             f"{hardware.max_speedup:g}x)"]
    return per_worker * scale, 0, notes


# ----- memory ----------------------------------------------------------------------------------------
def lora_parameter_count(model: ModelSpec, target_modules: list[str],
                         rank: int) -> tuple[int, list[str]]:
    """(trainable LoRA params, assumptions): rank x (in + out) per target module per layer.

    'all-linear' means the seven Llama projections; an unknown module name is assumed
    hidden x hidden (said in the assumptions). Raises nothing.
    """
    names = list(ALL_LINEAR) if "all-linear" in target_modules else list(target_modules)
    total, notes = 0, []
    for name in names:
        shape = model.module_shape(name)
        if shape is None:
            shape = (model.hidden_size, model.hidden_size)
            notes.append(f"target module {name!r} is not a known Llama projection; assumed "
                         f"{model.hidden_size}x{model.hidden_size}")
        total += rank * (shape[0] + shape[1]) * model.num_layers
    return total, notes


def vram(config: TrainingConfig, model: ModelSpec, hardware: HardwareEntry, lora_params: int,
         sequence_length: int, checkpointing: bool | None = None) -> VramEstimate:
    """Memory per worker for training ``model`` with ``config`` at ``sequence_length`` tokens,
    with gradient checkpointing ``checkpointing`` (None: the config's value, none = off).

    base weights (params x dtype bytes) + trainable LoRA params x 16 bytes + activations
    + runtime overhead. Activations without checkpointing: b·s·h·L·k + one layer of attention
    scores b·a·s²·dtype + fp32 logits b·s·V·4; with it, only the hidden state at each layer
    boundary is kept (b·s·h·L·dtype) plus one layer's full activations while it is recomputed
    (b·s·h·k), the attention scores and the logits. Raises nothing.
    """
    ckpt = bool(config.gradient_checkpointing if checkpointing is None else checkpointing)
    b, s, d = config.batch_size, sequence_length, hardware.dtype_bytes
    base = model.params * d / GIB
    trainable = lora_params * TRAINABLE_BYTES_PER_PARAM / GIB
    k = ACTIVATION_K_PER_DTYPE_BYTE * d
    h, layers = model.hidden_size, model.num_layers
    kept = b * s * h * (layers * d + k) if ckpt else b * s * h * layers * k
    activations = (kept + b * model.num_attention_heads * s * s * d
                   + b * s * model.vocab_size * LOGIT_BYTES) / GIB
    overhead = hardware.runtime_overhead_gb
    allocated = base + trainable + activations
    total = allocated + overhead
    return VramEstimate(base_weights_gb=base, lora_and_optimizer_gb=trainable,
                        activations_gb=activations, overhead_gb=overhead, total_gb=total,
                        available_gb=hardware.memory_gb, fits=total <= hardware.memory_gb,
                        headroom_gb=hardware.memory_gb - total, sequence_length=s,
                        allocated_gb=allocated, gradient_checkpointing=ckpt)


def checkpointing_decision(config: TrainingConfig, model: ModelSpec, hardware: HardwareEntry,
                           lora_params: int, sequence_length: int) -> bool:
    """Whether a run trains with gradient checkpointing: the config's value when set; otherwise
    (none) on for a GPU run that would not fit in memory without it, off on CPU and for runs that
    fit. Used by :func:`estimate`, whose result job creation stores. Raises nothing."""
    if config.gradient_checkpointing is not None:
        return config.gradient_checkpointing
    if hardware.kind != "gpu":
        return False
    return not vram(config, model, hardware, lora_params, sequence_length, False).fits


# ----- the estimate ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class _TokenPlan:
    kept: float
    training_examples: int
    steps_per_epoch: int
    total_steps: int
    tokens_to_train: int
    evaluations: int
    eval_tokens: int
    checkpoints: int


def _plan_tokens(stats: DatasetStatsInput, config: TrainingConfig, workers: int) -> _TokenPlan:
    kept = kept_fraction(stats.length_percentiles, config.max_seq_length)
    vf = config.validation_fraction
    examples = max(1, round(stats.conversations * (1 - vf)))
    steps = config.steps_per_epoch(examples, workers)
    total_steps = steps * config.num_epochs
    evaluations = 0 if vf == 0 else _count(total_steps, config.eval_every_steps, config.num_epochs)
    return _TokenPlan(
        kept=kept, training_examples=examples, steps_per_epoch=steps, total_steps=total_steps,
        tokens_to_train=round(stats.total_tokens * (1 - vf) * kept * config.num_epochs),
        evaluations=evaluations, eval_tokens=round(stats.total_tokens * vf * kept * evaluations),
        checkpoints=_count(total_steps, config.checkpoint_every_steps, config.num_epochs))


def _costs(stats: DatasetStatsInput, hardware: HardwareEntry, workers: int, duration_s: float,
           plan: _TokenPlan, lora_params: int) -> tuple[CostBreakdown, float, list[str]]:
    gpu_hours = duration_s / 3600 * workers
    compute = gpu_hours * hardware.cost_per_gpu_hour
    adapter_bytes = lora_params * ADAPTER_BYTES_PER_PARAM
    stored = adapter_bytes + plan.checkpoints * lora_params * CHECKPOINT_BYTES_PER_PARAM
    storage = stored / GIB * hardware.pricing.storage_per_gb_month * STORAGE_MONTHS
    notes = [f"storage: adapter + {plan.checkpoints} checkpoint(s) (adapter + AdamW moments) = "
             f"{stored / 2**20:,.1f} MiB kept {STORAGE_MONTHS:g} month at "
             f"${hardware.pricing.storage_per_gb_month:g}/GB-month"]
    dataset_bytes = stats.file_size_bytes
    if not dataset_bytes:
        dataset_bytes = round(stats.total_tokens * FILE_BYTES_PER_TOKEN)
        notes.append(f"dataset file size unknown: assumed {FILE_BYTES_PER_TOKEN:g} bytes per token")
    moved = dataset_bytes * workers + adapter_bytes
    transfer = moved / GIB * hardware.pricing.data_transfer_per_gb
    notes.append(f"data transfer: dataset to each of {workers} worker(s) + adapter back = "
                 f"{moved / 2**20:,.1f} MiB at ${hardware.pricing.data_transfer_per_gb:g}/GB")
    cost = CostBreakdown(compute=compute, storage=storage, data_transfer=transfer,
                         total=compute + storage + transfer)
    return cost, gpu_hours, notes


def _check_workers(hardware: HardwareEntry, workers: int) -> None:
    if not isinstance(workers, int) or not 1 <= workers <= hardware.max_workers:
        raise InvalidInput(f"workers must be between 1 and {hardware.max_workers} for {hardware.id}; "
                           f"got {workers!r}")


def estimate(stats: DatasetStatsInput, config: TrainingConfig, hardware: HardwareEntry, workers: int,
             model: ModelSpec, calibration: list[CalibrationSample] | None = None) -> Estimate:
    """Tokens, duration, GPU-hours, cost and memory of training ``model`` with ``config`` on
    ``workers`` x ``hardware`` (formulas in docs/estimation.md).

    Raises InvalidInput when ``workers`` is outside 1..hardware.max_workers.
    """
    _check_workers(hardware, workers)
    plan = _plan_tokens(stats, config, workers)
    tps, calibrated_from, assumptions = throughput(hardware, model, workers, calibration)
    train_s = plan.tokens_to_train / tps
    eval_s = plan.eval_tokens / (tps * EVAL_SPEEDUP)
    duration_s = train_s + eval_s + hardware.startup_overhead_s
    lora_params, module_notes = lora_parameter_count(model, config.target_modules, config.lora_rank)
    cost, gpu_hours, cost_notes = _costs(stats, hardware, workers, duration_s, plan, lora_params)
    longest = stats.length_percentiles.max
    seq = min(config.max_seq_length, longest) if longest > 0 else config.max_seq_length
    memory = vram(config, model, hardware, lora_params, seq,
                  checkpointing_decision(config, model, hardware, lora_params, seq))
    assumptions += _assumption_notes(hardware, workers, plan) + module_notes + cost_notes
    assumptions.append(f"gradient checkpointing {'on' if memory.gradient_checkpointing else 'off'}"
                       + (" (set in the config)" if config.gradient_checkpointing is not None
                          else " (none: on only for a GPU run that would not fit without it)"))
    if longest <= 0:
        assumptions.append("conversation lengths unknown: memory assumes batches of max_seq_length")
    return Estimate(
        tokens_to_train=plan.tokens_to_train, eval_tokens=plan.eval_tokens,
        throughput_tokens_per_s=tps, duration_s=duration_s, gpu_hours=gpu_hours, cost=cost,
        vram=memory, calibrated_from=calibrated_from, assumptions=assumptions,
        warnings=_warnings(config, model, hardware, workers, plan, memory),
        hardware_id=hardware.id, model_id=model.id, workers=workers,
        steps_per_epoch=plan.steps_per_epoch, total_steps=plan.total_steps,
        evaluations=plan.evaluations, checkpoints=plan.checkpoints, lora_params=lora_params,
        adapter_bytes=lora_params * ADAPTER_BYTES_PER_PARAM, kept_fraction=plan.kept,
        breakdown_s={"training": train_s, "evaluation": eval_s,
                     "startup": hardware.startup_overhead_s})


def _assumption_notes(hardware: HardwareEntry, workers: int, plan: _TokenPlan) -> list[str]:
    return [
        f"{workers} worker(s), data parallel: each holds the whole model; speed x"
        f"{scaling_factor(workers, hardware.scaling_efficiency_per_doubling):.3g} "
        f"({hardware.scaling_efficiency_per_doubling:g} efficiency per doubling)",
        f"truncation at max_seq_length keeps ~{plan.kept:.1%} of tokens (piecewise-linear length "
        "distribution through p10/p50/p90/max)",
        "every token of a conversation is processed (the loss counts assistant tokens only); "
        "padding is ignored (dynamic padding)",
        f"evaluation is forward-only, ~{EVAL_SPEEDUP:g}x faster per token than training; "
        f"{plan.evaluations} evaluation(s) over the validation split",
        f"fixed startup of {hardware.startup_overhead_s:g} s (workers start, model loads)",
        "memory-efficient attention (one layer of attention scores counted); base weights in "
        "the compute dtype; gradient checkpointing keeps one hidden state per layer boundary",
    ]


def _warnings(config: TrainingConfig, model: ModelSpec, hardware: HardwareEntry, workers: int,
              plan: _TokenPlan, memory: VramEstimate) -> list[str]:
    out = config.warnings(model_max_length=model.max_context, total_steps=plan.total_steps)
    if not memory.fits:
        out.append(f"needs ~{memory.total_gb:.1f} GB per worker but {hardware.id} has "
                   f"{memory.available_gb:g} GB: "
                   + ("" if memory.gradient_checkpointing else "turn on gradient_checkpointing, ")
                   + "lower batch_size or max_seq_length (raise gradient_accumulation_steps to "
                   "keep the effective batch), or pick bigger hardware")
    if plan.kept < 0.95:
        out.append(f"~{1 - plan.kept:.0%} of the dataset's tokens are beyond max_seq_length "
                   f"{config.max_seq_length} and will be truncated")
    global_batch = config.batch_size * config.gradient_accumulation_steps * workers
    if plan.training_examples < global_batch:
        out.append(f"only {plan.training_examples} training conversations for a global batch of "
                   f"{global_batch}: one optimizer step per epoch")
    return out


def budget_check(month_spend: float | Decimal, estimate_total: float,
                 budget: float | Decimal | None) -> BudgetDecision:
    """Would this job push the month's spend past ``budget``? (None: no budget set.)

    ``allowed_without_confirmation`` is False when the projected spend exceeds the budget.
    Raises InvalidInput for negative amounts or a budget that is not positive.
    """
    month_spend, estimate_total = float(month_spend), float(estimate_total)  # Decimal from the DB
    if month_spend < 0 or estimate_total < 0:
        raise InvalidInput("spend and estimate cannot be negative")
    projected = month_spend + estimate_total
    if budget is None:
        return BudgetDecision(True, projected, None, None, "no_budget")
    budget = float(budget)
    if budget <= 0:
        raise InvalidInput(f"a monthly budget must be positive; got {budget}")
    percent = projected / budget * 100
    level = "critical" if percent >= 100 else "high" if percent >= BUDGET_HIGH_PERCENT else "ok"
    return BudgetDecision(projected <= budget, projected, budget, percent, level)
