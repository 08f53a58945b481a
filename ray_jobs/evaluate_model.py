"""Ray Job entrypoint: evaluate one trained adapter on one dataset and store the evaluation.

Started by the product through the Ray gateway (``backend/evaluations/service.py``)::

    ray job submit -- python -m ray_jobs.evaluate_model --evaluation-id ID

Reads the evaluation's inputs (``backend.evaluations.service.evaluation_inputs``), marks it running, then:
the dataset's conversations are read (``backend.datasets.formats.iter_conversations``) and encoded
as the trainer encodes them (``backend.training.data.encode_all``, the model's max sequence
length); the base model is loaded as training loads it and the adapter from the object store with
``PeftModel.from_pretrained``; the mean assistant-token loss is computed with the adapter disabled
(the base model) and enabled (as ``ray_jobs/worker/evaluation.evaluate``: ``make_batches``,
``eval_loss_totals``, as validation loss); the first ``max_answers`` conversations with an assistant turn
after a user turn are answered greedily by both (``ray_jobs/worker/samples``: ``choose_prompts``,
``render``, ``generate``). Everything is stored at once (``complete_evaluation``, which scores the
answers); any error marks the evaluation failed with a one-line reason. Exit status: 0 done or
cancelled, 1 failed.
"""
from __future__ import annotations

import argparse
import contextlib
import shutil
import sys
import tempfile
import time
import traceback
from pathlib import Path

from backend.training.data import encode_all, make_batches
from ray_jobs.worker.losses import eval_loss_totals, install_row_selection

GENERATE_BATCH = 8  # prompts answered in one left-padded batch


def mean_loss(model, encoded: list, batch_size: int, pad_id: int, *, adapter: bool
              ) -> float | None:
    """Mean next-token loss over the assistant tokens of ``encoded`` (the PEFT ``model`` with its
    adapter, or disabled: the base model); None when there is no trained token."""
    if not encoded:
        return None
    model.eval()
    ctx = contextlib.nullcontext() if adapter else model.disable_adapter()
    with ctx:
        total, count = eval_loss_totals(model, encoded, make_batches(encoded, batch_size, 0, 0),
                                        pad_id, next(model.parameters()).device)
    return total / count if count else None


def answer(model, tokenizer, prompts: list, *, adapter: bool, max_prompt_tokens: int
           ) -> list[str]:
    """Greedy answers to rendered prompts, :data:`GENERATE_BATCH` at a time."""
    from ray_jobs.worker.samples import generate

    out: list[str] = []
    for i in range(0, len(prompts), GENERATE_BATCH):
        out += generate(model, tokenizer, prompts[i:i + GENERATE_BATCH], adapter=adapter,
                        max_prompt_tokens=max_prompt_tokens)
    return out


def fetch_adapter(prefix: str, folder: Path) -> Path:
    """Copy every object under ``prefix`` into ``folder``; returns it."""
    from backend.storage import get_object_store

    store = get_object_store()
    for key in store.list(prefix):
        target = folder / key[len(prefix):]
        target.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.closing(store.open(key)) as src, target.open("wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
    return folder


def load_models(base_path: str, adapter_dir: Path):
    """(tokenizer, PeftModel) as training loads the base model (precision plan of this host)."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from ray_jobs.worker import precision

    tokenizer = AutoTokenizer.from_pretrained(base_path, local_files_only=True)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    cuda = precision.cuda_available()
    plan = precision.for_job(cuda, False)
    base = AutoModelForCausalLM.from_pretrained(base_path, local_files_only=True,
                                                **precision.load_kwargs(plan))
    model = PeftModel.from_pretrained(base, str(adapter_dir))
    if cuda:
        model = model.to("cuda")
    install_row_selection(model)
    return tokenizer, model


def run_evaluation(inputs: dict) -> dict:
    """Compute an evaluation from :func:`backend.evaluations.service.evaluation_inputs`: the keyword
    arguments of ``complete_evaluation``. Raises InvalidInput (unreadable dataset, no assistant
    tokens) and whatever loading the models raises."""
    from backend.base_models.registry import resolve_base_model
    from backend.datasets.formats import iter_conversations
    from backend.storage import get_object_store
    from ray_jobs.worker.samples import choose_prompts, render

    t0 = time.perf_counter()
    fmt = inputs.get("dataset_format")
    fmt = fmt if fmt and fmt != "preference" else None
    with contextlib.closing(get_object_store().open(inputs["dataset_key"])) as fh:
        convs = [c for _, c in iter_conversations(fh, fmt)]
    base_path = resolve_base_model(inputs["base_model"], inputs.get("home"))
    folder = Path(tempfile.mkdtemp(prefix="brightrun-eval-"))
    try:
        tokenizer, model = load_models(base_path, fetch_adapter(inputs["adapter_prefix"], folder))
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    t_load = time.perf_counter()
    max_len = int(inputs["max_seq_length"])
    encoded, _ = encode_all(tokenizer, convs, max_len)
    bs, pad = int(inputs.get("batch_size") or 4), tokenizer.pad_token_id
    base_loss = mean_loss(model, encoded, bs, pad, adapter=False)
    adapter_loss = mean_loss(model, encoded, bs, pad, adapter=True)
    t_loss = time.perf_counter()
    prompts = render(tokenizer, choose_prompts(convs, int(inputs["max_answers"])))
    base = answer(model, tokenizer, prompts, adapter=False, max_prompt_tokens=max_len)
    adapted = answer(model, tokenizer, prompts, adapter=True, max_prompt_tokens=max_len)
    t_end = time.perf_counter()
    answers = [{"index": p.index, "question": p.question, "prompt": p.text,
                "reference": p.reference, "key_fact": list(p.key_fact), "base": b, "adapter": a}
               for p, b, a in zip(prompts, base, adapted)]
    gen_s = t_end - t_loss
    return {"base_loss": base_loss, "adapter_loss": adapter_loss, "conversations": len(encoded),
            "answers": answers,
            "timings": {"load_s": round(t_load - t0, 3), "loss_s": round(t_loss - t_load, 3),
                        "answers_s": round(gen_s, 3), "total_s": round(t_end - t0, 3),
                        "s_per_answer": round(gen_s / (2 * len(prompts)), 4) if prompts
                        else None}}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ray_jobs.evaluate_model", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--evaluation-id", required=True)
    args = parser.parse_args(argv)
    from backend.evaluations import service as evaluations

    inputs = evaluations.evaluation_inputs(args.evaluation_id)
    if not evaluations.start_evaluation(args.evaluation_id):
        print(f"evaluation {args.evaluation_id} is no longer queued; nothing to do")
        return 0
    try:
        result = run_evaluation(inputs)
    except Exception as exc:  # noqa: BLE001 - every failure is recorded, one line
        traceback.print_exc()
        first = (str(exc).strip().splitlines() or [""])[0]
        evaluations.fail_evaluation(args.evaluation_id,
                                    f"evaluation failed: {type(exc).__name__}: {first}")
        return 1
    done = evaluations.complete_evaluation(args.evaluation_id, **result)
    print(f"evaluation {args.evaluation_id}: {'completed' if done else 'not stored (cancelled)'}; "
          f"base loss {result['base_loss']}, adapter loss {result['adapter_loss']}, "
          f"{len(result['answers'])} answers, {result['timings']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
