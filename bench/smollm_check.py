"""Acceptance check of a finished SmolLM2 job, outside the product's training code.

Loads the installed base model with plain transformers, measures its validation loss on the job's
held-out split (the trainer's split and encoding: ``load_split`` + ``encode_all``), then loads the
downloaded adapter with plain ``PeftModel.from_pretrained`` over that base folder and measures it
again; compares with the job's recorded final validation loss.

    python bench/smollm_check.py --dataset examples/demo-support-v4.jsonl \
        --adapter /tmp/adapter --recorded 2.96 [--base-model smollm2-135m-instruct]

Prints one JSON object: base_validation_loss, adapter_validation_loss, recorded, difference,
reduction (the relative drop from base to adapter), tokens.
"""
from __future__ import annotations

import argparse
import json
import time


def split_loss(model, encoded) -> tuple[float, int]:
    """Token-mean next-token loss over the trained tokens, one conversation at a time (no padding)."""
    import torch
    import torch.nn.functional as F

    total, count = 0.0, 0
    model.eval()
    with torch.no_grad():
        for enc in encoded:
            ids = torch.tensor([enc.input_ids])
            labels = torch.tensor([enc.labels])
            logits = model(input_ids=ids).logits[:, :-1].float()
            total += float(F.cross_entropy(logits.reshape(-1, logits.shape[-1]),
                                           labels[:, 1:].reshape(-1), ignore_index=-100,
                                           reduction="sum"))
            count += int((labels[:, 1:] != -100).sum())
    return total / count, count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--adapter", required=True, help="the downloaded adapter folder")
    parser.add_argument("--recorded", type=float, help="the job's final validation loss")
    parser.add_argument("--base-model", default="smollm2-135m-instruct")
    parser.add_argument("--max-seq-length", type=int, default=2048)
    parser.add_argument("--validation-fraction", type=float, default=0.1)
    args = parser.parse_args()

    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from backend.base_models.registry import resolve_base_model
    from backend.datasets.formats import load_split
    from backend.training.data import encode_all

    torch.set_num_threads(2)
    folder = resolve_base_model(args.base_model)
    tokenizer = AutoTokenizer.from_pretrained(args.adapter)  # the archive's tokenizer + template
    _, val = load_split(args.dataset, args.validation_fraction, 0)
    encoded, _ = encode_all(tokenizer, val, args.max_seq_length)
    started = time.monotonic()
    base = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    base_loss, tokens = split_loss(base, encoded)
    model = PeftModel.from_pretrained(base, args.adapter)
    adapter_loss, _ = split_loss(model, encoded)
    out = {"base_folder": folder, "validation_conversations": len(encoded), "tokens": tokens,
           "base_validation_loss": round(base_loss, 5), "adapter_validation_loss": round(adapter_loss, 5),
           "reduction": round((base_loss - adapter_loss) / base_loss, 4),
           "seconds": round(time.monotonic() - started, 1)}
    if args.recorded is not None:
        out["recorded"] = args.recorded
        out["difference"] = round(abs(adapter_loss - args.recorded), 6)
        out["reproduced_within_1e-3"] = out["difference"] <= 1e-3
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
