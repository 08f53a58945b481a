"""Export time and file sizes per format on SmolLM2-135M-Instruct (issue 24).

    .venv/bin/python bench/export_bench.py [--model-dir DIR]

Builds each export with the product's ``backend.exports.build.build_export`` (the Ray job's work
without the object store) from a LoRA adapter of the balanced preset's shape (rank 16, all seven
projections, random B so that merging changes every targeted weight). Default model folder: the
test cache's install (``~/.cache/brightrun-test/base-models/smollm2-135m-instruct``)."""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import load_average, print_table, set_threads  # noqa: E402

DEFAULT_DIR = Path("~/.cache/brightrun-test/base-models/smollm2-135m-instruct").expanduser()
RUNS = [("merged", None), ("gguf", "f16"), ("gguf", "q8_0"), ("ollama", "f16")]


def make_adapter(base_dir: Path, folder: Path) -> Path:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(base_dir, local_files_only=True)
    peft = get_peft_model(model, LoraConfig(r=16, lora_alpha=32, target_modules=[
        "q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]))
    with torch.no_grad():
        for name, p in peft.named_parameters():
            if "lora_B" in name:
                p.normal_(0.0, 0.01)
    peft.save_pretrained(folder)
    AutoTokenizer.from_pretrained(base_dir, local_files_only=True).save_pretrained(folder)
    return folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model-dir", type=Path, default=DEFAULT_DIR)
    args = parser.parse_args()
    set_threads(2)
    from backend.exports.build import build_export

    info = {"name": "SmolLM2 bench", "version": "v1", "lora_rank": 16,
            "base_model": "HuggingFaceTB/SmolLM2-135M-Instruct", "quality": {}}
    rows = []
    with tempfile.TemporaryDirectory(prefix="export-bench-") as tmp:
        adapter = make_adapter(args.model_dir, Path(tmp) / "adapter")
        for fmt, quant in RUNS:
            out = Path(tmp) / f"{fmt}-{quant}"
            start = time.perf_counter()
            sizes = build_export(fmt, quant, args.model_dir, adapter, out, info)
            seconds = time.perf_counter() - start
            biggest = max(sizes, key=sizes.get)
            rows.append((fmt, quant or "fp32", f"{seconds:.1f}", f"{sum(sizes.values()) / 1e6:.1f}",
                         f"{biggest} {sizes[biggest] / 1e6:.1f} MB", len(sizes)))
    print_table(f"Exports of SmolLM2-135M-Instruct (load average {load_average()})",
                ("format", "weights", "seconds", "total MB", "largest file", "files"), rows)


if __name__ == "__main__":
    main()
