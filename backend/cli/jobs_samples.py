"""`brightrun jobs samples JOB_ID [--json]`: the held-out prompts with the reference, the base
model's answer and the adapter's, scored (ROUGE-L, exact match: ``backend/training/scoring.py``);
and the ``samples`` / ``scores`` that ``jobs show --json`` carries."""
from __future__ import annotations

from backend.cli.common import actor, console, print_json, safe
from backend.jobs.samples import learning_line


def register(jobs) -> None:
    p = jobs.add_parser("samples", help="held-out answers (base vs adapter) scored against the "
                                        "reference")
    p.add_argument("id")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_samples)


def samples_json(who, job_id: str) -> dict:
    """``{"samples": rows of the latest step (base_vs_adapter), "scores": base vs adapter
    means}``. Raises NotFound."""
    from backend.jobs.samples import base_vs_adapter, job_samples, scores

    rows = base_vs_adapter(job_samples(who, job_id))
    return {"samples": rows, "scores": scores(rows)}


def _fmt(v, rate: bool = False) -> str:
    if v is None:
        return "—"
    return f"{v * 100:.0f} %" if rate else f"{v:.2f}"


def cmd_samples(args) -> int:
    out = samples_json(actor(args), args.id)
    if args.json:
        print_json({"job_id": args.id, **out})
        return 0
    rows, sc = out["samples"], out["scores"]
    if not rows:
        console.print("no evaluation samples yet")
        return 0
    for r in rows:
        console.print(f"[bold]#{r['index']}[/bold] {safe(r['question'])}", highlight=False)
        console.print(f"  reference: {safe(r['reference'])}", highlight=False)
        if r.get("key_fact"):
            console.print(f"  key fact: {safe(', '.join(r['key_fact']))}", highlight=False)
        for who in ("base", "adapter"):
            label = who if who == "base" else f"adapter (step {r['step']})"
            console.print(f"  {label}: {safe(r[who]) if r[who] is not None else '—'}  "
                          f"[dim](ROUGE-L {_fmt(r[who + '_rouge_l'])}, exact "
                          f"{'—' if r[who + '_exact_match'] is None else ('yes' if r[who + '_exact_match'] else 'no')}"
                          f"{_fact(r.get(who + '_fact'))})[/dim]",
                          highlight=False)
    b, a = sc["base"], sc["adapter"]
    console.print(f"ROUGE-L {_fmt(b['rouge_l'])} → {_fmt(a['rouge_l'])} · exact match "
                  f"{_fmt(b['exact_match'], True)} → {_fmt(a['exact_match'], True)} "
                  f"({len(rows)} prompt(s))", highlight=False)
    line = learning_line(sc)
    if line:
        console.print(line, highlight=False)
    return 0


def _fact(value) -> str:
    return "" if value is None else f", key fact {'stated' if value else 'missing'}"
