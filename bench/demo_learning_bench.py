"""What the default preset teaches SmolLM2 on the "Try it" demo (issue 23, acceptance 1): held-out
loss and key facts stated, base model → adapter, by recipe.

    python bench/demo_learning_bench.py tune --base-model PATH [--set key=value ...]
    python bench/demo_learning_bench.py report --base-model PATH [--preset balanced]

``tune`` chooses a recipe on a *validation* split that is not the reported one: the demo's
teaching conversations with its 30 tuning probes held out (``make_demo_v6.build(tuning=True)``,
questions in other words than the reported probes, which it leaves out), evaluated at every epoch;
pick the epoch count and learning rate there. ``report`` runs the preset on the demo as the product does (the
default split holds out exactly the probes, which ask taught facts in new words) and prints the
figures the product shows: held-out loss base → final, the key facts stated (``scoring.contains_fact``
through ``backend.jobs.samples.scores``), ROUGE-L, and the run's time.

Each run is the product's worker loop (``train_loop_per_worker``) in this process with the
in-process runtime (what a one-CPU-worker job runs in its Ray job's driver) and an in-memory sink.
Writes nothing but scratch under bench/out/.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

DEMO = ROOT / "examples" / "demo-support-v6.jsonl"
OUT = ROOT / "bench" / "out"
sys.path.insert(0, str(ROOT / "examples"))
import make_demo_v6  # noqa: E402  (the demo's generator: its tuning probes and their fraction)


def tuning_file() -> Path:
    """The demo's teaching conversations with its 30 *tuning* probes (other words than the
    reported probes, which are left out): ``make_demo_v6.build(tuning=True)``; hold them out with
    ``validation_fraction`` = ``TUNING_FRACTION``."""
    path = OUT / "demo-v6-tuning.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in make_demo_v6.build(tuning=True)))
    return path


def run_once(config: dict, dataset: Path, home: Path) -> dict:
    from backend.jobs.samples import SampleInfo, base_vs_adapter, learning_line, scores
    from ray_jobs.worker.loop import train_loop_per_worker
    from ray_jobs.worker.runtime import InProcessRuntime
    from ray_jobs.worker.sinks import CollectingSink

    with tempfile.TemporaryDirectory(dir=OUT, prefix="demo-learning-") as tmp:
        sink = CollectingSink()
        t0, c0 = time.perf_counter(), time.process_time()
        result = train_loop_per_worker(
            {"config": config, "dataset": str(dataset), "output": f"{tmp}/adapter",
             "home": str(home), "sink": sink},
            runtime=InProcessRuntime(f"{tmp}/runs", "run"))
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    samples = [SampleInfo(step=e["step"], index=i["index"], question=i["question"], prompt="",
                          reference=i["reference"], answer=i["answer"],
                          key_fact=i.get("key_fact") or [])
               for e in sink.of("samples") for i in e["items"]]
    rows = base_vs_adapter(samples)
    sc = scores(rows)
    curve = [round(p["validation_loss"], 4) for e in sink.of("metrics")
             for p in (e.get("points") or [e]) if p.get("validation_loss") is not None] \
        if sink.of("metrics") else None
    hist = [round(h["validation_loss"], 4) for h in result.get("validation_loss_history") or []]
    base, final = result["base_validation_loss"], result["final_validation_loss"]
    return {"steps": result["total_steps"], "wall_s": round(wall, 1), "cpu_s": round(cpu, 1),
            "base_val": round(base, 4), "final_val": round(final, 4),
            "best_val": round(result["best_validation_loss"], 4),
            "best_epoch": result["best_epoch"], "reduction": round((base - final) / base, 4),
            "history": hist or curve, "line": learning_line(sc),
            "facts": f"{sc['base']['facts']} → {sc['adapter']['facts']} of "
                     f"{sc['adapter']['facts_total']}",
            "samples_s": result["eval_samples"]["seconds"],
            "answers": [(r["question"], r["adapter"], r["adapter_fact"]) for r in rows]}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("mode", choices=("tune", "report"))
    p.add_argument("--base-model", required=True)
    p.add_argument("--preset", default="balanced")
    p.add_argument("--set", action="append", default=[], dest="overrides", metavar="KEY=VALUE")
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)
    os.environ.update(OMP_NUM_THREADS=str(args.threads), HF_HUB_OFFLINE="1",
                      TOKENIZERS_PARALLELISM="false")
    import torch

    from backend.jobs.estimates import build_config

    torch.set_num_threads(args.threads)
    OUT.mkdir(parents=True, exist_ok=True)
    overrides = list(args.overrides)
    if args.mode == "tune":
        overrides.append(f"validation_fraction={make_demo_v6.TUNING_FRACTION}")
    config = build_config(args.preset, base_model=args.base_model,
                          overrides=overrides).model_dump()
    dataset = tuning_file() if args.mode == "tune" else DEMO
    print(f"# {time.strftime('%H:%M')} load {os.getloadavg()[0]:.1f} ({os.cpu_count()} cores) "
          f"{args.mode} preset {args.preset} {overrides} threads {args.threads}", flush=True)
    row = run_once(config, dataset, OUT / "home")
    print(json.dumps(row, indent=1, ensure_ascii=False))
    print(f"# done {time.strftime('%H:%M')} load {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
