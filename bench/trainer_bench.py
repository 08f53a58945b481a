"""Effective tokens/s on SmolLM2-135M-Instruct: the product's training loop against a real
``transformers.Trainer`` with length grouping (``train_sampling_strategy="group_by_length"``).

    python bench/trainer_bench.py [--dataset examples/demo-support-v4.jsonl] [--repeat 2]

Both variants in this one process, interleaved (trainer, product, product, trainer, …), on the
same encoded conversations (the trainer's split and ``encode_all``, so the same assistant-only
labels), the same model folder (``smollm2-135m-instruct``, installed first if needed), the same LoRA
config (the balanced preset: r16/alpha 32/dropout 0.05 on q/k/v/o; lr 1e-3, no warmup, AdamW,
linear decay, clip 1.0), batch 4, one epoch = the same number of optimizer steps, float32 on
``--threads`` CPU threads (default 1: what the product's in-process worker uses).

*Product*: ``make_batches`` (length-grouped windows) + ``worker.loop.optimizer_step`` (logits only
at trained positions) on the model of ``worker.loop.load_model`` (bench/train_bench.py's
``product_epoch``). *Trainer*: ``Trainer(…).train()`` with ``DataCollatorForSeq2Seq`` padding each
batch to its longest row, ``LengthGroupedSampler``, ``model(**batch).loss``, no logging, saving or
evaluation. Timed: from the end of the first optimizer step to the end of the last (the first step
is warm-up in the Trainer; the product's ``product_epoch`` runs one untimed warm-up step, then times
the whole epoch); tokens = non-padding tokens of the timed steps. Effective tokens/s = those tokens
÷ wall (and ÷ CPU) seconds; best of ``--repeat``.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.common import (  # noqa: E402
    encoded_train,
    interleaved,
    load_average,
    print_table,
    set_threads,
    train_config,
)
from bench.train_bench import product_epoch  # noqa: E402

SMOLLM = "smollm2-135m-instruct"
LORA = {"learning_rate": 1e-3, "batch_size": 4, "lora_rank": 16, "lora_alpha": 32,
        "lora_dropout": 0.05, "weight_decay": 0.0, "warmup_steps": 0, "max_seq_length": 2048,
        "validation_fraction": 0.1, "validation_seed": 0}


def trainer_epoch(path: Path, cfg, tok, encoded) -> dict[str, float]:
    """One epoch of ``transformers.Trainer`` with ``group_by_length`` sampling."""
    import tempfile

    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import (
        AutoModelForCausalLM,
        DataCollatorForSeq2Seq,
        Trainer,
        TrainerCallback,
        TrainingArguments,
    )

    torch.manual_seed(cfg.seed)
    model = get_peft_model(
        AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32, local_files_only=True),
        LoraConfig(r=cfg.lora_rank, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
                   target_modules=cfg.target_modules, task_type="CAUSAL_LM"))
    rows = [{"input_ids": e.input_ids, "labels": e.labels, "attention_mask": [1] * len(e)}
            for e in encoded]
    base_collator = DataCollatorForSeq2Seq(tok, padding="longest", label_pad_token_id=-100,
                                           return_tensors="pt")
    tokens: list[int] = []  # non-padding tokens of each batch, in step order
    padded: list[int] = []  # rows x longest row

    def collate(features):
        batch = base_collator(features)
        tokens.append(int(batch["attention_mask"].sum()))
        padded.append(int(batch["attention_mask"].numel()))
        return batch

    marks: list[tuple[float, float]] = []

    class Clock(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            marks.append((time.perf_counter(), time.process_time()))

    with tempfile.TemporaryDirectory(prefix="brightrun-trainer-bench-") as out:
        args = TrainingArguments(
            output_dir=out, per_device_train_batch_size=cfg.batch_size, num_train_epochs=1,
            learning_rate=cfg.learning_rate, weight_decay=cfg.weight_decay,
            lr_scheduler_type="linear", warmup_steps=0, max_grad_norm=cfg.max_grad_norm,
            train_sampling_strategy="group_by_length", logging_strategy="no",
            save_strategy="no", eval_strategy="no", report_to=[], use_cpu=True,
            dataloader_num_workers=0, remove_unused_columns=False, seed=cfg.seed,
            disable_tqdm=True)
        trainer = Trainer(model=model, args=args, train_dataset=rows, data_collator=collate,
                          callbacks=[Clock()])
        result = trainer.train()
    steps = len(marks)
    assert steps == len(tokens), (steps, len(tokens))
    wall = marks[-1][0] - marks[0][0]
    cpu = marks[-1][1] - marks[0][1]
    return {"wall": wall, "cpu": cpu, "tokens": sum(tokens[1:]), "steps": steps - 1,
            "loss": float(result.training_loss), "padding": sum(tokens) / sum(padded)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default=str(ROOT / "examples" / "demo-support-v4.jsonl"))
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    set_threads(args.threads)
    from backend.base_models.catalog import install_model

    started = time.time()
    print(f"# {time.strftime('%Y-%m-%d %H:%M:%S')} trainer-vs-product, load {load_average()}",
          flush=True)
    path = Path(install_model(SMOLLM)["path"])
    cfg = train_config(path, **LORA)
    tok, encoded = encoded_train(path, Path(args.dataset), cfg)
    lengths = sorted(len(e) for e in encoded)
    print(f"# {len(encoded)} training conversations, lengths p50/max {lengths[len(lengths) // 2]}"
          f"/{lengths[-1]}", flush=True)
    best = interleaved(args.repeat, {
        "trainer": lambda: trainer_epoch(path, cfg, tok, encoded),
        "product": lambda: product_epoch(path, cfg, tok, encoded)})
    t, p = best["trainer"], best["product"]
    rows = []
    for clock in ("wall", "cpu"):
        base, cand = t["tokens"] / t[clock], p["tokens"] / p[clock]
        rows.append((f"SmolLM2, {clock} tokens/s", f"{base:,.0f}", f"{cand:,.0f}",
                     f"{cand / base:.2f}×"))
    rows.append(("timed steps / tokens", f"{t['steps']} / {t['tokens']:,.0f}",
                 f"{p['steps']} / {p['tokens']:,.0f}", ""))
    rows.append(("padding efficiency / training loss (Trainer: mean of batch means; product: "
                 "token mean)", f"{t['padding']:.2f} / {t['loss']:.3f}",
                 f"{p['padding']:.2f} / {p['loss']:.3f}", ""))
    print_table(f"Product loop vs transformers.Trainer (group_by_length) — {Path(args.dataset).name},"
                f" batch 4, {args.threads} thread(s), best of {args.repeat}",
                ("measure", "Trainer (group_by_length)", "product", "ratio"), rows)
    print(f"\n# took {time.time() - started:.0f}s, load now {load_average()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
