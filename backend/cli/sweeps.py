"""`brightrun sweeps create|list|show|cancel`: hyperparameter sweeps on Ray Tune
(backend/sweeps/service.py)."""
from __future__ import annotations

import time

from backend.cli.common import actor, console, err_console, money, print_json, safe, table

TERMINAL = ("completed", "failed", "cancelled")


def register(sub) -> None:
    sweeps = sub.add_parser("sweeps", help="hyperparameter sweeps on Ray Tune").add_subparsers(
        dest="sweeps_cmd", required=True)
    from backend.training.catalogs import PRESET_IDS

    p = sweeps.add_parser("create", help="estimate, admit and start a sweep (one job per trial)")
    p.add_argument("--dataset", required=True, help="dataset id (must be ready)")
    p.add_argument("--preset", default="balanced", choices=PRESET_IDS)
    p.add_argument("--base-model", help="HF id or local path present on this machine")
    p.add_argument("--grid", action="append", default=[], metavar="NAME=V1,V2",
                   help="a training setting and its values (repeatable), e.g. "
                        "--grid learning_rate=1e-4,5e-4 --grid lora_r=8,16")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="a setting every trial shares (repeatable), e.g. --set num_epochs=3")
    p.add_argument("--samples", type=int, default=1,
                   help="trials per grid point, each with another seed (default 1)")
    p.add_argument("--max-concurrent", type=int, default=1,
                   help="trials running at once (each takes one CPU)")
    p.add_argument("--scheduler", default="fifo", choices=["fifo", "asha"],
                   help="asha: stop weak trials early at rungs of 1, 2, 4 … evaluations")
    p.add_argument("--name")
    p.add_argument("--allow-over-budget", action="store_true")
    p.add_argument("--wait", action="store_true", help="follow the sweep until it ends")
    p.add_argument("--timeout", type=float, default=3600)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_create)
    p = sweeps.add_parser("list", help="list sweeps")
    p.add_argument("--status")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_list)
    for name, fn, hlp in (("show", cmd_show, "one sweep and its trials"),
                          ("cancel", cmd_cancel, "cancel a sweep and every trial")):
        p = sweeps.add_parser(name, help=hlp)
        p.add_argument("id")
        p.add_argument("--json", action="store_true")
        p.set_defaults(func=fn)


def cmd_create(args) -> int:
    from backend.sweeps.service import create_sweep

    who = actor(args)
    sw = create_sweep(who, args.dataset, preset_id=args.preset, grid=args.grid,
                      overrides=args.set, base_model=args.base_model, samples=args.samples,
                      max_concurrent=args.max_concurrent, scheduler=args.scheduler,
                      allow_over_budget=args.allow_over_budget, name=args.name)
    if not args.json:
        err_console.print(f"sweep {sw.id} {sw.status}: {sw.trial_count} trials, estimated "
                          f"{money(sw.estimated_total_cost)}; Ray submission {sw.external_job_id}")
    if args.wait and sw.status not in TERMINAL:
        sw = _wait(who, sw.id, args.timeout, quiet=args.json)
    _emit(sw, args.json)
    return 0 if sw.status in ("completed", "queued", "running") else 1


def _wait(who, sweep_id: str, timeout: float, quiet: bool = False):
    from backend.sweeps.service import get_sweep, reconcile_sweeps

    deadline, last = time.monotonic() + timeout, None
    while True:
        sw = get_sweep(who, sweep_id)
        line = f"{sw.status}: " + ", ".join(f"{v} {k}" for k, v in sw.counts().items() if v)
        if not quiet and line != last:
            err_console.print(line)
            last = line
        if sw.status in TERMINAL or time.monotonic() > deadline:
            return sw
        reconcile_sweeps()
        time.sleep(2.0)


def _outcome(t) -> str:
    trial = t.sweep_trial or {}
    return "stopped early" if trial.get("stopped_early") else t.status


def _val(t) -> str:
    v = (t.current_metrics or {}).get("validation_loss")
    return f"{v:.4f}" if isinstance(v, (int, float)) else "—"


def _emit(sw, as_json: bool) -> None:
    from backend.sweeps.grid import params_text

    if as_json:
        print_json(sw.to_json())
        return
    counts = ", ".join(f"{v} {k.replace('_', ' ')}" for k, v in sw.counts().items() if v)
    console.print(f"[bold]{safe(sw.name or sw.id, one_line=True)}[/bold] ({sw.id}) — {sw.status}, "
                  f"{sw.trial_count} trials ({counts}), scheduler {sw.scheduler}, "
                  f"{sw.max_concurrent} at a time, dataset {safe(sw.dataset_name, one_line=True)}")
    spent = sum(t.current_cost or 0.0 for t in sw.trials)
    console.print(f"  cost {money(spent)} of estimated {money(sw.estimated_total_cost)}")
    if sw.error_message:
        console.print(f"  {safe(sw.error_message)}", style="red", highlight=False)
    table(None, ["#", "job", "params", "outcome", "step", "val loss", "best", "model"],
          [((t.sweep_trial or {}).get("index", 0) + 1, t.id,
            params_text((t.sweep_trial or {}).get("params") or {}), _outcome(t),
            f"{t.current_step}/{t.total_steps or '?'}", _val(t),
            "★" if (t.sweep_trial or {}).get("best") else "", t.artifact_id or "")
           for t in sw.trials])


def cmd_list(args) -> int:
    from backend.sweeps.service import list_sweeps

    page = list_sweeps(actor(args), status=args.status, per_page=200)
    if args.json:
        print_json([s.to_json() for s in page.items])
        return 0
    table(f"Sweeps ({page.total})", ["id", "name", "dataset", "status", "trials", "best",
                                     "estimate", "created"],
          [(s.id, s.name, s.dataset_name, s.status, s.trial_count, s.best_job_id or "",
            money(s.estimated_total_cost), s.created_at.strftime("%Y-%m-%d %H:%M"))
           for s in page.items])
    return 0


def cmd_show(args) -> int:
    from backend.sweeps.service import get_sweep

    _emit(get_sweep(actor(args), args.id), args.json)
    return 0


def cmd_cancel(args) -> int:
    from backend.sweeps.service import cancel_sweep

    _emit(cancel_sweep(actor(args), args.id), args.json)
    return 0
