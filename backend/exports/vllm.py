"""vLLM serves a PEFT LoRA folder with ``vllm serve BASE --enable-lora --lora-modules NAME=PATH``.
Its loader (``vllm.lora.peft_helper.PEFTHelper``) reads ``adapter_config.json`` and
``adapter_model.safetensors`` and refuses: a rank above ``--max-lora-rank`` (16 unless given),
adapter biases, DoRA, ``modules_to_save``; and only the projection layers can carry LoRA. This
module checks a saved adapter against those rules and writes the command."""
from __future__ import annotations

import json
import os
from pathlib import Path

VLLM_DEFAULT_MAX_RANK = 16
VLLM_RANKS = (8, 16, 32, 64, 128, 256, 320, 512)  # the values --max-lora-rank accepts
LLAMA_LORA_MODULES = frozenset({"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj",
                                "down_proj"})


def vllm_problems(adapter_dir: str | os.PathLike) -> list[str]:
    """What keeps vLLM from loading the adapter folder (empty: it loads)."""
    folder = Path(adapter_dir)
    problems = [f"missing {name}" for name in ("adapter_config.json", "adapter_model.safetensors")
                if not (folder / name).is_file()]
    if problems:
        return problems
    cfg = json.loads((folder / "adapter_config.json").read_text(encoding="utf-8"))
    if cfg.get("peft_type") != "LORA":
        problems.append(f"peft_type is {cfg.get('peft_type')!r}, vLLM loads LORA only")
    if (cfg.get("bias") or "none") != "none":
        problems.append("adapter biases need vLLM's --enable-lora-bias")
    if cfg.get("use_dora"):
        problems.append("vLLM does not support DoRA")
    if cfg.get("modules_to_save"):
        problems.append("vLLM needs modules_to_save to be empty")
    targets = cfg.get("target_modules") or []
    targets = [targets] if isinstance(targets, str) else targets
    odd = sorted(set(targets) - LLAMA_LORA_MODULES)
    if odd:
        problems.append(f"vLLM applies LoRA to projection layers only, not {', '.join(odd)}")
    if int(cfg.get("r") or 0) > max(VLLM_RANKS):
        problems.append(f"rank {cfg.get('r')} is above vLLM's largest --max-lora-rank")
    return problems


def max_lora_rank(rank: int) -> int:
    """The smallest ``--max-lora-rank`` value vLLM accepts that fits ``rank``."""
    return next((r for r in VLLM_RANKS if r >= rank), VLLM_RANKS[-1])


def serve_command(base_model: str, adapter_name: str, rank: int,
                  adapter_path: str = "path/to/adapter") -> str:
    """The ``vllm serve`` line for the adapter (``--max-lora-rank`` only when above 16)."""
    cmd = f"vllm serve {base_model} --enable-lora --lora-modules {adapter_name}={adapter_path}"
    if rank > VLLM_DEFAULT_MAX_RANK:
        cmd += f" --max-lora-rank {max_lora_rank(rank)}"
    return cmd
