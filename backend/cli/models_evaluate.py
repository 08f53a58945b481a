"""`brightrun models evaluate MODEL_ID --dataset DATASET_ID [--max-answers 64] [--wait] [--json]`,
`models evaluation EVAL_ID [--json] [--jsonl OUT]`, `models evaluations [--model ID]
[--dataset ID] [--json]` (with ``--dataset``: one line per model, comparable), `models
evaluate-cancel EVAL_ID`; and the ``evaluations`` that ``models show`` carries
(``backend/evaluations/service.py``)."""
from __future__ import annotations

import time
from pathlib import Path

from backend.cli.common import actor, console, err_console, print_json, safe, table

TERMINAL = ("completed", "failed", "cancelled")


def register(models) -> None:
    """Add the evaluation commands to the ``models`` subparsers, and the evaluations to
    ``models show``."""
    p = models.add_parser("evaluate", help="score a model on a ready dataset (base vs adapter: "
                                           "loss, ROUGE-L, exact match, key fact) as a Ray job")
    p.add_argument("id", help="model id")
    p.add_argument("--dataset", required=True, help="id of a ready dataset (a test set)")
    p.add_argument("--max-answers", type=int, default=64,
                   help="conversations answered by base and adapter (default 64)")
    p.add_argument("--wait", action="store_true", help="follow the evaluation until it ends")
    p.add_argument("--timeout", type=float, default=3600)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_evaluate)
    p = models.add_parser("evaluation", help="one evaluation: figures and scored answers")
    p.add_argument("id", help="evaluation id")
    p.add_argument("--json", action="store_true")
    p.add_argument("--jsonl", metavar="OUT", help="write the scored answers as JSONL to OUT "
                                                  "('-': standard output)")
    p.set_defaults(func=cmd_evaluation)
    p = models.add_parser("evaluations", help="evaluations of a model, or of a dataset "
                                              "(one per model, comparable)")
    p.add_argument("--model")
    p.add_argument("--dataset")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_evaluations)
    p = models.add_parser("evaluate-cancel", help="stop a queued or running evaluation")
    p.add_argument("id", help="evaluation id")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_cancel)
    show = models.choices.get("show")
    if show is not None:
        show.set_defaults(func=_with_evaluations(show.get_default("func")))


def _with_evaluations(original):
    def cmd_show(args) -> int:
        from backend.adapters import get_model, lineage
        from backend.evaluations.service import list_evaluations

        if not args.json:
            rc = original(args)
            _print_list(list_evaluations(actor(args), model_id=args.id), "Evaluations")
            return rc
        who = actor(args)
        m = get_model(who, args.id)
        print_json(m.to_json() | {"lineage": lineage(who, args.id),
                                  "evaluations": list_evaluations(who, model_id=args.id)})
        return 0
    return cmd_show


def _fmt(v) -> str:
    return "—" if v is None else f"{v:.4f}" if isinstance(v, float) else str(v)


def _print_list(evs: list[dict], title: str) -> None:
    if not evs:
        return
    table(f"{title} ({len(evs)})", ["id", "model", "dataset", "status", "base loss",
                                    "adapter loss", "scores"],
          [(e["id"], e["model_name"], e["dataset_name"], e["status"], _fmt(e["base_loss"]),
            _fmt(e["adapter_loss"]), e["line"] or e["error_message"] or "") for e in evs])


def _print_one(ev: dict) -> None:
    console.print(f"[bold]evaluation {ev['id']}[/bold] — {ev['status']}: model "
                  f"{safe(ev['model_name'], one_line=True)} ({ev['model_id']}) on dataset "
                  f"{safe(ev['dataset_name'], one_line=True)} ({ev['dataset_id']})",
                  highlight=False)
    if ev["error_message"]:
        console.print(f"  {safe(ev['error_message'], one_line=True)}", highlight=False)
    if ev["status"] == "completed":
        console.print(f"  loss base {_fmt(ev['base_loss'])} → adapter {_fmt(ev['adapter_loss'])}"
                      f" over {ev['conversations']} conversation(s)", highlight=False)
        if ev["line"]:
            console.print(f"  {safe(ev['line'])}", highlight=False)


def cmd_evaluate(args) -> int:
    from backend.evaluations.service import create_evaluation, get_evaluation, reconcile_evaluations

    who = actor(args)
    ev = create_evaluation(who, args.id, args.dataset, max_answers=args.max_answers)
    if not args.json:
        err_console.print(f"evaluation {ev['id']} {ev['status']}; Ray submission "
                          f"{ev['external_job_id']}")
    if args.wait:
        deadline, last = time.monotonic() + args.timeout, time.monotonic()
        while ev["status"] not in TERMINAL and time.monotonic() < deadline:
            time.sleep(1.0)
            if time.monotonic() - last > 5:
                reconcile_evaluations()
                last = time.monotonic()
            ev = get_evaluation(who, ev["id"])
    if args.json:
        print_json(ev)
    else:
        _print_one(ev)
    return 1 if ev["status"] in ("failed", "cancelled") else 0


def cmd_evaluation(args) -> int:
    from backend.evaluations.service import evaluation_jsonl, get_evaluation

    who = actor(args)
    if args.jsonl:
        text = evaluation_jsonl(who, args.id)
        if args.jsonl == "-":
            print(text, end="")
        else:
            Path(args.jsonl).write_text(text, encoding="utf-8")
            err_console.print(f"{safe(args.jsonl)}: {text.count(chr(10))} answer(s)")
        return 0
    ev = get_evaluation(who, args.id, rows=True)
    if args.json:
        print_json(ev)
        return 0
    _print_one(ev)
    for r in ev["rows"]:
        console.print(f"[bold]#{r['index']}[/bold] {safe(r['question'])}", highlight=False)
        console.print(f"  reference: {safe(r['reference'])}", highlight=False)
        for who_ in ("base", "adapter"):
            console.print(f"  {who_}: {safe(r[who_])}  [dim](ROUGE-L {_fmt(r[who_ + '_rouge_l'])}"
                          f", exact {'yes' if r[who_ + '_exact_match'] else 'no'}"
                          + ("" if r.get(who_ + "_fact") is None else
                             f", key fact {'stated' if r[who_ + '_fact'] else 'missing'}")
                          + ")[/dim]", highlight=False)
    return 0


def cmd_evaluations(args) -> int:
    from backend.evaluations.service import compare_on_dataset, list_evaluations

    who = actor(args)
    if args.dataset and not args.model:
        evs = compare_on_dataset(who, args.dataset)
    else:
        evs = list_evaluations(who, model_id=args.model, dataset_id=args.dataset)
    if args.json:
        print_json(evs)
        return 0
    if not evs:
        console.print("no evaluations")
    _print_list(evs, "Evaluations")
    return 0


def cmd_cancel(args) -> int:
    from backend.evaluations.service import cancel_evaluation

    ev = cancel_evaluation(actor(args), args.id)
    if args.json:
        print_json(ev)
    else:
        _print_one(ev)
    return 0
