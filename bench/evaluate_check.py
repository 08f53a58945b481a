"""Independent re-computation of what ``brightrun models evaluate`` reports, to check it.

Usage::

    python bench/evaluate_check.py --evaluation-json EVAL.json --base-model PATH \\
        --adapter DIR --dataset HELDOUT.jsonl [--max-seq-length 2048]

``EVAL.json`` is what ``brightrun models evaluation ID --json`` prints. Fields read:
``base_loss``, ``adapter_loss``, ``conversations``, ``scores.base.rouge_l``,
``scores.adapter.rouge_l``, ``scores.{base,adapter}.facts`` / ``facts_total``, and per row of
``rows``: ``reference``, ``base``, ``adapter``, ``base_rouge_l``, ``adapter_rouge_l``,
``key_fact``. Nothing is imported from ``backend`` or ``ray_jobs``.

Definitions used here (written from the product's documentation, not its code):

- ROUGE-L: ``rouge_score.rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)``, F-measure of
  ``score(reference, answer)``; 0.0 when the answer or the reference is blank; the mean over the
  rows whose answer is not null.
- Loss: each conversation of the dataset file (OpenAI ``messages``, v4 ``turns``) is rendered with
  the base tokenizer's chat template; its assistant tokens are, for every assistant turn, the tokens
  between the rendering of the turns before it with the generation prompt and the rendering up to
  and including it (right-stripped): the answer's content and its end-of-turn token, never the
  role header, system or user turns. Loss = next-token cross-entropy (float32) summed over every
  assistant token of every conversation (the first token of a conversation is never predicted),
  divided by the number of those tokens: a token-weighted mean over the whole file. Each
  conversation is run alone (no padding). A conversation longer than ``--max-seq-length`` keeps
  its tokens up to the end of the last assistant turn that fits. Base = the base model alone;
  adapter = the base model with the PEFT adapter loaded.
- Key fact: the answer contains the fact, case-insensitively, after collapsing whitespace (a plain
  substring test: stricter than the product's whole-word rule on punctuation-stripped text, so the
  two counts may differ; they are printed side by side, not checked).

Exit status 0 when every ROUGE-L mean agrees within ``--rouge-tol`` (0.02) and each loss within
``--loss-abs`` (0.02) or ``--loss-rel`` (1 %), else 1. ``--min-adapter-facts`` /
``--max-base-facts`` add issue 23's bar (e.g. 6 and 1) to the verdict.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def read_jsonl(path: str | Path) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines()
            if line.strip()]


def turns_of(obj: dict) -> list[dict]:
    """The conversation's role/content turns (OpenAI ``messages`` or v4 ``turns``)."""
    return [{"role": t["role"], "content": t["content"]}
            for t in obj.get("messages") or obj.get("turns") or []]


def rouge_l(answer: str | None, reference: str | None) -> float:
    from rouge_score import rouge_scorer

    if not (answer or "").strip() or not (reference or "").strip():
        return 0.0
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
    return float(scorer.score(reference, answer)["rougeL"].fmeasure)


def states_fact(answer: str | None, facts: list[str]) -> bool | None:
    if not facts:
        return None
    text = " ".join((answer or "").lower().split())
    return all(" ".join(f.lower().split()) in text for f in facts)


def facts_of(obj: dict) -> list[str]:
    value = (obj.get("metadata") or {}).get("key_fact")
    values = value if isinstance(value, list) else [value]
    return [str(v) for v in values if isinstance(v, (str, int, float)) and str(v).strip()]


def recompute_scores(evaluation: dict, dataset: list[dict] | None = None) -> dict:
    """Per side: mean ROUGE-L of the stored answers, the product's figure, answers stating the
    key fact (facts from ``dataset`` in order when given, else the rows' ``key_fact``)."""
    rows = evaluation.get("rows") or []
    answerable = [d for d in dataset or [] if any(t["role"] == "assistant" for t in turns_of(d))]
    out = {}
    for who in ("base", "adapter"):
        mine = [rouge_l(r[who], r["reference"]) for r in rows if r.get(who) is not None]
        stored = [r.get(f"{who}_rouge_l") for r in rows if r.get(who) is not None]
        facts = []
        for i, r in enumerate(rows):
            fs = facts_of(answerable[i]) if i < len(answerable) else list(r.get("key_fact") or [])
            if r.get(who) is not None:
                facts.append(states_fact(r[who], fs))
        sc = ((evaluation.get("scores") or {}).get(who)) or {}
        out[who] = {"rouge_l": sum(mine) / len(mine) if mine else None,
                    "product_rouge_l": sc.get("rouge_l"),
                    "row_max_diff": max((abs(a - b) for a, b in zip(mine, stored)
                                         if b is not None), default=0.0),
                    "facts": sum(bool(f) for f in facts),
                    "facts_total": sum(f is not None for f in facts),
                    "product_facts": sc.get("facts"), "product_facts_total": sc.get("facts_total")}
    return out


def assistant_ids(tokenizer, turns: list[dict], max_len: int) -> tuple[list[int], list[bool]]:
    """Token ids of the rendered conversation and, per token, whether it is an assistant token."""
    def ids(text: str) -> list[int]:
        return tokenizer(text, add_special_tokens=False)["input_ids"]

    full = ids(tokenizer.apply_chat_template(turns, tokenize=False))
    mask = [False] * len(full)
    for i, t in enumerate(turns):
        if t["role"] != "assistant":
            continue
        start = len(ids(tokenizer.apply_chat_template(turns[:i], tokenize=False,
                                                      add_generation_prompt=True)))
        end = len(ids(tokenizer.apply_chat_template(turns[:i + 1], tokenize=False).rstrip()))
        for k in range(start, min(end, len(full))):
            mask[k] = True
    if len(full) > max_len:
        keep = max((k + 1 for k in range(min(len(full), max_len))
                    if mask[k] and (k + 1 == len(full) or not mask[k + 1])), default=0)
        full, mask = full[:keep], mask[:keep]
    return full, mask


def mean_loss(model, encoded: list[tuple[list[int], list[bool]]]) -> float | None:
    import torch
    import torch.nn.functional as F

    total, count = 0.0, 0
    device = next(model.parameters()).device
    model.eval()
    with torch.no_grad():
        for ids, mask in encoded:
            if len(ids) < 2:
                continue
            x = torch.tensor([ids], device=device)
            logits = model(input_ids=x).logits[0, :-1].float()
            target = torch.tensor(ids[1:], device=device)
            keep = torch.tensor(mask[1:], device=device)
            if keep.any():
                total += float(F.cross_entropy(logits[keep], target[keep], reduction="sum"))
                count += int(keep.sum())
    return total / count if count else None


def recompute_losses(base_model: str, adapter: str, dataset: list[dict], max_len: int
                     ) -> dict:
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(base_model, local_files_only=True)
    if not tokenizer.chat_template:
        raise SystemExit("the base model has no chat template: this check does not cover the "
                         "product's fallback template")
    encoded = [assistant_ids(tokenizer, turns_of(d), max_len) for d in dataset]
    encoded = [e for e in encoded if any(e[1][1:])]
    model = AutoModelForCausalLM.from_pretrained(base_model, local_files_only=True,
                                                 torch_dtype=torch.float32)
    if torch.cuda.is_available():
        model = model.to("cuda")
    base = mean_loss(model, encoded)
    model = PeftModel.from_pretrained(model, adapter)
    return {"base": base, "adapter": mean_loss(model, encoded), "conversations": len(encoded)}


def verdict(evaluation: dict, scores: dict, losses: dict | None, args) -> tuple[bool, list[str]]:
    """(all agree, table lines)."""
    ok, lines = True, [f"{'figure':<18}{'product':>10}{'here':>10}{'diff':>10}  ok"]
    for who in ("base", "adapter"):
        p, m = scores[who]["product_rouge_l"], scores[who]["rouge_l"]
        good = (p is None) == (m is None) and (p is None or abs(p - m) <= args.rouge_tol)
        ok &= good
        lines.append(f"{who + ' ROUGE-L':<18}{_f(p):>10}{_f(m):>10}"
                     f"{_f(None if p is None or m is None else m - p):>10}  {'yes' if good else 'NO'}")
    for who in ("base", "adapter") if losses else ():
        p, m = evaluation.get(f"{who}_loss"), losses[who]
        good = p is not None and m is not None and (
            abs(p - m) <= args.loss_abs or abs(p - m) <= args.loss_rel * abs(p))
        ok &= good
        lines.append(f"{who + ' loss':<18}{_f(p):>10}{_f(m):>10}"
                     f"{_f(None if p is None or m is None else m - p):>10}  {'yes' if good else 'NO'}")
    for who in ("base", "adapter"):
        s = scores[who]
        lines.append(f"{who + ' key fact':<18}{_n(s['product_facts'], s['product_facts_total']):>10}"
                     f"{_n(s['facts'], s['facts_total']):>10}")
    if args.min_adapter_facts is not None:
        ok &= scores["adapter"]["facts"] >= args.min_adapter_facts
    if args.max_base_facts is not None:
        ok &= scores["base"]["facts"] <= args.max_base_facts
    return ok, lines


def _f(v) -> str:
    return "—" if v is None else f"{v:.4f}"


def _n(a, b) -> str:
    return "—" if a is None else f"{a}/{b}"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--evaluation-json", required=True)
    p.add_argument("--base-model", required=True, help="folder of the base model")
    p.add_argument("--adapter", required=True, help="folder with the adapter's files")
    p.add_argument("--dataset", required=True, help="the JSONL file that was evaluated")
    p.add_argument("--max-seq-length", type=int, default=2048)
    p.add_argument("--rouge-tol", type=float, default=0.02)
    p.add_argument("--loss-abs", type=float, default=0.02)
    p.add_argument("--loss-rel", type=float, default=0.01)
    p.add_argument("--min-adapter-facts", type=int)
    p.add_argument("--max-base-facts", type=int)
    args = p.parse_args(argv)
    evaluation = json.loads(Path(args.evaluation_json).read_text(encoding="utf-8"))
    dataset = read_jsonl(args.dataset)
    scores = recompute_scores(evaluation, dataset)
    losses = recompute_losses(args.base_model, args.adapter, dataset, args.max_seq_length)
    ok, lines = verdict(evaluation, scores, losses, args)
    print("\n".join(lines))
    print(f"conversations: product {evaluation.get('conversations')}, here "
          f"{losses['conversations']}; {'AGREE' if ok else 'DISAGREE'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
