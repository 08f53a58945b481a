"""The adapter card: the published base-model name (never a path of this machine) and the README."""
from __future__ import annotations

import json

import pytest

from ray_jobs.worker.adapter_card import public_base_model, render_readme, write_adapter_card


@pytest.fixture
def home(tmp_path):
    """A home with SmolLM2 installed (marker only) and a user-added folder."""
    root = tmp_path / "home" / "base-models"
    (root / "smollm2-135m-instruct").mkdir(parents=True)
    (root / "smollm2-135m-instruct" / "brightrun-base-model.json").write_text(json.dumps(
        {"id": "smollm2-135m-instruct", "hf_id": "HuggingFaceTB/SmolLM2-135M-Instruct"}))
    team = tmp_path / "models" / "team-llama"
    team.mkdir(parents=True)
    (root / "team-llama").mkdir()
    (root / "team-llama" / "brightrun-base-model.json").write_text(json.dumps(
        {"id": "team-llama", "hf_id": None, "path": str(team)}))
    return tmp_path / "home"


@pytest.mark.parametrize("name,expected", [
    ("smollm2-135m-instruct", ("HuggingFaceTB/SmolLM2-135M-Instruct", "smollm2-135m-instruct")),
    ("HuggingFaceTB/SmolLM2-135M-Instruct",
     ("HuggingFaceTB/SmolLM2-135M-Instruct", "smollm2-135m-instruct")),
    ("team-llama", ("team-llama", "team-llama")),
    ("brightrun/tiny-llama", ("brightrun/tiny-llama", None)),
    ("Qwen/Qwen2.5-0.5B", ("Qwen/Qwen2.5-0.5B", None)),
])
def test_public_base_model(home, name, expected):
    assert public_base_model(name, str(home)) == expected


def test_a_folder_path_publishes_only_its_name(home, tmp_path):
    team = str(tmp_path / "models" / "team-llama")
    assert public_base_model(team, str(home)) == ("team-llama", "team-llama")  # installed by path
    other = tmp_path / "elsewhere" / "my-model"
    other.mkdir(parents=True)
    assert public_base_model(str(other), str(home)) == ("my-model", None)


RESULT = {"config": {"lora_rank": 16, "lora_alpha": 32, "lora_dropout": 0.05, "num_epochs": 2,
                     "target_modules": ["q_proj", "v_proj"], "learning_rate": 1e-3,
                     "batch_size": 4, "max_seq_length": 2048},
          "train_loss_history": [{"epoch": 1, "training_loss": 3.5},
                                 {"epoch": 2, "training_loss": 2.5}],
          "final_training_loss": 2.5, "final_validation_loss": 2.9, "best_validation_loss": 2.9,
          "best_epoch": 2, "base_validation_loss": 3.42, "total_steps": 18,
          "total_tokens_processed": 1000, "duration_seconds": 300.0, "workers": 1,
          "device": "cpu", "dataset": {"train_conversations": 36, "validation_conversations": 4}}


def test_readme_says_what_and_how():
    text = render_readme(RESULT, "HuggingFaceTB/SmolLM2-135M-Instruct", "smollm2-135m-instruct",
                         {"job_name": "Support <v1>", "dataset_name": "demo", "dataset_id": "d1",
                          "preset_id": "balanced"})
    assert text.startswith("# Support <v1>\n")
    for part in ("`HuggingFaceTB/SmolLM2-135M-Instruct` (BrightRun base model "
                 "`smollm2-135m-instruct`)", "demo (BrightRun dataset d1): 36 training and 4",
                 "| Preset | balanced |", "3.4200 (base model) → 2.9000",
                 "rank 16, alpha 32", 'AutoModelForCausalLM.from_pretrained("HuggingFaceTB/',
                 "PeftModel.from_pretrained(base, adapter)", "chat_template.jinja",
                 "brightrun base-models list --json"):
        assert part in text, part
    assert "| Quality | good" in text  # against the base model: (3.42 - 2.9) / 3.42 = 15 %, gap 16 %


def test_write_rewrites_the_base_path(tmp_path, home):
    (tmp_path / "adapter_config.json").write_text(json.dumps(
        {"base_model_name_or_path": "/root/.cache/x/smollm2-135m-instruct", "r": 16}))
    sizes = write_adapter_card(tmp_path, RESULT, "smollm2-135m-instruct", str(home), None)
    config = json.loads((tmp_path / "adapter_config.json").read_text())
    assert config == {"base_model_name_or_path": "HuggingFaceTB/SmolLM2-135M-Instruct", "r": 16}
    assert set(sizes) == {"adapter_config.json", "README.md"}
    assert "# LoRA adapter" in (tmp_path / "README.md").read_text()
