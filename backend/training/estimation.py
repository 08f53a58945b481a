"""Pure estimator: tokens, time, GPU-hours, cost and memory of a training job before it runs.

No I/O: callers pass the dataset statistics, the config, a hardware entry and a model spec (see
:mod:`backend.training.catalogs`) and optionally measured throughput of finished jobs. Every formula and
constant is explained in ``docs/estimation.md``; each :class:`Estimate` also lists the assumptions it
made, in words.
"""
from __future__ import annotations

import statistics
from dataclasses import asdict, dataclass, field
from decimal import Decimal
from typing import Any

from backend.base_models.specs import ALL_LINEAR, ModelSpec
from backend.core.errors import InvalidInput
from backend.training.calibration import (  # noqa: F401
    SIMILAR_SIZE_FACTOR,
    CalibrationSample,
    scaling_factor,
    startup_seconds,
    step_overhead,
)
from backend.training.catalogs import HardwareEntry, storage_cost
from backend.training.config import TrainingConfig
from backend.training.plan import TrainPlan, approximate_plan

GIB = 2**30
ACTIVATION_K_PER_DTYPE_BYTE = 17  # k = 17 x dtype bytes: 34 bytes/(token x hidden x layer) in bf16
LOGIT_BYTES = 4                   # logits are upcast to fp32 for the loss
EVAL_SPEEDUP = 3.0                # forward only ~ 1/3 of the forward+backward cost
STORAGE_MONTHS = 1.0              # storage is priced for one month of keeping the outputs
FILE_BYTES_PER_TOKEN = 5.0        # JSONL bytes per token when the file size is unknown
ADAPTER_BYTES_PER_PARAM = 4       # PEFT keeps (and saves) LoRA weights in fp32, also on a bf16 base
ADAPTER_HEADER_BYTES_PER_TENSOR = 128  # safetensors JSON header entry per lora_A / lora_B tensor
CHECKPOINT_BYTES_PER_PARAM = 4 + 8  # adapter + two fp32 AdamW moments
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
    worker_hours: float
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
    # the trainer's plan (backend.training.plan.TrainPlan), same names as `jobs show --json`
    plan_source: str = "approximate"  # "exact": from the dataset's templated token counts
    train_conversations: int = 0
    validation_conversations: int = 0
    truncated: int = 0
    left_out: int = 0
    trained_tokens_cut: int = 0
    trained_tokens_to_train: int = 0

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
# DPO: a trained token costs ~3 forward-equivalents (forward + backward), the reference adds one
DPO_TRAIN_FACTOR = 4 / 3
DPO_EVAL_FACTOR = 2.0


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


# ----- throughput ------------------------------------------------------------------------------------
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
def adapter_bytes(lora_params: int, tensors: int) -> int:
    """Size of the saved adapter_model.safetensors: fp32 weights + a header entry per tensor."""
    return lora_params * ADAPTER_BYTES_PER_PARAM + tensors * ADAPTER_HEADER_BYTES_PER_TENSOR


def _costs(stats: DatasetStatsInput, hardware: HardwareEntry, workers: int, duration_s: float,
           plan: TrainPlan, lora_params: int, adapter_size: int
           ) -> tuple[CostBreakdown, float, list[str]]:
    worker_hours = duration_s / 3600 * workers
    compute = worker_hours * hardware.cost_per_gpu_hour
    adapter_bytes = adapter_size
    stored = adapter_bytes + plan.checkpoints * lora_params * CHECKPOINT_BYTES_PER_PARAM
    storage = storage_cost(stored, hardware.pricing.storage_per_gb_month, STORAGE_MONTHS)
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
    return cost, worker_hours, notes


def _check_workers(hardware: HardwareEntry, workers: int) -> None:
    if not isinstance(workers, int) or not 1 <= workers <= hardware.max_workers:
        raise InvalidInput(f"workers must be between 1 and {hardware.max_workers} for {hardware.id}; "
                           f"got {workers!r}")


def estimate(stats: DatasetStatsInput, config: TrainingConfig, hardware: HardwareEntry, workers: int,
             model: ModelSpec, calibration: list[CalibrationSample] | None = None,
             plan: TrainPlan | None = None) -> Estimate:
    """Tokens, duration, GPU-hours, cost and memory of training ``model`` with ``config`` on
    ``workers`` x ``hardware`` (formulas in docs/estimation.md). ``plan`` is the trainer's exact
    plan (:func:`backend.training.plan.plan_for_config` on the dataset's templated token counts);
    without it the plan is approximated from ``stats`` (:func:`approximate_plan`).

    Raises InvalidInput when ``workers`` is outside 1..hardware.max_workers.
    """
    _check_workers(hardware, workers)
    kept = kept_fraction(stats.length_percentiles, config.max_seq_length)
    plan_source = "exact" if plan is not None else "approximate"
    if plan is None:
        plan = approximate_plan(stats.conversations, stats.total_tokens, stats.assistant_tokens,
                                kept, config, workers)
    else:
        kept = plan.kept_fraction
    tps, calibrated_from, assumptions = throughput(hardware, model, workers, calibration)
    step_s, fitted, step_notes = step_overhead(hardware, model, workers, calibration)
    if fitted:
        tps = fitted
    assumptions += step_notes
    train_s = plan.tokens_to_train / tps + plan.total_steps * step_s
    eval_s = plan.eval_tokens / (tps * EVAL_SPEEDUP)
    if config.method == "dpo":  # tokens count chosen + rejected; the reference adds a forward
        train_s *= DPO_TRAIN_FACTOR
        eval_s *= DPO_EVAL_FACTOR
        assumptions.append(f"DPO: every pair is two sequences (chosen + rejected, in the token "
                           f"counts), each run through the policy and the reference (adapter "
                           f"off, forward only): training ×{DPO_TRAIN_FACTOR:.3g}, evaluation "
                           f"×{DPO_EVAL_FACTOR:g}")
    startup_s, startup_notes = startup_seconds(hardware, calibration, workers)
    duration_s = train_s + eval_s + startup_s
    lora_params, module_notes = lora_parameter_count(model, config.target_modules, config.lora_rank)
    tensors = 2 * model.num_layers * len(list(ALL_LINEAR) if "all-linear" in config.target_modules
                                         else config.target_modules)
    size = adapter_bytes(lora_params, tensors)
    cost, worker_hours, cost_notes = _costs(stats, hardware, workers, duration_s, plan, lora_params,
                                         size)
    longest = stats.length_percentiles.max
    seq = min(config.max_seq_length, longest) if longest > 0 else config.max_seq_length
    memory = vram(config, model, hardware, lora_params, seq,
                  checkpointing_decision(config, model, hardware, lora_params, seq))
    assumptions += (_assumption_notes(hardware, workers, plan, kept, plan_source) + startup_notes
                    + module_notes + cost_notes)
    assumptions.append(f"gradient checkpointing {'on' if memory.gradient_checkpointing else 'off'}"
                       + (" (set in the config)" if config.gradient_checkpointing is not None
                          else " (none: on only for a GPU run that would not fit without it)"))
    if longest <= 0:
        assumptions.append("conversation lengths unknown: memory assumes batches of max_seq_length")
    return Estimate(
        tokens_to_train=plan.tokens_to_train, eval_tokens=plan.eval_tokens,
        throughput_tokens_per_s=tps, duration_s=duration_s, worker_hours=worker_hours, cost=cost,
        vram=memory, calibrated_from=calibrated_from, assumptions=assumptions,
        warnings=_warnings(config, model, hardware, workers, plan, memory, kept),
        hardware_id=hardware.id, model_id=model.id, workers=workers,
        steps_per_epoch=plan.steps_per_epoch, total_steps=plan.total_steps,
        evaluations=plan.evaluations, checkpoints=plan.checkpoints, lora_params=lora_params,
        adapter_bytes=size, kept_fraction=kept,
        breakdown_s={"training": train_s, "evaluation": eval_s, "startup": startup_s},
        plan_source=plan_source, train_conversations=plan.train_conversations,
        validation_conversations=plan.validation_conversations, truncated=plan.truncated,
        left_out=plan.left_out, trained_tokens_cut=plan.trained_tokens_cut,
        trained_tokens_to_train=plan.trained_tokens_to_train)



def _assumption_notes(hardware: HardwareEntry, workers: int, plan: TrainPlan, kept: float,
                      plan_source: str) -> list[str]:
    split = (f"{plan.validation_conversations} of {plan.conversations} conversation(s) held out "
             f"for validation; {plan.train_conversations} trained on")
    if plan_source == "exact":
        first = [f"the trainer's plan, counted from every conversation with the base model's "
                 f"tokenizer and chat template: {split}; {plan.truncated} conversation(s) "
                 f"shortened and {plan.left_out} left out at max_seq_length "
                 f"({plan.trained_tokens_cut:,} trained tokens cut)"]
    else:
        first = [f"approximate plan from the dataset statistics: {split}",
                 f"truncation at max_seq_length keeps ~{kept:.1%} of tokens (piecewise-linear "
                 "length distribution through p10/p50/p90/max)"]
    return first + [
        f"{workers} worker(s), data parallel: each holds the whole model; speed x"
        f"{scaling_factor(workers, hardware.scaling_efficiency_per_doubling):.3g} "
        f"({hardware.scaling_efficiency_per_doubling:g} efficiency per doubling)",
        "every token of a conversation is processed (the loss counts assistant tokens only); "
        "padding is ignored (dynamic padding)",
        f"evaluation is forward-only, ~{EVAL_SPEEDUP:g}x faster per token than training; "
        f"{plan.evaluations} evaluation(s) over the validation split",
        "memory-efficient attention (one layer of attention scores counted); base weights in "
        "the compute dtype; gradient checkpointing keeps one hidden state per layer boundary",
    ]


def _warnings(config: TrainingConfig, model: ModelSpec, hardware: HardwareEntry, workers: int,
              plan: TrainPlan, memory: VramEstimate, kept: float) -> list[str]:
    out = config.warnings(model_max_length=model.max_context, total_steps=plan.total_steps)
    if not memory.fits:
        out.append(f"needs ~{memory.total_gb:.1f} GB per worker but {hardware.id} has "
                   f"{memory.available_gb:g} GB: "
                   + ("" if memory.gradient_checkpointing else "turn on gradient_checkpointing, ")
                   + "lower batch_size or max_seq_length (raise gradient_accumulation_steps to "
                   "keep the effective batch), or pick bigger hardware")
    if plan.truncated or plan.left_out:
        out.append(f"at max_seq_length {config.max_seq_length}: {plan.truncated} conversation(s) "
                   f"shortened to their last whole assistant turn, {plan.left_out} left out (no "
                   f"assistant turn fits); {plan.trained_tokens_cut:,} trained tokens cut")
    elif kept < 0.95:
        out.append(f"~{1 - kept:.0%} of the dataset's tokens are beyond max_seq_length "
                   f"{config.max_seq_length} and will be truncated")
    global_batch = config.batch_size * config.gradient_accumulation_steps * workers
    if plan.train_conversations < global_batch:
        out.append(f"only {plan.train_conversations} training conversations for a global batch of "
                   f"{global_batch}: one optimizer step per epoch")
    if plan.validation_conversations == 0 and config.validation_fraction > 0:
        out.append("no conversation is held out for validation: no validation loss, and the "
                   "model will not be rated")
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
