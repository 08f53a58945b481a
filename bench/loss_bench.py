"""4. **loss-variants** of bench/train_bench.py (run it as ``python bench/train_bench.py
loss-variants``; the method: that file's docstring): the product's step (output layer only at
trained positions) vs the same step with logits at every position."""
from __future__ import annotations

import argparse
import contextlib
import time

from bench.common import (
    OUT,
    encoded_train,
    interleaved,
    load_average,
    lognormal_dataset,
    model_path,
    product_run,
    product_step,
    train_config,
)


def _full_logits_loss(model, inner, batch):
    """What the step computed before ``ray_jobs.worker.losses.trained_loss_sum``: logits at every
    position (padding, system and user tokens included), then the masked cross-entropy."""
    from ray_jobs.worker.losses import token_loss_sum

    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    return token_loss_sum(logits, batch["labels"])


@contextlib.contextmanager
def loss_variant(run, variant: str):
    from ray_jobs.worker import loop as lw
    original = lw.trained_loss_sum
    if variant == "all positions (before)":
        lw.trained_loss_sum = _full_logits_loss
    try:
        yield
    finally:
        lw.trained_loss_sum = original


def loss_variants(args: argparse.Namespace) -> list[tuple]:
    dataset = lognormal_dataset(OUT / f"lognormal-{args.conversations}.jsonl", args.conversations)
    variants = ("product", "all positions (before)")
    rows, loads = [], [load_average()]
    for name in args.models:
        path = model_path(name)
        cfg = train_config(path)
        tok, encoded = encoded_train(path, dataset, cfg)

        def measure(variant: str) -> dict[str, float]:
            run, batches = product_run(path, cfg, tok, encoded)
            loss = 0.0
            with loss_variant(run, variant):
                wall, cpu = time.perf_counter(), time.process_time()
                for batch in batches[1:1 + args.steps]:
                    loss += product_step(run, batch)[0]
                wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            n = len(batches[1:1 + args.steps])
            return {"wall": wall / n, "cpu": cpu / n, "loss": loss}

        best = interleaved(args.repeat, {v: (lambda v=v: measure(v)) for v in variants})
        loads.append(load_average())
        base = best["product"]
        for v in variants:
            rows.append((f"{name} model", v, f"{1000 * best[v]['wall']:.1f}",
                         f"{1000 * best[v]['cpu']:.1f}", f"{base['cpu'] / best[v]['cpu']:.2f}×",
                         f"{best[v]['loss']:.4f}"))
    print(f"# load average during the runs: {' | '.join(loads)}")
    return rows
