"""Shared by the export tests: a real PEFT adapter on a base folder, chat prompts, greedy runs."""
from __future__ import annotations

from pathlib import Path

PROMPTS = ["How do I start saving money for a trip?",
           "Explain what an emergency fund is in two sentences.",
           "Write a short thank-you note to a friend who helped me move."]


def make_adapter(base_dir: Path, folder: Path, seed: int = 0, scale: float = 0.02) -> Path:
    """A LoRA adapter whose B matrices are random (so it changes the model), with the base's
    tokenizer saved beside it as training does."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_pretrained(base_dir, local_files_only=True)
    peft = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, target_modules=[
        "q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]))
    with torch.no_grad():
        for name, p in peft.named_parameters():
            if "lora_B" in name:
                p.normal_(0.0, scale)
    peft.save_pretrained(folder)
    AutoTokenizer.from_pretrained(base_dir, local_files_only=True).save_pretrained(folder)
    return folder


def peft_model(base_dir: Path, adapter_dir: Path):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(base_dir, local_files_only=True,
                                                dtype=torch.float32)
    return PeftModel.from_pretrained(base, str(adapter_dir)).eval()


def prompt_ids(tokenizer) -> list[list[int]]:
    return [tokenizer.apply_chat_template([{"role": "user", "content": p}],
                                          add_generation_prompt=True, tokenize=True,
                                          return_dict=True)["input_ids"] for p in PROMPTS]


def greedy(model, ids: list[int], n: int = 32) -> list[int]:
    """``n`` argmax tokens after ``ids`` (end-of-turn not special: both runtimes run ``n`` steps)."""
    import torch

    out, past, step = [], None, torch.tensor([ids])
    with torch.no_grad():
        for _ in range(n):
            res = model(step, past_key_values=past, use_cache=True)
            past = res.past_key_values
            out.append(int(res.logits[0, -1].argmax()))
            step = torch.tensor([[out[-1]]])
    return out


def llama_cpp_greedy(llm, ids: list[int], n: int = 32) -> list[int]:
    """The same with llama.cpp (a ``llama_cpp.Llama`` made with ``logits_all=True``)."""
    import numpy as np

    llm.reset()
    llm.eval(ids)
    out = []
    for _ in range(n):
        out.append(int(np.argmax(llm.scores[llm.n_tokens - 1])))
        llm.eval([out[-1]])
    return out


def logits(model, ids: list[int]):
    import torch

    with torch.no_grad():
        return model(torch.tensor([ids])).logits[0]
