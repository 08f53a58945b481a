"""Where a training worker runs and in which number formats: the one decision, made from the job's
hardware entry (``use_gpu``, from ``gpu_config``), never from what the host happens to have.

- CPU job: the model trains in fp32 on the CPU, even on a host with a GPU.
- GPU job: base weights in bf16, LoRA parameters (and so their gradients and AdamW state) in fp32,
  TF32 matmuls allowed; a GPU job on a worker without CUDA is an error, not a silent CPU run.

:func:`cuda_available` is the single place the per-worker loop asks torch whether CUDA is there
(tests patch it to play a GPU host). :func:`plan` is pure; :func:`load_kwargs` and
:func:`prepare` apply a plan to ``from_pretrained`` and to the PEFT model. Importable with torch
alone (no Ray, no pydantic): ``bench/gpu_check.py`` uses it on a bare GPU machine.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from backend.core.errors import InvalidInput

DEFAULT_ATTENTION = "sdpa"  # PyTorch scaled_dot_product_attention: memory-efficient, no extra wheel
ATTENTION_CHOICES = ("sdpa", "eager", "flash_attention_2")


class PrecisionError(InvalidInput):
    """The job's hardware and this worker disagree (a GPU job on a worker without CUDA)."""

    code = "no_cuda_device"


@dataclass(frozen=True)
class Precision:
    """How one worker trains: device kind, dtypes, TF32, attention and checkpointing."""

    device: str              # "cpu" or "cuda"
    base_dtype: str          # dtype of the frozen base weights
    trainable_dtype: str     # dtype of the LoRA weights, their gradients and AdamW state
    tf32: bool               # TF32 allowed for fp32 matmuls (Ampere and newer)
    attn_implementation: str
    gradient_checkpointing: bool

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def cuda_available() -> bool:
    """Whether this process sees a CUDA device: the loop's only CUDA detection call site."""
    import torch

    return torch.cuda.is_available()


def plan(use_gpu: bool, cuda: bool, *, gradient_checkpointing: bool | None = False,
         attn_implementation: str = DEFAULT_ATTENTION) -> Precision:
    """The precision plan of a worker of a job with ``use_gpu`` (the hardware entry's kind) on a
    host where CUDA is ``cuda``. ``gradient_checkpointing`` None means off (the job's resolved
    value comes from the estimate at creation). Raises PrecisionError for a GPU job without CUDA
    and ValueError for an unknown attention implementation."""
    if attn_implementation not in ATTENTION_CHOICES:
        raise ValueError(f"attn_implementation must be one of {', '.join(ATTENTION_CHOICES)}; "
                         f"got {attn_implementation!r}")
    checkpointing = bool(gradient_checkpointing)
    if not use_gpu:
        return Precision("cpu", "float32", "float32", False, attn_implementation, checkpointing)
    if not cuda:
        raise PrecisionError("this is a GPU job but the worker sees no CUDA device: check the "
                             "node's drivers and that Ray assigned it a GPU")
    return Precision("cuda", "bfloat16", "float32", True, attn_implementation, checkpointing)


def for_job(use_gpu: bool, gradient_checkpointing: bool | None = False,
            attn_implementation: str = DEFAULT_ATTENTION) -> Precision:
    """:func:`plan` for this host (asks :func:`cuda_available` only for a GPU job)."""
    return plan(use_gpu, cuda_available() if use_gpu else False,
                gradient_checkpointing=gradient_checkpointing,
                attn_implementation=attn_implementation)


def load_kwargs(p: Precision) -> dict[str, Any]:
    """Keyword arguments of ``AutoModelForCausalLM.from_pretrained`` for plan ``p``."""
    import torch

    return {"dtype": getattr(torch, p.base_dtype), "attn_implementation": p.attn_implementation}


def prepare(p: Precision, peft_model) -> None:
    """Apply plan ``p`` to a PEFT model (before the optimizer is built): trainable parameters in
    ``trainable_dtype``, TF32 switch, gradient checkpointing (non-reentrant, so the frozen
    embeddings need ``enable_input_require_grads`` for gradients to reach the LoRA weights)."""
    import torch

    trainable = getattr(torch, p.trainable_dtype)
    for param in peft_model.parameters():
        if param.requires_grad and param.dtype != trainable:
            param.data = param.data.to(trainable)
    if p.device == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = p.tf32
        torch.backends.cudnn.allow_tf32 = p.tf32
    if p.gradient_checkpointing:
        peft_model.enable_input_require_grads()
        kwargs = {"use_reentrant": False}
        enable = getattr(peft_model, "activation_checkpointing_enable", None)  # transformers >= 5.x
        if enable is not None:
            enable(activation_checkpointing_kwargs=kwargs)
        else:  # older transformers (a GPU machine's own install)
            peft_model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)
        peft_model.config.use_cache = False


def attention_in_use(model) -> str | None:
    """The attention implementation the loaded model actually uses (what the result records)."""
    config = getattr(model, "config", None)
    return getattr(config, "_attn_implementation", None) if config is not None else None
