"""The step's loss computed at trained positions only equals the loss over every position's
logits — value and LoRA gradients — with padding, prompt-only rows and an all-ignored batch."""
from __future__ import annotations

import pytest

from backend.training.data import IGNORE_INDEX
from ray_jobs.worker.losses import install_row_selection, token_loss_sum, trained_loss_sum


@pytest.fixture(scope="module")
def model(tiny_model_dir):
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    base = AutoModelForCausalLM.from_pretrained(str(tiny_model_dir), local_files_only=True)
    config = LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, target_modules=["q_proj", "v_proj"],
                        init_lora_weights=False)  # non-zero B: gradients reach both matrices
    peft = get_peft_model(base, config)
    install_row_selection(peft)
    return peft


def _batch(all_ignored: bool = False):
    import torch

    g = torch.Generator().manual_seed(1)
    ids = torch.randint(5, 2000, (3, 12), generator=g)
    mask = torch.ones_like(ids)
    mask[1, 9:] = 0  # a padded row
    labels = ids.clone()
    labels[:, :4] = IGNORE_INDEX  # the prompt
    labels[1, 9:] = IGNORE_INDEX
    labels[2, :] = IGNORE_INDEX  # a row with nothing trained
    if all_ignored:
        labels[:] = IGNORE_INDEX
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def _grads(model):
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}


@pytest.mark.parametrize("all_ignored", [False, True])
def test_trained_positions_only_give_the_full_loss_and_gradients(model, all_ignored):
    batch = _batch(all_ignored)
    model.zero_grad()
    full = token_loss_sum(model(input_ids=batch["input_ids"],
                                attention_mask=batch["attention_mask"]).logits, batch["labels"])
    full.backward()
    expected = _grads(model)
    model.zero_grad()
    loss = trained_loss_sum(model, model, batch)
    loss.backward()
    assert float(loss) == pytest.approx(float(full), rel=1e-5, abs=1e-6)
    for name, grad in _grads(model).items():
        assert grad.allclose(expected[name], rtol=1e-4, atol=1e-7), name
    if all_ignored:
        assert float(loss) == 0.0


def test_the_selection_is_cleared_after_each_call(model):
    trained_loss_sum(model, model, _batch())
    out = model(input_ids=_batch()["input_ids"]).logits
    assert out.dim() == 3 and out.shape[:2] == (3, 12)  # a plain forward sees every position
