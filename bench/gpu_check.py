"""GPU check that fits a short device lease: the product's training loop against transformers'
Trainer, and the estimator's memory prediction against the measured peak.

    python3 bench/gpu_check.py --out $OUT/gpu_check.json            # on a GPU machine
    python3 bench/gpu_check.py --smoke --out /tmp/gpu_check.json     # tiny model, CPU (CI test)

What it does, in one process:
1. builds a base model from a config with random weights (a ~1 B Llama: hidden 2048, 16 layers,
   32 heads / 8 KV heads, MLP 8192 — Llama-3.2-1B's shape — with the tiny model's tokenizer, so
   nothing is downloaded; speed and memory do not need trained weights) and a synthetic
   conversation dataset whose lengths spread from a quarter of the sequence length to beyond it;
2. for each configuration (sequence length x gradient checkpointing) trains with
   - the product's per-worker loop (``ray_jobs.worker.loop.train_loop_per_worker``) run in this
     process by a runtime that puts it on the GPU (:class:`DeviceRuntime`; checkpoints are not
     persisted, so pyarrow is not needed), as a GPU job (``use_gpu``: bf16 base weights, fp32 LoRA);
   - ``transformers.Trainer`` with ``bf16`` and length grouping on the same model, LoRA and
     tokenised data;
   measuring tokens/s (non-padding tokens over the wall time between the ends of the steps after
   the first two, with the device synchronised) and the peak allocated memory
   (``torch.cuda.max_memory_allocated``);
3. predicts the memory with the product's estimator (``backend.training.estimation.vram``) and
   writes everything as JSON.

Needs torch, transformers, peft, accelerate, safetensors, tokenizers — and pydantic (the loop's
config) with pydantic_core, annotated_types, typing_extensions and typing_inspection. A machine
without pydantic gets them from ``.vendor`` (see ``bench/gpu_vendor.sh``: wheels for the
machine's Python version, unpacked there and carried with the tree). No Ray, SQLAlchemy or pyarrow.
"""
from __future__ import annotations

import argparse
import gc
import json
import platform
import random
import statistics
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
VENDOR = REPO / ".vendor"  # pydantic & co. for a bare GPU machine (bench/gpu_vendor.sh)
sys.path[:0] = [str(REPO)] + ([str(VENDOR)] if VENDOR.is_dir() else [])

LLAMA_1B = {"hidden_size": 2048, "num_hidden_layers": 16, "num_attention_heads": 32,
            "num_key_value_heads": 8, "intermediate_size": 8192,
            "max_position_embeddings": 8192, "rope_theta": 500000.0, "rms_norm_eps": 1e-5,
            "tie_word_embeddings": True}
TINY = {"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
        "num_key_value_heads": 4, "intermediate_size": 256, "max_position_embeddings": 2048,
        "tie_word_embeddings": True}
# (name, max_seq_length, gradient checkpointing): with and without, two sequence lengths
CONFIGS = (("seq1024", 1024, False), ("seq1024-ckpt", 1024, True), ("seq4096-ckpt", 4096, True))
SMOKE_CONFIGS = (("seq128", 128, False), ("seq128-ckpt", 128, True), ("seq256-ckpt", 256, True))
LORA = {"lora_rank": 16, "lora_alpha": 32, "lora_dropout": 0.05,
        "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj"]}
WARMUP_STEPS = 2  # steps left out of tokens/s (allocator and kernel warm-up)


def check_imports() -> None:
    """Exit 2 with what to carry when the loop's pure-Python dependencies are missing."""
    missing = []
    for name in ("torch", "transformers", "peft", "safetensors", "tokenizers", "pydantic",
                 "annotated_types"):
        try:
            __import__(name)
        except ImportError:
            missing.append(name)
    if missing:
        print(f"gpu_check: missing {', '.join(missing)}; for pydantic run bench/gpu_vendor.sh "
              f"{sys.version_info.major}.{sys.version_info.minor} on a machine with network and "
              "carry .vendor", file=sys.stderr)
        raise SystemExit(2)


# ----- model and data ----------------------------------------------------------------------------
def build_model(folder: Path, shape: dict, home: Path, device=None) -> dict:
    """A random-weight Llama of ``shape`` saved (bf16) in ``folder`` with the tiny model's
    tokenizer (initialised on ``device``: a GPU does it in seconds); returns its config."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from backend.base_models.tiny_model import ensure_tiny_model

    tok = AutoTokenizer.from_pretrained(ensure_tiny_model(home), local_files_only=True)
    config = LlamaConfig(vocab_size=len(tok), bos_token_id=tok.bos_token_id,
                         eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id, **shape)
    torch.manual_seed(0)
    with torch.device(device or "cpu"):
        model = LlamaForCausalLM(config).to(torch.bfloat16)
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    del model
    _fresh_peak(getattr(device, "type", device) == "cuda")
    return config.to_dict()


def write_dataset(path: Path, conversations: int, seq: int, seed: int = 0) -> None:
    """Conversations of roughly seq/4 .. 1.2 x seq tokens (the tiny tokenizer makes ~1 token of
    3-4 characters of this text): a user question and a long assistant answer each."""
    from backend.base_models.tiny_model import CORPUS  # the English text the tokenizer learned

    words = CORPUS.split()
    rng = random.Random(seed)
    with open(path, "w", encoding="utf-8") as fh:
        for i in range(conversations):
            chars = int(rng.uniform(0.25, 1.2) * seq * 3.5)
            text = []
            while sum(len(w) + 1 for w in text) < chars:
                text.append(rng.choice(words))
            cut = min(20, len(text) // 4)
            turns = [{"role": "user", "content": " ".join(text[:cut]) or "Tell me more."},
                     {"role": "assistant", "content": " ".join(text[cut:])}]
            fh.write(json.dumps({"conversation_id": f"c{i}", "turns": turns}) + "\n")


def _fresh_peak(cuda: bool) -> None:
    """Free what earlier runs left and restart the peak-memory counter."""
    gc.collect()
    if cuda:
        import torch

        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


# ----- the product's loop ------------------------------------------------------------------------
def device_runtime(device):
    """The product's in-process runtime on ``device``, checkpoints not persisted."""
    from ray_jobs.worker.runtime import InProcessRuntime

    class DeviceRuntime(InProcessRuntime):
        def __init__(self):
            super().__init__(tempfile.gettempdir(), "gpu-check")

        def prepare_model(self, model):
            return model.to(device)

        def device(self):
            return device

        def get_checkpoint(self):
            return None

        def report(self, metrics, folder, name):
            return None

    return DeviceRuntime()


def _timestamp(point: dict) -> float:
    return datetime.fromisoformat(point["timestamp"]).timestamp()


def run_product(model_dir: Path, data: Path, seq: int, ckpt: bool, batch: int, device,
                out: Path) -> dict:

    from ray_jobs.worker.loop import train_loop_per_worker
    from ray_jobs.worker.sinks import CollectingSink

    cuda = device.type == "cuda"
    _fresh_peak(cuda)
    sink = CollectingSink()
    config = {"base_model": str(model_dir), "batch_size": batch, "num_epochs": 1,
              "learning_rate": 2e-4, "max_seq_length": seq, "validation_fraction": 0.0,
              "warmup_steps": 0, "gradient_checkpointing": ckpt, **LORA}
    loop = {"config": config, "dataset": str(data), "output": str(out), "sink": sink,
            "use_gpu": cuda, "metrics_every_steps": 10_000, "metrics_every_s": 1e9}
    result = train_loop_per_worker(loop, runtime=device_runtime(device))
    points = sink.points
    timed = points[WARMUP_STEPS:]
    tokens = timed[-1]["tokens_processed"] - points[WARMUP_STEPS - 1]["tokens_processed"]
    wall = _timestamp(timed[-1]) - _timestamp(points[WARMUP_STEPS - 1])
    return {"steps": len(points), "timed_steps": len(timed), "tokens": tokens,
            "tokens_per_s": tokens / wall if wall > 0 else None,
            "median_step_tokens_per_s": statistics.median(p["throughput"] for p in timed),
            "peak_allocated_gb": result["gpu_peak_allocated_gb"],
            "final_training_loss": result["final_training_loss"],
            "precision": result["precision"]}


# ----- transformers.Trainer ----------------------------------------------------------------------
def run_trainer(model_dir: Path, data: Path, seq: int, ckpt: bool, batch: int, device,
                out: Path) -> dict:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import (
        AutoModelForCausalLM,
        AutoTokenizer,
        DataCollatorForSeq2Seq,
        Trainer,
        TrainerCallback,
        TrainingArguments,
    )

    from backend.datasets.formats import load_split
    from backend.training.data import encode_all

    cuda = device.type == "cuda"
    _fresh_peak(cuda)
    tok = AutoTokenizer.from_pretrained(model_dir, local_files_only=True)
    examples, _ = encode_all(tok, load_split(str(data), 0.0, 0)[0], seq)
    rows = [{"input_ids": e.input_ids, "labels": e.labels,
             "attention_mask": [1] * len(e.input_ids)} for e in examples]
    base = AutoModelForCausalLM.from_pretrained(
        model_dir, local_files_only=True, attn_implementation="sdpa",
        dtype=torch.bfloat16 if cuda else torch.float32)
    model = get_peft_model(base, LoraConfig(
        r=LORA["lora_rank"], lora_alpha=LORA["lora_alpha"], lora_dropout=LORA["lora_dropout"],
        target_modules=LORA["target_modules"], task_type="CAUSAL_LM"))
    pad = DataCollatorForSeq2Seq(tok, padding=True, label_pad_token_id=-100)
    batch_tokens: list[int] = []

    def collate(features):
        batch_tokens.append(sum(len(f["input_ids"]) for f in features))
        return pad(features)

    ends: list[float] = []

    class Clock(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if cuda:
                torch.cuda.synchronize()
            ends.append(time.perf_counter())

    fields = TrainingArguments.__dataclass_fields__
    grouping = ({"train_sampling_strategy": "group_by_length"}
                if "train_sampling_strategy" in fields else {"group_by_length": True})
    args = TrainingArguments(
        output_dir=str(out), per_device_train_batch_size=batch, num_train_epochs=1,
        learning_rate=2e-4, lr_scheduler_type="linear", max_grad_norm=1.0, bf16=cuda,
        use_cpu=not cuda, gradient_checkpointing=ckpt,
        gradient_checkpointing_kwargs={"use_reentrant": False} if ckpt else None,
        logging_steps=10_000, save_strategy="no", report_to=[], remove_unused_columns=False,
        dataloader_num_workers=0, seed=42, disable_tqdm=True, **grouping)
    trainer = Trainer(model=model, args=args, train_dataset=rows, data_collator=collate,
                      callbacks=[Clock()])
    trainer.train()
    steps = len(ends)
    tokens = sum(batch_tokens[WARMUP_STEPS:steps])
    wall = ends[-1] - ends[WARMUP_STEPS - 1]
    peak = torch.cuda.max_memory_allocated() / 2**30 if cuda else None
    del trainer, model, base
    gc.collect()
    return {"steps": steps, "timed_steps": steps - WARMUP_STEPS, "tokens": tokens,
            "tokens_per_s": tokens / wall if wall > 0 else None, "peak_allocated_gb": peak,
            "sampling": grouping}


# ----- the estimator -----------------------------------------------------------------------------
def predict(model_id: str, model_config: dict, seq: int, ckpt: bool, batch: int,
            cuda: bool) -> dict:
    from backend.base_models.specs import model_spec_from_hf_config
    from backend.training.catalogs import get_hardware
    from backend.training.config import TrainingConfig
    from backend.training.estimation import lora_parameter_count, vram

    spec = model_spec_from_hf_config(model_id, model_config)
    hardware = get_hardware("H100-80GB" if cuda else "cpu-local")  # bf16 on GPU, fp32 on CPU
    config = TrainingConfig(base_model=model_id, batch_size=batch, max_seq_length=seq,
                            gradient_checkpointing=ckpt, target_modules=LORA["target_modules"],
                            lora_rank=LORA["lora_rank"], lora_alpha=LORA["lora_alpha"])
    params, _ = lora_parameter_count(spec, config.target_modules, config.lora_rank)
    mem = vram(config, spec, hardware, params, seq)
    return {"allocated_gb": mem.allocated_gb, "activations_gb": mem.activations_gb,
            "base_weights_gb": mem.base_weights_gb, "model_params": spec.params}


def off_by(predicted: float, measured: float | None) -> float | None:
    from backend.training.memory_check import memory_check

    check = memory_check("", predicted, measured)
    return round(check.error_percent, 2) if check else None


# ----- main --------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="JSON file to write")
    parser.add_argument("--smoke", action="store_true",
                        help="tiny model, short sequences: checks the script itself (CPU is fine)")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--steps", type=int, default=12, help="optimizer steps per run")
    parser.add_argument("--no-trainer", action="store_true", help="skip transformers.Trainer")
    parser.add_argument("--only", action="append", default=None,
                        help="run only this configuration (repeatable), e.g. seq1024")
    args = parser.parse_args(argv)
    check_imports()
    import torch

    cuda = torch.cuda.is_available() and not args.smoke
    device = torch.device("cuda", 0) if cuda else torch.device("cpu")
    started = time.perf_counter()
    report: dict = {
        "device": torch.cuda.get_device_name(0) if cuda else f"CPU ({platform.processor()})",
        "python": platform.python_version(), "torch": torch.__version__,
        "versions": _versions(), "batch_size": args.batch, "steps": args.steps,
        "warmup_steps_excluded": WARMUP_STEPS, "configs": []}
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as tmp:
        work = Path(tmp)
        shape = TINY if args.smoke else LLAMA_1B
        model_dir = work / "model"
        model_config = build_model(model_dir, shape, work / "home", device)
        report["model"] = {"shape": shape, "vocab_size": model_config["vocab_size"]}
        for name, seq, ckpt in (SMOKE_CONFIGS if args.smoke else CONFIGS):
            if args.only and name not in args.only:
                continue
            data = work / f"{name}.jsonl"
            write_dataset(data, args.batch * args.steps, seq)
            row = {"name": name, "max_seq_length": seq, "gradient_checkpointing": ckpt,
                   "predicted": predict(str(model_dir), model_config, seq, ckpt, args.batch,
                                        cuda)}
            row["product"] = run_product(model_dir, data, seq, ckpt, args.batch, device,
                                         work / f"out-{name}")
            if not args.no_trainer:
                row["trainer"] = run_trainer(model_dir, data, seq, ckpt, args.batch, device,
                                             work / f"trainer-{name}")
            _compare(row)
            report["configs"].append(row)
            print(json.dumps({k: row[k] for k in row if k != "predicted"}, default=str),
                  flush=True)
    report["wall_s"] = round(time.perf_counter() - started, 1)
    Path(args.out).write_text(json.dumps(report, indent=2, default=str))
    print(f"wrote {args.out} in {report['wall_s']} s")
    return 0


def _compare(row: dict) -> None:
    predicted = row["predicted"]["allocated_gb"]
    for who in ("product", "trainer"):
        if who in row:
            row[who]["memory_off_by_percent"] = off_by(predicted, row[who]["peak_allocated_gb"])
    if "trainer" in row and row["trainer"]["tokens_per_s"] and row["product"]["tokens_per_s"]:
        row["product_vs_trainer_tokens_per_s"] = round(
            row["product"]["tokens_per_s"] / row["trainer"]["tokens_per_s"], 3)


def _versions() -> dict:
    out = {}
    for name in ("transformers", "peft", "accelerate", "safetensors", "pydantic"):
        try:
            out[name] = __import__(name).__version__
        except Exception:  # noqa: BLE001 - reported as missing
            out[name] = None
    return out


if __name__ == "__main__":
    raise SystemExit(main())
