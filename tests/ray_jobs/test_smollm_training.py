"""End to end on the real base model (marker ``real_model``): the product's training recipe (one CPU
worker in process, as the embedded default runs a 1-worker job) trains SmolLM2-135M-Instruct a few
steps on a few demo conversations; the loss falls, and the saved adapter loads with plain
``PeftModel.from_pretrained`` over the installed base folder, names its base by Hugging Face id and
carries its tokenizer, chat template and README."""
from __future__ import annotations

import json

import pytest

from backend.datasets.formats import load_split
from backend.training.data import encode_all
from ray_jobs.driver.recipe import Recipe, train_in_process
from ray_jobs.worker.sinks import CollectingSink
from ray_jobs.worker.state import TrainConfig
from tests.fixtures.paths import REPO

pytestmark = pytest.mark.real_model
DEMO = REPO / "examples" / "demo-support-v4.jsonl"


def _loss(model, encoded) -> float:
    import torch
    import torch.nn.functional as F

    total, count = 0.0, 0
    with torch.no_grad():
        for enc in encoded:
            labels = torch.tensor([enc.labels])
            logits = model(input_ids=torch.tensor([enc.input_ids])).logits[:, :-1].float()
            total += float(F.cross_entropy(logits.reshape(-1, logits.shape[-1]),
                                           labels[:, 1:].reshape(-1), reduction="sum"))
            count += int((labels[:, 1:] != -100).sum())
    return total / count


def test_smollm_learns_a_few_steps_and_the_adapter_loads(smollm_home, smollm_dir, tmp_path):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    data = tmp_path / "six.jsonl"
    data.write_text("".join(DEMO.read_text().splitlines(True)[:6]))
    config = TrainConfig(base_model="smollm2-135m-instruct", learning_rate=2e-3, batch_size=2,
                         num_epochs=3, lora_rank=8, lora_alpha=16, lora_dropout=0.0,
                         max_seq_length=192, validation_fraction=0.0, warmup_ratio=0.1)
    sink = CollectingSink()
    out = tmp_path / "adapter"
    recipe = Recipe(config=config, dataset=str(data), output=str(out), name="smollm",
                    storage_path=str(tmp_path / "runs"), sink_spec=sink, home=str(smollm_home),
                    card={"job_name": "six demo conversations", "preset_id": "custom"})
    threads = torch.get_num_threads()
    try:
        result = train_in_process(recipe).return_value
    finally:
        torch.set_num_threads(threads)

    epochs = [h["training_loss"] for h in result["train_loss_history"]]
    assert len(epochs) == 3 and epochs[-1] < 0.9 * epochs[0], epochs
    assert result["total_steps"] == 9

    adapter_config = json.loads((out / "adapter_config.json").read_text())
    assert adapter_config["base_model_name_or_path"] == "HuggingFaceTB/SmolLM2-135M-Instruct"
    for name in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja", "README.md"):
        assert (out / name).is_file(), name
    assert "six demo conversations" in (out / "README.md").read_text()

    tokenizer = AutoTokenizer.from_pretrained(out)  # the adapter's own tokenizer and template
    train, _ = load_split(str(data), 0.0, 0)
    encoded, _ = encode_all(tokenizer, train, 192)
    base = AutoModelForCausalLM.from_pretrained(smollm_dir, dtype=torch.float32)
    base_loss = _loss(base, encoded)
    model = PeftModel.from_pretrained(base, out)
    assert _loss(model, encoded) < base_loss - 0.2
