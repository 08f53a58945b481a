"""Acceptance (issue 25): a DPO job on SmolLM2-135M-Instruct with examples/preference-demo.jsonl
raises the held-out reward accuracy above 0.5 and grows the margin; the adapter loads in PEFT."""
from __future__ import annotations

import json
import time

import pytest

from tests.ray_jobs.test_dpo_loop import DEMO, _run

pytestmark = [pytest.mark.real_model, pytest.mark.slow]
CONFIG = {"base_model": "smollm2-135m-instruct", "method": "dpo", "dpo_beta": 0.1,
          "learning_rate": 5e-4, "batch_size": 4, "num_epochs": 2, "lora_rank": 8,
          "lora_alpha": 16, "lora_dropout": 0.0, "max_seq_length": 256, "warmup_steps": 2,
          "validation_fraction": 0.2}


def test_dpo_on_smollm2_learns_the_preferences_of_held_out_pairs(tmp_path, smollm_home):
    import shutil

    shutil.copytree(smollm_home, tmp_path / "home", symlinks=True, dirs_exist_ok=True)
    t0 = time.monotonic()
    result, sink = _run(tmp_path, DEMO, CONFIG)
    history = result["dpo"]["eval_history"]
    print(json.dumps({"seconds": round(time.monotonic() - t0, 1), "device": result["device"],
                      "eval_history": history}, indent=1))
    first, last = history[0], history[-1]
    assert first["eval_rewards/margins"] == pytest.approx(0.0, abs=1e-4)  # adapter B = 0
    assert last["eval_rewards/accuracies"] > 0.5
    assert last["eval_rewards/margins"] > first["eval_rewards/margins"] + 0.1
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(tmp_path / "home" / "base-models" / CONFIG["base_model"])
    assert PeftModel.from_pretrained(base, tmp_path / "adapter").peft_config["default"].r == 8
