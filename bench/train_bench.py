"""Training benchmarks: the product's batching and LoRA step, Ray Train overhead, submit latency.

    python bench/train_bench.py throughput     # 1. effective tokens/s vs a naive HF + PEFT loop
    python bench/train_bench.py ray-overhead   # 2. steady-state step time: Ray Train vs in-process
    python bench/train_bench.py first-metric   # 3. create_job → first metrics_points row
    python bench/train_bench.py loss-variants  # 4. the step's loss: trained positions vs all

Every part prints a markdown table and writes nothing but data under bench/out/ (datasets, the
bigger benchmark model, scratch homes). Each default run takes a few minutes on 2 busy cores.

1. **throughput** — one process, one epoch over the same encoded conversations, the same optimizer
   steps, the same LoRA config and seed. *Product*: ``make_batches`` (length-grouped) +
   ``shard_batches`` + ``lora_worker._optimizer_step`` (collate, forward, token-sum loss, backward,
   clip, AdamW, scheduler) on the model built by ``lora_worker._load_model``. *Naive*: a plain
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
import contextlib
import json
import math
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.gen_synthetic import SYSTEMS, _text  # noqa: E402

OUT = ROOT / "bench" / "out"
BIG_DIR = OUT / "bench-llama-h256"
BIG_SHAPE = {"hidden_size": 256, "intermediate_size": 1024, "num_hidden_layers": 4,
             "num_attention_heads": 4, "num_key_value_heads": 4}
# The "balanced" preset's LoRA and optimizer values; no warmup (short runs), dropout kept.
BASE_CONFIG = {"learning_rate": 2e-4, "batch_size": 8, "num_epochs": 1, "lora_rank": 16,
               "lora_alpha": 32, "lora_dropout": 0.1, "weight_decay": 0.01, "warmup_steps": 0,
               "max_seq_length": 1024, "validation_fraction": 0.02, "seed": 42}


# ----- shared: threads, data, models -------------------------------------------------------------
def set_threads(n: int) -> None:
    """The same thread count for torch in this process and in every child (Ray workers too)."""
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(n)
    import torch

    torch.set_num_threads(n)


def load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def lognormal_dataset(path: Path, n: int, seed: int = 0, median_words: float = 110.0,
                      sigma: float = 0.8) -> Path:
    """``n`` support-chat conversations (v4 JSONL) whose word count is log-normal (median
    ``median_words``, shape ``sigma``): mostly short chats and a long tail, as real chat data.
    The tiny tokenizer makes ~2.4 tokens a word plus ~10 per turn. Deterministic; kept if
    present."""
    if path.exists():
        return path
    rng = random.Random(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    with tmp.open("w", encoding="utf-8") as fh:
        for i in range(n):
            words = int(min(700, max(12, rng.lognormvariate(math.log(median_words), sigma))))
            exchanges = max(1, min(4, words // 60 + rng.randint(0, 1)))
            turns = [{"role": "system", "content": rng.choice(SYSTEMS)}] \
                if rng.random() < 0.7 else []
            for _ in range(exchanges):
                share = words // exchanges
                user = max(4, share * 3 // 10)
                turns.append({"role": "user", "content": _text(rng, user, user)})
                turns.append({"role": "assistant",
                              "content": _text(rng, max(4, share - user), max(4, share - user))})
            fh.write(json.dumps({"conversation_id": f"ln-{i:06d}", "turns": turns}) + "\n")
    tmp.replace(path)
    return path


def tiny_model() -> Path:
    from backend.base_models.tiny_model import ensure_tiny_model

    return ensure_tiny_model(OUT / "home")


def big_model() -> Path:
    """A random-init Llama (hidden 256, 4 layers, MLP 1024; ~5M parameters) with the tiny model's
    tokenizer, built once into bench/out/ (benchmarks only: big enough for padding to cost)."""
    if (BIG_DIR / "model.safetensors").exists():
        return BIG_DIR
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tok = AutoTokenizer.from_pretrained(tiny_model(), local_files_only=True)
    config = LlamaConfig(vocab_size=len(tok), max_position_embeddings=2048, rms_norm_eps=1e-5,
                         tie_word_embeddings=True, bos_token_id=tok.bos_token_id,
                         eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id, **BIG_SHAPE)
    torch.manual_seed(0)
    tmp = BIG_DIR.with_name(BIG_DIR.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    LlamaForCausalLM(config).save_pretrained(tmp)
    tok.save_pretrained(tmp)
    tmp.rename(BIG_DIR)
    return BIG_DIR


def model_path(name: str) -> Path:
    return {"tiny": tiny_model, "big": big_model}[name]()


def train_config(path: Path, **overrides: Any):
    from ray_jobs.worker.loop import TrainConfig

    return TrainConfig(**{**BASE_CONFIG, "base_model": str(path), **overrides})


def encoded_train(path: Path, dataset: Path, cfg):
    """(tokenizer, encoded training split) exactly as the worker's ``_load_data`` builds them."""
    from transformers import AutoTokenizer

    from backend.training.data import encode_all, load_split

    tok = AutoTokenizer.from_pretrained(path, local_files_only=True)
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    train, _ = load_split(dataset, cfg.validation_fraction, cfg.validation_seed)
    encoded, _ = encode_all(tok, train, cfg.max_seq_length)
    return tok, encoded


class _Context:
    def get_world_rank(self) -> int:
        return 0

    def get_world_size(self) -> int:
        return 1

    def get_local_rank(self) -> int:
        return 0


@contextlib.contextmanager
def outside_ray():
    """Replace the ``ray.train`` calls the worker loop makes by their single-process meaning
    (rank 0 of 1, CPU, no checkpoint to restore, ``report`` does nothing)."""
    from unittest import mock

    import ray.train
    import ray.train.torch
    import torch

    with mock.patch.object(ray.train, "get_context", lambda: _Context()), \
            mock.patch.object(ray.train, "get_checkpoint", lambda: None), \
            mock.patch.object(ray.train, "report", lambda *a, **k: None), \
            mock.patch.object(ray.train.torch, "prepare_model", lambda m, *a, **k: m), \
            mock.patch.object(ray.train.torch, "get_device", lambda: torch.device("cpu")):
        yield


# ----- 1. throughput -----------------------------------------------------------------------------
def product_run(path: Path, cfg, tok, encoded):
    """The worker's ``_Run`` for one process: model from ``_load_model``, ``_build_optimizer``,
    one warm-up step. Returns (run, this epoch's batches as ``(indices, real)``)."""
    import torch

    from backend.training.data import make_batches, shard_batches
    from ray_jobs.driver.sinks import NullSink
    from ray_jobs.worker import loop as lw

    batches = shard_batches(make_batches(encoded, cfg.batch_size, cfg.seed, 0), 0, 1)
    run = lw._Run(cfg=cfg, loop={}, rank=0, world=1, sink=NullSink(), tokenizer=tok,
                  train=list(encoded), total_steps=len(batches) + 1)
    torch.manual_seed(cfg.seed)
    with outside_ray():
        lw._load_model(run, str(path))
    lw._build_optimizer(run)
    product_step(run, batches[0])  # warm-up
    return run, batches


def product_step(run, batch: tuple[list[int], bool]) -> tuple[float, int, float]:
    """One optimizer step as ``_train`` makes it (accumulation 1): (loss sum, real tokens,
    trained tokens)."""
    from ray_jobs.worker import loop as lw
    trained = float(sum(run.train[i].trained_tokens for i in batch[0]))
    loss_sum, real_tokens, _, _ = lw._optimizer_step(run, [batch], trained)
    return loss_sum, real_tokens, trained


def product_epoch(path: Path, cfg, tok, encoded) -> dict[str, float]:
    """One epoch with the product's batching and ``_optimizer_step``; model load not timed."""
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


def interleaved(repeat: int, runs: dict[str, Callable[[], dict]]) -> dict[str, dict]:
    """Run each variant ``repeat`` times, alternating; keep each one's fastest run (wall) and its
    lowest CPU time."""
    best: dict[str, dict] = {}
    for r in range(repeat):
        for name, fn in (runs.items() if r % 2 == 0 else reversed(list(runs.items()))):
            out = fn()
            print(f"#   {name} run {r + 1}: wall {out['wall']:.2f}s cpu {out['cpu']:.2f}s "
                  f"load {load_average()}", flush=True)
            if name not in best:
                best[name] = out
            else:
                best[name] = {**out, "wall": min(best[name]["wall"], out["wall"]),
                              "cpu": min(best[name]["cpu"], out["cpu"])}
    return best


# ----- 2. Ray Train overhead --------------------------------------------------------------------
def recipe_args(config_file: Path, dataset: Path, work: Path, sink_path: Path) -> list[str]:
    """The recipe's command line (``python -m ray_jobs.train_lora``), one worker, jsonl sink."""
    return ["--config", str(config_file), "--dataset", str(dataset), "--workers", "1", "--ray-train",
            "--output", str(work / "adapter"), "--storage-path", str(work / "ray_results"),
            "--name", "bench", "--sink", json.dumps({"kind": "jsonl", "path": str(sink_path)})]


def instrumented_loop(loop_config: dict[str, Any]):
    """The product's ``train_loop_per_worker`` with two CPU clocks added to every metric point:
    ``bench_step_cpu_s`` (CPU time of the thread running ``_optimizer_step``, that step only) and
    ``bench_process_cpu_s`` (CPU time of the whole worker process so far: Ray's threads too)."""
    from ray_jobs.driver import sinks
    from ray_jobs.worker import loop as lw
    step_cpu = [0.0]
    optimizer_step, add = lw._optimizer_step, sinks.MetricBuffer.add

    def timed_step(*a, **k):
        t = time.thread_time()
        out = optimizer_step(*a, **k)
        step_cpu[0] = time.thread_time() - t
        return out

    def add_with_cpu(self, point, progress=None):
        return add(self, {**point, "bench_step_cpu_s": step_cpu[0],
                          "bench_process_cpu_s": time.process_time()}, progress)

    lw._optimizer_step, sinks.MetricBuffer.add = timed_step, add_with_cpu
    try:
        return lw.train_loop_per_worker(loop_config)
    finally:
        lw._optimizer_step, sinks.MetricBuffer.add = optimizer_step, add


def child_inproc(argv: list[str]) -> int:
    """The product's ``train_loop_per_worker`` in this process, with the loop config the recipe
    builds, and the ``ray.train`` calls replaced by their single-process meaning."""
    from bench import train_bench
    from ray_jobs import train_lora
    from ray_jobs.driver import recipe as recipe_mod

    recipe = train_lora.setup(train_lora.build_parser().parse_args(argv))
    with outside_ray():
        result = train_bench.instrumented_loop(recipe_mod.loop_config(recipe))
    return 0 if result else 1


def child_ray(argv: list[str]) -> int:
    """The recipe as ``python -m ray_jobs.train_lora`` runs it, on a fresh local Ray of its own
    (own temp dir: never joins another engineer's cluster)."""
    import ray

    from bench import train_bench
    from ray_jobs import train_lora
    from ray_jobs.driver import recipe
    recipe.train_loop_per_worker = train_bench.instrumented_loop  # what TorchTrainer runs
    temp = tempfile.mkdtemp(prefix="brt-bench-", dir="/tmp")
    try:
        ray.init(num_cpus=2, include_dashboard=False, _temp_dir=temp)
        return train_lora.main(argv)
    finally:
        ray.shutdown()
        shutil.rmtree(temp, ignore_errors=True)


def run_variant(kind: str, config_file: Path, dataset: Path) -> dict[str, Any]:
    """Run one variant in a child process; returns its steady-state step statistics."""
    work = Path(tempfile.mkdtemp(prefix=f"ray-overhead-{kind}-", dir=OUT))
    sink = work / "progress.jsonl"
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS",
                                                            "RAY_API_SERVER_ADDRESS")}
    env.update(RAY_AUTH_MODE="disabled", PYTHONPATH=str(ROOT), HF_HUB_OFFLINE="1",
               RAY_USAGE_STATS_ENABLED="0", BRIGHTRUN_HOME=str(OUT / "home"))
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, __file__, f"_child-{kind}",
                           *recipe_args(config_file, dataset, work, sink)],
                          cwd=ROOT, env=env, capture_output=True, text=True)
    total = time.perf_counter() - started
    if proc.returncode != 0:
        raise RuntimeError(f"{kind} run failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    points = [p for line in sink.read_text().splitlines()
              for p in (json.loads(line).get("points") or [])]
    shutil.rmtree(work, ignore_errors=True)
    return {"total_s": total, **steady_state(points)}


def steady_state(points: list[dict], skip: int = 5) -> dict[str, float]:
    """Per step, over the steady state (after ``skip`` warm-up steps, without the last step, which
    holds the final evaluation and checkpoint): mean and median interval between the metric points'
    timestamps (wall), CPU time of the optimizer step's thread, CPU time of the worker process."""
    from datetime import datetime

    kept = sorted(points, key=lambda p: p["step"])[skip:-1]
    stamps = [datetime.fromisoformat(p["timestamp"]).timestamp() for p in kept]
    intervals = [b - a for a, b in zip(stamps, stamps[1:])]
    n = len(intervals)
    step_cpu = sum(p["bench_step_cpu_s"] for p in kept[1:]) / n
    process_cpu = (kept[-1]["bench_process_cpu_s"] - kept[0]["bench_process_cpu_s"]) / n
    return {"steps": n, "step_s": (stamps[-1] - stamps[0]) / n,
            "median_step_s": statistics.median(intervals), "step_cpu_s": step_cpu,
            "process_cpu_s": process_cpu, "other_cpu_s": process_cpu - step_cpu}


def ray_overhead(args: argparse.Namespace) -> list[tuple]:
    dataset = lognormal_dataset(OUT / f"lognormal-{args.conversations}.jsonl", args.conversations)
    rows, loads = [], [load_average()]
    for name in args.models:
        path = model_path(name)
        config_file = OUT / f"ray-overhead-{name}.json"
        config_file.write_text(json.dumps({**BASE_CONFIG, "base_model": str(path),
                                           "batch_size": args.batch_size}))
        runs = {"in-process": [], "ray": []}
        for r in range(args.repeat):
            for kind in (("inproc", "ray") if r % 2 == 0 else ("ray", "inproc")):
                out = run_variant(kind, config_file, dataset)
                runs["ray" if kind == "ray" else "in-process"].append(out)
                print(f"#   {name} {kind} run {r + 1}: {json.dumps(out)} load {load_average()}",
                      flush=True)
        loads.append(load_average())
        base = {k: min(o[k] for o in runs["in-process"]) for k in runs["in-process"][0]}
        ray = {k: min(o[k] for o in runs["ray"]) for k in runs["ray"][0]}
        for key, label in (("step_s", "mean step interval (wall)"),
                           ("median_step_s", "median step interval (wall)"),
                           ("step_cpu_s", "optimizer step, thread CPU"),
                           ("process_cpu_s", "worker process CPU per step"),
                           ("other_cpu_s", "worker CPU outside the optimizer step")):
            rows.append((f"{name} model, {label}, ms", f"{1000 * base[key]:.1f}",
                         f"{1000 * ray[key]:.1f}",
                         f"{100 * (ray[key] / base[key] - 1):+.1f} %" if key != "other_cpu_s"
                         else f"{100 * ray[key] / ray['step_cpu_s']:.1f} % of a step",
                         "≤ +5 %" if key in ("step_s", "process_cpu_s") else ""))
        rows.append((f"{name} model, whole command, s", f"{base['total_s']:.1f}",
                     f"{ray['total_s']:.1f}", "", "(startup included)"))
    print(f"# load average during the runs: {' | '.join(loads)}")
    return rows


# ----- 3. submit → first metric point ------------------------------------------------------------
def fresh_home(prefix: str) -> Path:
    """A new SQLite + local-object home under bench/out/ with the tiny model linked in."""
    from backend.core.config import reset_settings
    from backend.db.session import dispose_engines

    OUT.mkdir(parents=True, exist_ok=True)
    home = Path(tempfile.mkdtemp(prefix=prefix, dir=OUT))
    (home / "models").mkdir()
    os.symlink(tiny_model(), home / "models" / "tiny-llama")
    os.environ["BRIGHTRUN_HOME"] = str(home)
    for var in ("BRIGHTRUN_DATABASE_URL", "BRIGHTRUN_STORAGE_URL", "BRIGHTRUN_AUTH",
                "BRIGHTRUN_USER", "BRIGHTRUN_PASSWORD", "RAY_ADDRESS", "RAY_API_SERVER_ADDRESS"):
        os.environ.pop(var, None)
    reset_settings()
    dispose_engines()
    return home


def ready_dataset(user, path: Path):
    """Upload ``path`` and validate it in this process (no Ray): a ``ready`` dataset."""
    from backend.datasets import service as datasets

    with path.open("rb") as fh:
        info = datasets.upload_dataset(user, fh, path.name, "bench", size=path.stat().st_size,
                                       submit=False)
    info = datasets.run_validation(info.id)
    assert info.status == "ready", info
    return info


def job_snapshot(job_id: str) -> tuple[str, str | None, int]:
    from sqlalchemy import func, select

    from backend.db.models import MetricsPoint, TrainingJob
    from backend.db.session import session_scope

    with session_scope() as s:
        row = s.get(TrainingJob, job_id)
        points = s.scalar(select(func.count()).select_from(MetricsPoint)
                          .where(MetricsPoint.job_id == job_id))
        return row.status, row.current_stage, int(points or 0)


LOG_MARKERS = (("Running entrypoint", "Ray runs the driver (runtime env ready)"),
               ("Connected to Ray cluster", "driver joined the cluster (recipe read, "
                                            "Ray Train imported)"),
               ("Started training worker group", "worker group started"),
               ("Moving model to device", "worker loaded the model (prepare_model)"))


def time_first_metric(user, dataset_id: str, overrides: list[str], timeout_s: float,
                      log_to: Path | None = None, workers: int = 1) -> dict[str, float]:
    """create_job, then poll the job row every 20 ms; seconds from the call to each change."""
    from backend.cluster.gateway import get_gateway
    from backend.jobs import service as jobs

    submit_job, submitted = jobs.submit_job, {}

    def timed_submit(job_id: str):
        submitted["start"] = time.perf_counter() - t0
        try:
            return submit_job(job_id)
        finally:
            submitted["end"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    jobs.submit_job = timed_submit
    try:
        job = jobs.create_job(user, dataset_id, preset_id="balanced", overrides=overrides,
                              hardware_id="cpu-local", workers=workers)
    finally:
        jobs.submit_job = submit_job
    marks = {"checks + estimate + job row (create_job before submit)": submitted["start"],
             "Ray Job API submit returned": submitted["end"],
             "create_job returned": time.perf_counter() - t0}
    last, sub, seen, polls = None, jobs.get_job(user, job.id).external_job_id, set(), 0
    while time.perf_counter() - t0 < timeout_s:
        status, stage, points = job_snapshot(job.id)
        now = time.perf_counter() - t0
        if (status, stage) != last:
            marks.setdefault(f"job row: status {status} / stage {stage}", now)
            last = (status, stage)
        if points or status in ("failed", "cancelled", "completed"):
            marks["first metrics_points row" if points else f"ended {status}"] = now
            break
        polls += 1
        if sub and polls % 25 == 0:  # the Ray job's log, every ~0.5 s (lines arrive ~1 s late)
            text = get_gateway().logs(sub)
            for marker, label in LOG_MARKERS:
                if marker in text and marker not in seen:
                    seen.add(marker)
                    marks[f"log: {label}"] = now
        time.sleep(0.02)
    marks = dict(sorted(marks.items(), key=lambda kv: kv[1]))
    if jobs.get_job(user, job.id).status not in ("failed", "cancelled", "completed"):
        jobs.cancel_job(user, job.id)
    if sub:
        get_gateway().wait(sub, timeout_s=120)
        if log_to:
            log_to.write_text(get_gateway().logs(sub))
    return marks


def setup_parts(dataset: Path) -> dict[str, float]:
    """Seconds this process takes for the worker's setup pieces (an estimate of their share)."""
    path = tiny_model()
    cfg = train_config(path, max_seq_length=2048, validation_fraction=0.1)  # the preset's values
    t = time.perf_counter()
    tok, encoded = encoded_train(path, dataset, cfg)
    t_data = time.perf_counter() - t
    from ray_jobs.driver.sinks import NullSink
    from ray_jobs.worker import loop as lw

    run = lw._Run(cfg=cfg, loop={}, rank=0, world=1, sink=NullSink(), tokenizer=tok,
                  train=encoded, total_steps=100)
    t = time.perf_counter()
    with outside_ray():
        lw._load_model(run, str(path))
    return {"tokenise dataset (in this process)": t_data,
            "load model + PEFT wrap (in this process)": time.perf_counter() - t}


def first_metric(args: argparse.Namespace) -> list[tuple]:
    from backend.accounts.users import ensure_local_user
    from backend.cluster.gateway import free_ports, start_head, stop_head

    dataset = lognormal_dataset(OUT / f"lognormal-{args.conversations}.jsonl", args.conversations)
    home = fresh_home("first-metric-")
    temp = Path(tempfile.mkdtemp(prefix="brt-bench-", dir="/tmp"))
    head = start_head(temp, free_ports(1)[0], num_cpus=2)
    rows: list[tuple] = []
    try:
        os.environ.update(RAY_ADDRESS=head.address, RAY_AUTH_MODE="disabled")
        from backend.core.config import reset_settings

        reset_settings()
        user = ensure_local_user()
        ds = ready_dataset(user, dataset)
        overrides = ["num_epochs=1", "warmup_steps=0"]
        runs = [(w, i) for w in args.workers for i in range(args.jobs)]
        for n, (workers, i) in enumerate(runs):
            marks = time_first_metric(user, ds.id, overrides, args.timeout,
                                      OUT / f"first-metric-w{workers}-job{i + 1}.log"
                                      if args.keep_logs else None, workers=workers)
            print(f"#   {workers} worker(s), job {i + 1}: {json.dumps(marks)} "
                  f"load {load_average()}", flush=True)
            label = (f"{workers} worker(s): " + ("first job on the new head" if n == 0
                                                 else f"job {i + 1} (warm head)"))
            previous = 0.0
            for what, at in marks.items():
                rows.append((label, what, f"{at:.2f}", f"+{at - previous:.2f}"))
                previous = at
        for what, secs in setup_parts(dataset).items():
            rows.append(("for reference", what, "", f"{secs:.2f}"))
    finally:
        stop_head(head)
        shutil.rmtree(temp, ignore_errors=True)
        shutil.rmtree(home, ignore_errors=True)
    return rows


# ----- 4. the loss: output layer at trained positions only vs every position -------------------
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


# ----- main --------------------------------------------------------------------------------------
def print_table(title: str, header: tuple, rows: list[tuple]) -> None:
    print(f"\n{title}\n")
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for row in rows:
        print("| " + " | ".join(str(c) for c in row) + " |")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in ("_child-inproc", "_child-ray"):
        set_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
        return (child_inproc if argv[0] == "_child-inproc" else child_ray)(argv[1:])
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
