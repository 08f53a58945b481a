"""Helpers shared by the benchmarks: threads, the load average, tables, the benchmark datasets
and models, the product's training step in one process, fresh homes and ready datasets.

Imported as ``bench.common`` (a benchmark run as ``python bench/X.py`` first puts the repository
root on ``sys.path``)."""
from __future__ import annotations

import contextlib
import json
import math
import os
import random
import shutil
import tempfile
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Callable

from bench.gen_synthetic import SYSTEMS, random_text

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench" / "out"
BIG_DIR = OUT / "bench-llama-h256"
BIG_SHAPE = {"hidden_size": 256, "intermediate_size": 1024, "num_hidden_layers": 4,
             "num_attention_heads": 4, "num_key_value_heads": 4}
# The "balanced" preset's LoRA and optimizer values; no warmup (short runs), dropout kept.
BASE_CONFIG = {"learning_rate": 2e-4, "batch_size": 8, "num_epochs": 1, "lora_rank": 16,
               "lora_alpha": 32, "lora_dropout": 0.1, "weight_decay": 0.01, "warmup_steps": 0,
               "max_seq_length": 1024, "validation_fraction": 0.02, "seed": 42}


# ----- threads, load, tables -----------------------------------------------------------------------
def set_threads(n: int) -> None:
    """The same thread count for torch in this process and in every child (Ray workers too)."""
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(n)
    import torch

    torch.set_num_threads(n)


def load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def print_table(title: str, header: tuple, rows: list[tuple]) -> None:
    print(f"\n{title}\n")
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for row in rows:
        print("| " + " | ".join(str(c) for c in row) + " |")


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


# ----- data, models ------------------------------------------------------------------------------
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
                turns.append({"role": "user", "content": random_text(rng, user, user)})
                turns.append({"role": "assistant",
                              "content": random_text(rng, max(4, share - user), max(4, share - user))})
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

    from backend.datasets.formats import load_split
    from backend.training.data import encode_all

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
    (rank 0 of 1, CPU, no checkpoint to restore, each reported checkpoint committed at once)."""
    from unittest import mock

    import ray.train
    import ray.train.torch
    import torch

    kept: list = []  # the checkpoints "reported", each committed at once (one process, no controller)

    def report(metrics, checkpoint=None, checkpoint_dir_name=None, **_):
        if checkpoint is not None:
            kept.append(SimpleNamespace(checkpoint=SimpleNamespace(
                path=str(Path(checkpoint.path).parent / checkpoint_dir_name)
                if checkpoint_dir_name else checkpoint.path)))

    with mock.patch.object(ray.train, "get_context", lambda: _Context()), \
            mock.patch.object(ray.train, "get_checkpoint", lambda: None), \
            mock.patch.object(ray.train, "report", report), \
            mock.patch.object(ray.train, "get_all_reported_checkpoints", lambda **_: list(kept)), \
            mock.patch.object(ray.train.torch, "prepare_model", lambda m, *a, **k: m), \
            mock.patch.object(ray.train.torch, "get_device", lambda: torch.device("cpu")):
        yield


# ----- the product's step in one process --------------------------------------------------------
def product_run(path: Path, cfg, tok, encoded):
    """The worker's ``_Run`` for one process: model from ``load_model``, ``build_optimizer``,
    one warm-up step. Returns (run, this epoch's batches as ``(indices, real)``)."""
    import torch

    from backend.training.data import make_batches, shard_batches
    from ray_jobs.worker import loop as lw
    from ray_jobs.worker.sinks import NullSink
    from ray_jobs.worker.state import Run

    batches = shard_batches(make_batches(encoded, cfg.batch_size, cfg.seed, 0), 0, 1)
    run = Run(cfg=cfg, loop={}, rank=0, world=1, sink=NullSink(), tokenizer=tok,
                  train=list(encoded), total_steps=len(batches) + 1)
    torch.manual_seed(cfg.seed)
    with outside_ray():
        lw.load_model(run, str(path))
    lw.build_optimizer(run)
    product_step(run, batches[0])  # warm-up
    return run, batches


def product_step(run, batch: tuple[list[int], bool]) -> tuple[float, int, float]:
    """One optimizer step as ``_train`` makes it (accumulation 1): (loss sum, real tokens,
    trained tokens)."""
    from ray_jobs.worker import loop as lw
    trained = float(sum(run.train[i].trained_tokens for i in batch[0]))
    loss_sum, real_tokens, _, _ = lw.optimizer_step(run, [batch], trained)
    return loss_sum, real_tokens, trained


# ----- homes -------------------------------------------------------------------------------------
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
