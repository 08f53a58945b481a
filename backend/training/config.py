"""Training configuration: the schema of one LoRA fine-tuning run.

:class:`TrainingConfig` is the single source of truth for every hyperparameter: each field carries its
help text (reused as dashboard tooltips and in ``docs/training-config.md``) and its bounds. Building a
config with a bad value or conflicting values raises :class:`InvalidTrainingConfig` (an
:class:`~backend.core.errors.InvalidInput`) listing every problem at once; risky-but-legal values are
reported by :meth:`TrainingConfig.warnings` instead.

Presets live in ``backend/training/catalog/presets.json`` (see `backend.training.catalogs.from_preset`); the CLI's ``--set key=value``
goes through :func:`apply_overrides`.
"""
from __future__ import annotations

import difflib
import json
from dataclasses import dataclass
from typing import Any, Literal

from annotated_types import Ge, Gt, Le, Lt, MaxLen, MinLen
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)

from backend.core.errors import InvalidInput

DEFAULT_TARGET_MODULES = ("q_proj", "k_proj", "v_proj", "o_proj")
MAX_EFFECTIVE_BATCH = 8192
_NONE_WORDS = ("none", "null", "")

# Thresholds for risky-value warnings (documented in docs/training-config.md).
WARN_LR_HIGH = 2e-3
WARN_LR_LOW = 1e-6
WARN_RANK_HIGH = 128
WARN_EPOCHS_HIGH = 20
WARN_WEIGHT_DECAY_HIGH = 0.1
WARN_DROPOUT_HIGH = 0.5


class InvalidTrainingConfig(InvalidInput):
    """A training configuration with one or more bad values; ``issues`` lists each one."""

    def __init__(self, issues: list[str], *, hint: str | None = None):
        self.issues = list(issues)
        super().__init__("invalid training configuration: " + "; ".join(self.issues), hint=hint)


def _default_base_model() -> str:
    from backend.base_models.registry import default_base_model  # lazily: reads the environment

    return default_base_model()


class TrainingConfig(BaseModel):
    """Hyperparameters of one LoRA fine-tuning job (frozen; build a new one to change a value).

    Raises InvalidTrainingConfig (code ``invalid_input``) listing every bad value or conflict.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    base_model: str = Field(
        default_factory=_default_base_model, min_length=1, max_length=500,
        description="Base model to adapt: an installed base model id (brightrun base-models list), "
                    "a Hugging Face model id or a local directory present on the machine. Default: "
                    "BRIGHTRUN_DEFAULT_BASE_MODEL, else smollm2-135m-instruct when installed, else "
                    "brightrun/tiny-llama. Bigger models cost more GPU memory and time per token.")
    learning_rate: float = Field(
        2e-4, gt=0, le=0.1,
        description="Peak learning rate of AdamW after warmup. LoRA on small instruct models (under "
                    "1 B parameters, e.g. SmolLM2-135M) trains well at 5e-4 to 2e-3, on 7 B+ models "
                    "at 1e-4 to 3e-4; above 2e-3 training often diverges (loss spikes, NaN).")
    batch_size: int = Field(
        8, ge=1, le=512,
        description="Conversations per forward/backward pass on each worker (per-device batch). "
                    "Activation memory grows linearly with it; the global batch is "
                    "batch_size x gradient_accumulation_steps x workers.")
    num_epochs: int = Field(
        5, ge=1, le=100,
        description="Passes over the training split. Time and compute cost grow linearly with it; many "
                    "epochs on a small dataset overfit (validation loss rises).")
    lora_rank: int = Field(
        16, ge=1, le=512,
        description="Rank r of the LoRA update matrices (A: r x in, B: out x r). Higher rank = more "
                    "trainable parameters, a bigger adapter file and more capacity; 8-32 is typical.")
    lora_alpha: int = Field(
        32, ge=1, le=4096,
        description="LoRA scaling numerator: the update is multiplied by alpha / rank. Usually 2 x rank; "
                    "alpha below rank weakens the update.")
    lora_dropout: float = Field(
        0.1, ge=0, lt=1,
        description="Dropout probability applied to the LoRA input during training, in [0, 1). "
                    "0.05-0.1 regularises small datasets; 0 disables it.")
    target_modules: list[str] = Field(
        default_factory=lambda: list(DEFAULT_TARGET_MODULES), min_length=1, max_length=32,
        description="Names of the linear layers that get LoRA adapters (comma-separated with --set). "
                    "Default: the attention projections q_proj,k_proj,v_proj,o_proj; adding "
                    "gate_proj,up_proj,down_proj (or 'all-linear') trains the MLP too, at more memory "
                    "and adapter size.")
    warmup_steps: int = Field(
        0, ge=0, le=1_000_000,
        description="Optimizer steps over which the learning rate ramps linearly from 0 to its peak. "
                    "Should be well below the total number of steps. When above 0 it wins over "
                    "warmup_ratio.")
    warmup_ratio: float | None = Field(
        None, ge=0, le=0.5,
        description="Warmup as a fraction of the run's optimizer steps (0.1 = the first 10 %), so it "
                    "is never longer than the run whatever the dataset size; used when warmup_steps "
                    "is 0. Empty/none: no warmup unless warmup_steps is set.")
    weight_decay: float = Field(
        0.0, ge=0, le=1,
        description="AdamW decoupled weight decay applied to the LoRA weights; 0-0.1 is typical.")
    gradient_accumulation_steps: int = Field(
        1, ge=1, le=1024,
        description="Micro-batches whose gradients are summed before one optimizer step. Raises the "
                    "effective batch without more memory; fewer optimizer steps per epoch.")
    max_grad_norm: float = Field(
        1.0, gt=0, le=1000,
        description="Gradients are clipped to this global L2 norm before each optimizer step "
                    "(stabilises training).")
    max_seq_length: int = Field(
        2048, ge=32, le=131_072,
        description="Tokens per conversation after formatting with the chat template; longer ones are "
                    "truncated. Activation memory grows with it; keep it within the model's context.")
    seed: int = Field(
        42, ge=0, le=2**32 - 1,
        description="Random seed for LoRA initialisation, dropout and data order: the same seed and "
                    "data give the same run. The train/validation split does not depend on it, so "
                    "runs with different seeds are compared on the same held-out conversations.")
    eval_every_steps: int | None = Field(
        None, ge=1, le=1_000_000,
        description="Compute validation loss every N optimizer steps (and at the end). Empty/none: at "
                    "the end of every epoch. Each evaluation costs a forward pass over the validation "
                    "split.")
    checkpoint_every_steps: int | None = Field(
        None, ge=1, le=1_000_000,
        description="Save a checkpoint (adapter + optimizer state) every N optimizer steps (and at the "
                    "end). Empty/none: at the end of every epoch. Checkpoints cost storage.")
    gradient_checkpointing: bool | None = Field(
        None,
        description="Recompute each layer's activations during the backward pass instead of "
                    "keeping them: activation memory is kept only at each layer boundary "
                    "(hidden states), at ~30 % more time per step. Empty/none: decided when the "
                    "job is created — on for a GPU run the estimate says would not fit without "
                    "it, off otherwise.")
    validation_fraction: float = Field(
        0.1, ge=0, le=0.5,
        description="Fraction of conversations held out to measure validation loss: exactly "
                    "round(fraction × conversations), at least 1 of 2 or more, chosen by a hash of "
                    "each conversation id (the split the dataset statistics show); 0 disables "
                    "validation, evaluation and the quality rating.")

    method: Literal["sft", "dpo"] = Field(
        "sft",
        description="sft: supervised fine-tuning on conversations (loss on assistant tokens); dpo: "
                    "Direct Preference Optimisation on prompt/chosen/rejected pairs, the reference "
                    "being the base model (the adapter disabled).")
    dpo_beta: float = Field(
        0.1, gt=0, le=10,
        description="DPO only: β, how far the policy may move from the reference (higher: stays "
                    "closer); the rewards are β × the log-probability ratios.")
    dpo_loss_type: Literal["sigmoid"] = Field(
        "sigmoid", description="DPO only: the loss, −log σ(β·(chosen − rejected log-ratio)).")

    @field_validator("target_modules")
    @classmethod
    def _check_modules(cls, value: list[str]) -> list[str]:
        cleaned = [m.strip() for m in value]
        bad = [m for m in cleaned if not m or not all(c.isalnum() or c in "_.-" for c in m)]
        if bad:
            raise ValueError(f"module names must be letters, digits, '_', '.', '-': {bad}")
        dupes = sorted({m for m in cleaned if cleaned.count(m) > 1})
        if dupes:
            raise ValueError(f"duplicate module names: {', '.join(dupes)}")
        return cleaned

    @model_validator(mode="after")
    def _check_conflicts(self) -> TrainingConfig:
        problems = []
        effective = self.batch_size * self.gradient_accumulation_steps
        if effective > MAX_EFFECTIVE_BATCH:
            problems.append(f"batch_size x gradient_accumulation_steps = {effective} exceeds "
                            f"{MAX_EFFECTIVE_BATCH} conversations per optimizer step; lower one of them")
        if self.validation_fraction == 0 and self.eval_every_steps is not None:
            problems.append("eval_every_steps is set but validation_fraction is 0: there is nothing to "
                            "evaluate; set validation_fraction > 0 or eval_every_steps=none")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @model_validator(mode="wrap")
    @classmethod
    def _to_invalid_input(cls, data: Any, handler: Any) -> TrainingConfig:
        try:
            return handler(data)
        except ValidationError as exc:
            raise InvalidTrainingConfig(_describe_errors(exc),
                                        hint="see docs/training-config.md for every field") from None

    # ----- derived values --------------------------------------------------------------------------
    def steps_per_epoch(self, training_examples: int, workers: int = 1) -> int:
        """Optimizer steps per epoch for ``training_examples`` conversations on ``workers`` workers
        (at least 1): the trainer's count, :func:`backend.training.plan.steps_per_epoch`."""
        from backend.training.plan import steps_per_epoch

        return max(1, steps_per_epoch(max(0, training_examples), self.batch_size, max(1, workers),
                                      self.gradient_accumulation_steps))

    def total_steps(self, training_examples: int, workers: int = 1) -> int:
        """Optimizer steps over all epochs."""
        return self.steps_per_epoch(training_examples, workers) * self.num_epochs

    def warmup_for(self, total_steps: int) -> int:
        """Warmup steps of a run of ``total_steps`` optimizer steps: ``warmup_steps`` when above 0,
        else ``warmup_ratio`` × total (rounded; at least 1 when the ratio is above 0 and the run has
        more than one step). Never reaches ``total_steps`` for a ratio."""
        if self.warmup_steps > 0 or not self.warmup_ratio or total_steps <= 1:
            return self.warmup_steps
        return min(total_steps - 1, max(1, round(self.warmup_ratio * total_steps)))

    def warnings(self, *, model_max_length: int | None = None,
                 total_steps: int | None = None) -> list[str]:
        """Risky but legal values, as sentences (empty list when nothing looks risky).

        ``model_max_length`` (the base model's context) and ``total_steps`` enable the checks that need
        them. Raises nothing.
        """
        out: list[str] = []
        if self.learning_rate > WARN_LR_HIGH:
            out.append(f"learning_rate {self.learning_rate:g} is above {WARN_LR_HIGH:g}: LoRA training "
                       "often diverges (loss spikes or NaN); 5e-4 to 2e-3 suits models under 1 B, "
                       "1e-4 to 3e-4 7 B+ models")
        if self.learning_rate < WARN_LR_LOW:
            out.append(f"learning_rate {self.learning_rate:g} is below {WARN_LR_LOW:g}: the adapter "
                       "will barely change")
        if self.lora_alpha < self.lora_rank:
            out.append(f"lora_alpha {self.lora_alpha} is below lora_rank {self.lora_rank}: the update "
                       "is scaled by alpha/rank < 1 and learns slowly; 2 x rank is usual")
        if self.lora_rank > WARN_RANK_HIGH:
            out.append(f"lora_rank {self.lora_rank} is above {WARN_RANK_HIGH}: large adapter and "
                       "optimizer state for little gain over 16-64")
        if self.num_epochs > WARN_EPOCHS_HIGH:
            out.append(f"num_epochs {self.num_epochs} is above {WARN_EPOCHS_HIGH}: likely to overfit; "
                       "watch the validation loss")
        if self.weight_decay > WARN_WEIGHT_DECAY_HIGH:
            out.append(f"weight_decay {self.weight_decay:g} is above {WARN_WEIGHT_DECAY_HIGH:g}: "
                       "strong regularisation may stop the adapter from learning")
        if self.lora_dropout > WARN_DROPOUT_HIGH:
            out.append(f"lora_dropout {self.lora_dropout:g} is above {WARN_DROPOUT_HIGH:g}: most of "
                       "the LoRA input is dropped during training")
        if self.validation_fraction == 0:
            out.append("validation_fraction is 0: no validation loss, so overfitting cannot be seen "
                       "and the quality rating uses the training loss only")
        if model_max_length is not None and self.max_seq_length > model_max_length:
            out.append(f"max_seq_length {self.max_seq_length} is above the model's context of "
                       f"{model_max_length} tokens; positions beyond it are untrained")
        if total_steps is not None and self.warmup_steps >= total_steps:
            out.append(f"warmup_steps {self.warmup_steps} is not below the {total_steps} total "
                       "optimizer steps: the learning rate never reaches its peak")
        return out


def _describe_errors(exc: ValidationError) -> list[str]:
    issues = []
    valid = ", ".join(TrainingConfig.model_fields)
    for err in exc.errors():
        loc = ".".join(str(p) for p in err.get("loc", ()))
        if err["type"] == "extra_forbidden":
            issues.append(f"{loc}: unknown field{_suggest(loc)}; valid fields: {valid}")
            continue
        msg = str(err["msg"]).removeprefix("Value error, ")
        if loc:
            issues.append(f"{loc}: {msg} (got {err.get('input')!r})")
        else:
            issues.append(msg)
    return issues


def _suggest(name: str) -> str:
    close = difflib.get_close_matches(name, list(TrainingConfig.model_fields), n=1)
    return f" (did you mean {close[0]}?)" if close else ""


# ----- presets and overrides -------------------------------------------------------------------------
def parse_override(item: str) -> tuple[str, Any]:
    """Parse one ``key=value`` string into (field name, typed value).

    Lists are comma-separated (or a JSON list); ``none``/``null``/empty clears an optional field.
    Raises InvalidTrainingConfig for a missing '=', an unknown key, or a value of the wrong type.
    """
    if "=" not in item:
        raise InvalidTrainingConfig([f"{item!r}: expected KEY=VALUE, e.g. learning_rate=1e-4"])
    key, raw = (part.strip() for part in item.split("=", 1))
    field = TrainingConfig.model_fields.get(key)
    if field is None:
        raise InvalidTrainingConfig([f"{key!r}: unknown field{_suggest(key)}; valid fields: "
                                     f"{', '.join(TrainingConfig.model_fields)}"])
    annotation = field.annotation
    if annotation == list[str]:
        if not raw.startswith("["):
            return key, [p for p in raw.split(",") if p.strip()]
        try:
            value: Any = json.loads(raw)
        except ValueError as exc:
            raise InvalidTrainingConfig([f"{key}={raw!r}: not a valid JSON list ({exc.msg} at "
                                         f"character {exc.pos + 1}); write a,b,c or "
                                         f'["a","b","c"]']) from None
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise InvalidTrainingConfig([f"{key}={raw!r}: expected a list of names, e.g. "
                                         f'["a","b"] or a,b'])
        return key, value
    if raw.lower() in _NONE_WORDS and _allows_none(annotation):
        return key, None
    try:
        return key, TypeAdapter(annotation).validate_python(raw)
    except ValidationError as exc:
        kind = getattr(annotation, "__name__", str(annotation))
        raise InvalidTrainingConfig([f"{key}={raw!r}: not a valid {kind} "
                                     f"({exc.errors()[0]['msg']})"]) from None


def _allows_none(annotation: Any) -> bool:
    return type(None) in getattr(annotation, "__args__", ())


def apply_overrides(config: TrainingConfig, items: list[str]) -> TrainingConfig:
    """A new config: ``config`` with each ``key=value`` in ``items`` applied (CLI ``--set``).

    Every item is checked and all problems are reported together. Raises InvalidTrainingConfig.
    """
    updates: dict[str, Any] = {}
    issues: list[str] = []
    for item in items:
        try:
            key, value = parse_override(item)
            updates[key] = value
        except InvalidTrainingConfig as exc:
            issues.extend(exc.issues)
    if issues:
        raise InvalidTrainingConfig(issues, hint="see docs/training-config.md for every field")
    return TrainingConfig(**{**config.model_dump(), **updates})


# ----- help rows for docs and tooltips ---------------------------------------------------------------
@dataclass(frozen=True)
class FieldHelp:
    """One row of the field reference: name, type, default, bounds and help text."""

    name: str
    type: str
    default: str
    bounds: str
    description: str


_BOUND_WORDS = ((Ge, "ge", ">="), (Gt, "gt", ">"), (Le, "le", "<="), (Lt, "lt", "<"),
                (MinLen, "min_length", "min {unit}"), (MaxLen, "max_length", "max {unit}"))


def field_help() -> list[FieldHelp]:
    """One :class:`FieldHelp` per TrainingConfig field, in declaration order. Raises nothing."""
    rows = []
    for name, info in TrainingConfig.model_fields.items():
        unit = "length" if info.annotation is str else "items"
        bounds = []
        for meta in info.metadata:
            for kind, attr, word in _BOUND_WORDS:
                if isinstance(meta, kind):
                    value = getattr(meta, attr)
                    shown = f"{value:g}" if isinstance(value, float) else str(value)
                    bounds.append(f"{word.format(unit=unit)} {shown}")
        rows.append(FieldHelp(name, _type_name(info.annotation), _default_text(name, info),
                              ", ".join(bounds), info.description or ""))
    return rows


def _default_text(name: str, info: Any) -> str:
    if name == "base_model":
        return "configured default base model"
    if info.default_factory is not None:
        return ",".join(info.default_factory())
    if info.default is None:
        return "none"
    return f"{info.default:g}" if isinstance(info.default, float) else str(info.default)


def _type_name(annotation: Any) -> str:
    if annotation == list[str]:
        return "list of str"
    if getattr(annotation, "__origin__", None) is Literal:
        return " | ".join(annotation.__args__)
    if _allows_none(annotation):
        inner = [a for a in annotation.__args__ if a is not type(None)][0]
        return f"{inner.__name__} or none"
    return annotation.__name__


def field_table_markdown() -> str:
    """The field reference as a Markdown table (embedded verbatim in docs/training-config.md)."""
    lines = ["| field | type | default | bounds | description |", "|---|---|---|---|---|"]
    for row in field_help():
        cells = [f"`{row.name}`", row.type, row.default, row.bounds or "-", row.description]
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":  # regenerate the table for docs/training-config.md
    print(field_table_markdown())
