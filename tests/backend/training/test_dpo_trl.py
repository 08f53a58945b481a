"""The product's DPO loss and rewards (backend/training/dpo.py) equal TRL's ``DPOTrainer`` on the
same batch: same PEFT model, reference = adapter disabled, sigmoid loss (TRL is a test dependency,
requirements-test.txt)."""
from __future__ import annotations

import pytest

from backend.training.dpo import dpo_loss, metrics_from_stats, pair_stats, policy_and_reference_logps

trl = pytest.importorskip("trl")

ROWS = [{"prompt": "What is 2+2?", "chosen": " 4.", "rejected": " 5, obviously."},
        {"prompt": "Say hi", "chosen": " Hello there!", "rejected": " No."},
        {"prompt": "Capital of France?", "chosen": " Paris.", "rejected": " Berlin, I think, or Rome."}]


@pytest.mark.parametrize("beta", [0.1, 0.5])
def test_loss_and_rewards_equal_trl_dpo_trainer(tmp_path, monkeypatch, beta):
    import torch
    from datasets import Dataset
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from backend.base_models.tiny_model import ensure_tiny_model

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    path = ensure_tiny_model(tmp_path / "home")
    tok = AutoTokenizer.from_pretrained(path)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    torch.manual_seed(0)
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(path),
                           LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"],
                                      task_type="CAUSAL_LM"))
    args = trl.DPOConfig(output_dir=str(tmp_path / "out"), beta=beta, loss_type=["sigmoid"],
                         per_device_train_batch_size=len(ROWS), report_to=[], use_cpu=True,
                         max_length=None)
    trainer = trl.DPOTrainer(model=model, args=args, train_dataset=Dataset.from_list(ROWS),
                             processing_class=tok)
    # TRL keeps the initial adapter (B = 0: the base model) as its "ref" adapter; ours disables
    # the adapter: the same reference. Train-looking weights on the policy adapter only.
    assert set(trainer.model.peft_config) <= {"default", "ref"}
    with torch.no_grad():
        torch.manual_seed(1)
        for name, p in trainer.model.named_parameters():
            if "lora_" in name and ".default." in name:
                p.normal_(0, 0.3)
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(len(ROWS))])
    trainer.model.train()
    trl_loss = float(trainer.compute_loss(trainer.model, batch))
    trl_metrics = {k: v[-1] for k, v in trainer._metrics["train"].items()}

    ours = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"],
            "labels": batch["input_ids"].masked_fill(batch["completion_mask"] == 0, -100)}
    policy, ref = policy_and_reference_logps(trainer.model, trainer.model, ours)
    (pc, pr), (rc, rr) = policy.chunk(2), ref.chunk(2)  # TRL's batch is [chosen…, rejected…]
    losses, chosen, rejected = dpo_loss(pc, pr, rc, rr, beta)
    metrics = metrics_from_stats(pair_stats(losses, chosen, rejected))

    assert abs(trl_metrics["rewards/margins"]) > 1e-3  # the comparison is not 0 == 0
    assert float(losses.mean()) == pytest.approx(trl_loss, abs=1e-5)
    assert metrics["loss"] == pytest.approx(trl_loss, abs=1e-5)
    for key in ("rewards/chosen", "rewards/rejected", "rewards/accuracies", "rewards/margins"):
        assert metrics[key] == pytest.approx(trl_metrics[key], abs=1e-5), key
    assert losses.requires_grad  # the policy side keeps its graph for the backward pass
