"""Training benchmarks: the product's batching and LoRA step, Ray Train overhead, submit latency.

    python bench/train_bench.py throughput     # 1. effective tokens/s vs a naive HF + PEFT loop
    python bench/train_bench.py ray-overhead   # 2. steady-state step time: Ray Train vs in-process
    python bench/train_bench.py first-metric   # 3. create_job → first metrics_points row
    python bench/train_bench.py loss-variants  # 4. the step's loss: trained positions vs all

Every part prints a markdown table and writes nothing but data under bench/out/ (datasets, the
bigger benchmark model, scratch homes). Each default run takes a few minutes on 2 busy cores.

1. **throughput** — one process, one epoch over the same encoded conversations, the same optimizer
   steps, the same LoRA config and seed. *Product*: ``make_batches`` (length-grouped) +
   ``shard_batches`` + ``worker.loop.optimizer_step`` (collate, forward, token-sum loss, backward,
   clip, AdamW, scheduler) on the model built by ``worker.loop.load_model``. *Naive*: a plain
   PyTorch loop over HF + PEFT — random batches padded to their longest row by
   ``DataCollatorForSeq2Seq``, ``model(**batch).loss``, the same clip/AdamW/linear schedule.
   Effective tokens/s = non-padding tokens ÷ seconds; runs interleaved, best of ``--repeat``.
   Goal: product ≥ 1.5× naive.
2. **ray-overhead** — ``python -m ray_jobs.train_lora --workers 1 --sink jsonl`` (TorchTrainer, one
   worker, its own local Ray) against the product's ``train_loop_per_worker`` called in a plain
   subprocess with the ``ray.train`` calls it makes replaced by single-process equivalents
   (context rank 0 of 1, no checkpoint, ``prepare_model`` = identity, ``report`` = no-op). The same
   config, data and thread count. Steady-state step time = mean interval between the metric points'
   timestamps, skipping 5 warm-up steps and the last step; a wrapper around the loop also adds the
   optimizer step's thread CPU time and the worker process's CPU time to every point (CPU time is
   the steadier clock on a busy machine). Goal: ≤ 5 % overhead.
3. **first-metric** — a Ray head already up (``start_head``), a ready dataset and the tiny model in
   a fresh SQLite home; ``backend.jobs.service.create_job``, then poll the database every 20 ms until the
   first ``metrics_points`` row; ``--jobs`` jobs in a row on the same head, each cancelled after
   its first point. Breakdown from the polled job row (status/stage changes) and from lines
   of the Ray job's log (polled every 0.5 s; they reach the log up to ~1 s late). Goal: ≤ 15 s.
4. **loss-variants** (not a goal) — the product's step (output layer applied only at positions whose
   next label is trained: ``ray_jobs.worker.losses``) against the same step computing logits at every
   position, as it did before. Same batches, same model; per step.

Threads: ``--threads`` (default 1, the thread count Ray gives a 1-CPU worker) is set through
``OMP_NUM_THREADS``/``MKL_NUM_THREADS`` and ``torch.set_num_threads`` for every variant.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from pathlib import Path

_ROOT = str(Path(__file__).resolve().parents[1])
if _ROOT not in sys.path:  # run as ``python bench/train_bench.py``
    sys.path.insert(0, _ROOT)

from bench.common import (  # noqa: E402
    BASE_CONFIG,
    OUT,
    encoded_train,
    interleaved,
    load_average,
    lognormal_dataset,
    model_path,
    print_table,
    product_run,
    product_step,
    set_threads,
    tiny_model,
    train_config,
)
from bench.first_metric_bench import first_metric  # noqa: E402
from bench.loss_bench import loss_variants  # noqa: E402
from bench.ray_overhead_bench import ray_overhead  # noqa: E402


# ----- 1. throughput (2. ray_overhead_bench.py, 3. first_metric_bench.py, 4. loss_bench.py) -----
def product_epoch(path: Path, cfg, tok, encoded) -> dict[str, float]:
    """One epoch with the product's batching and ``optimizer_step``; model load not timed."""
    from backend.training.data import padding_efficiency

    run, batches = product_run(path, cfg, tok, encoded)
    wall, cpu = time.perf_counter(), time.process_time()
    tokens, loss, trained_all = 0, 0.0, 0.0
    for batch in batches:
        loss_sum, real_tokens, trained = product_step(run, batch)
        tokens, loss, trained_all = tokens + real_tokens, loss + loss_sum, trained_all + trained
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return {"wall": wall, "cpu": cpu, "tokens": tokens, "steps": len(batches),
            "loss": loss / trained_all,
            "padding": padding_efficiency(encoded, [b for b, _ in batches])}


def naive_epoch(path: Path, cfg, tok, encoded) -> dict[str, float]:
    """One epoch of the textbook HF + PEFT loop: random batches padded to their longest row."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, DataCollatorForSeq2Seq, get_linear_schedule_with_warmup

    from backend.training.data import padding_efficiency

    order = list(range(len(encoded)))
    random.Random(cfg.seed).shuffle(order)
    batches = [order[i:i + cfg.batch_size] for i in range(0, len(order), cfg.batch_size)]
    torch.manual_seed(cfg.seed)
    model = get_peft_model(
        AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32, local_files_only=True),
        LoraConfig(r=cfg.lora_rank, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
                   target_modules=cfg.target_modules, task_type="CAUSAL_LM"))
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
    sched = get_linear_schedule_with_warmup(opt, cfg.warmup_steps, len(batches) + 1)
    collator = DataCollatorForSeq2Seq(tok, padding="longest", label_pad_token_id=-100,
                                      return_tensors="pt")

    def step(indices: list[int]) -> tuple[int, float]:
        batch = collator([{"input_ids": encoded[i].input_ids, "labels": encoded[i].labels,
                           "attention_mask": [1] * len(encoded[i])} for i in indices])
        loss = model(**batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, cfg.max_grad_norm)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        return int(batch["attention_mask"].sum()), float(loss.detach())

    step(batches[0])  # warm-up, as for the product
    wall, cpu = time.perf_counter(), time.process_time()
    tokens, loss, trained_all = 0, 0.0, 0
    for indices in batches:
        real, mean_loss = step(indices)
        trained = sum(encoded[i].trained_tokens for i in indices)
        tokens, loss, trained_all = tokens + real, loss + mean_loss * trained, trained_all + trained
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return {"wall": wall, "cpu": cpu, "tokens": tokens, "steps": len(batches),
            "loss": loss / trained_all, "padding": padding_efficiency(encoded, batches)}


def throughput(args: argparse.Namespace) -> list[tuple]:
    dataset = lognormal_dataset(OUT / f"lognormal-{args.conversations}.jsonl", args.conversations)
    rows, loads = [], [load_average()]
    for name in args.models:
        path = model_path(name)
        cfg = train_config(path)
        tok, encoded = encoded_train(path, dataset, cfg)
        lengths = sorted(len(e) for e in encoded)
        runs = {"naive": lambda: naive_epoch(path, cfg, tok, encoded),
                "product": lambda: product_epoch(path, cfg, tok, encoded)}
        best = interleaved(args.repeat, runs)
        loads.append(load_average())
        n, p = best["naive"], best["product"]
        assert n["tokens"] == p["tokens"] and n["steps"] == p["steps"], (n, p)
        for clock in ("wall", "cpu"):
            base, cand = n["tokens"] / n[clock], p["tokens"] / p[clock]
            rows.append((f"{name} model, {clock} tokens/s", f"{base:,.0f}", f"{cand:,.0f}",
                         f"{cand / base:.2f}×", "≥ 1.5×"))
        rows.append((f"{name} model: padding efficiency / mean loss",
                     f"{n['padding']:.2f} / {n['loss']:.3f}", f"{p['padding']:.2f} / "
                     f"{p['loss']:.3f}", "", ""))
        print(f"# {name}: {len(encoded)} conversations, {n['tokens']} tokens, {n['steps']} steps,"
              f" lengths p10/p50/p90/max {lengths[len(lengths) // 10]}/{lengths[len(lengths) // 2]}"
              f"/{lengths[9 * len(lengths) // 10]}/{lengths[-1]}; raw {json.dumps(best)}",
              flush=True)
    rows.append(padding_at_scale(args.scale))
    print(f"# load average during the runs: {' | '.join(loads)}")
    return rows


def padding_at_scale(n: int) -> tuple:
    """Padding efficiency of random vs the product's batches on ``n`` conversations (no training):
    a dataset far larger than one sorting window (batch × 50), unlike the timed runs."""
    from backend.training.data import make_batches, padding_efficiency

    path = tiny_model()
    cfg = train_config(path)
    _, encoded = encoded_train(path, lognormal_dataset(OUT / f"lognormal-{n}.jsonl", n), cfg)
    order = list(range(len(encoded)))
    random.Random(cfg.seed).shuffle(order)
    naive = [order[i:i + cfg.batch_size] for i in range(0, len(order), cfg.batch_size)]
    grouped = make_batches(encoded, cfg.batch_size, cfg.seed, 0)
    return (f"padding efficiency at scale ({len(encoded):,} conversations, not timed)",
            f"{padding_efficiency(encoded, naive):.2f}",
            f"{padding_efficiency(encoded, grouped):.2f}", "", "")



# ----- main --------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="part", required=True)
    p1 = sub.add_parser("throughput", help="1. effective tokens/s vs a naive HF + PEFT loop")
    p1.add_argument("--conversations", type=int, default=80)
    p1.add_argument("--models", nargs="+", default=["tiny", "big"], choices=["tiny", "big"])
    p1.add_argument("--repeat", type=int, default=2)
    p1.add_argument("--scale", type=int, default=2000,
                    help="conversations for the (untimed) padding-efficiency-at-scale line")
    p2 = sub.add_parser("ray-overhead", help="2. step time inside Ray Train vs in-process")
    p2.add_argument("--conversations", type=int, default=480)
    p2.add_argument("--models", nargs="+", default=["tiny"], choices=["tiny", "big"])
    p2.add_argument("--batch-size", type=int, default=8)
    p2.add_argument("--repeat", type=int, default=2)
    p3 = sub.add_parser("first-metric", help="3. create_job → first metric point (warm head)")
    p3.add_argument("--conversations", type=int, default=480)
    p3.add_argument("--jobs", type=int, default=3, help="jobs in a row on the same head, per "
                                                        "worker count")
    p3.add_argument("--workers", type=int, nargs="+", default=[1, 2],
                    help="worker counts to time (1 = trained in the job's driver, 2 = Ray Train "
                         "worker group)")
    p3.add_argument("--timeout", type=float, default=180.0)
    p3.add_argument("--keep-logs", action="store_true",
                    help="write each Ray job's log to bench/out/first-metric-jobN.log")
    p4 = sub.add_parser("loss-variants", help="4. the step's loss: trained positions vs all")
    p4.add_argument("--conversations", type=int, default=120)
    p4.add_argument("--models", nargs="+", default=["tiny", "big"], choices=["tiny", "big"])
    p4.add_argument("--steps", type=int, default=6)
    p4.add_argument("--repeat", type=int, default=2)
    for p in (p1, p2, p3, p4):
        p.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    set_threads(args.threads)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ["RAY_AUTH_MODE"] = "disabled"
    started = time.time()
    print(f"# {time.strftime('%Y-%m-%d %H:%M:%S')} {args.part}, {os.cpu_count()} CPUs, load "
          f"{load_average()}", flush=True)
    if args.part == "throughput":
        rows = throughput(args)
        print_table(f"Training throughput — lognormal-{args.conversations}, batch "
                    f"{BASE_CONFIG['batch_size']}, {args.threads} thread(s), best of {args.repeat}",
                    ("measure", "naive (random batches)", "product", "ratio", "goal"), rows)
    elif args.part == "ray-overhead":
        rows = ray_overhead(args)
        print_table(f"Ray Train overhead — lognormal-{args.conversations}, batch "
                    f"{args.batch_size}, 1 worker, {args.threads} thread(s), best of "
                    f"{args.repeat}", ("measure", "in-process", "Ray Train", "overhead", "goal"),
                    rows)
    elif args.part == "loss-variants":
        rows = loss_variants(args)
        print_table(f"Loss variants (what-if) — lognormal-{args.conversations}, batch "
                    f"{BASE_CONFIG['batch_size']}, {args.steps} steps, {args.threads} thread(s), "
                    f"best of {args.repeat}", ("model", "variant", "wall ms/step", "CPU ms/step",
                                               "speed-up (CPU)", "loss sum (same)"), rows)
    else:
        rows = first_metric(args)
        print_table(f"Submit → first metric point — lognormal-{args.conversations}, tiny model, "
                    "balanced preset, 1 worker, SQLite",
                    ("run", "event", "seconds since create_job", "step"), rows)
    print(f"\n# {args.part} took {time.time() - started:.0f}s, load now {load_average()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
