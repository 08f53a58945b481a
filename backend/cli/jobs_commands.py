"""`brightrun jobs estimate|create|list|show|watch|cancel|logs|samples`."""
from __future__ import annotations

import time

from backend.cli.common import actor, console, err_console, money, print_json, safe, table

TERMINAL = ("completed", "failed", "cancelled")


def _config_args(p) -> None:
    p.add_argument("--dataset", required=True, help="dataset id (must be ready)")
    from backend.training.catalogs import PRESET_IDS  # the ids the preset catalog must hold

    p.add_argument("--preset", default="balanced", choices=PRESET_IDS,
                   help="preset id from the preset catalog (backend/training/catalog/presets.json)")
    p.add_argument("--base-model", help="HF id or local path present on this machine")
    p.add_argument("--gpu", default="cpu-local", help="hardware id from the catalog")
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--method", choices=["sft", "dpo"],
                   help="sft (default): conversations; dpo: preference pairs (β: --set dpo_beta=0.1)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a training setting (repeatable), e.g. --set num_epochs=2")
    p.add_argument("--json", action="store_true")


def _overrides(args) -> list[str]:
    """``--set`` items, ``--method`` first (a ``--set method=…`` after it wins)."""
    return ([f"method={args.method}"] if args.method else []) + list(args.set)


def register(sub) -> None:
    jobs = sub.add_parser("jobs", help="estimate, start and follow training jobs").add_subparsers(
        dest="jobs_cmd", required=True)
    p = jobs.add_parser("estimate", help="duration, cost and memory before launching")
    _config_args(p)
    p.set_defaults(func=cmd_estimate)
    p = jobs.add_parser("create", help="create a job and submit it to Ray")
    _config_args(p)
    p.add_argument("--name")
    p.add_argument("--parent-model", help="continue from this model's adapter (lineage)")
    p.add_argument("--allow-over-budget", action="store_true")
    p.add_argument("--wait", action="store_true", help="follow the job until it ends")
    p.add_argument("--timeout", type=float, default=3600)
    p.set_defaults(func=cmd_create)
    p = jobs.add_parser("list", help="list jobs")
    p.add_argument("--status")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_list)
    for name, fn, hlp in (("show", cmd_show, "one job"), ("cancel", cmd_cancel, "cancel a job"),
                          ("watch", cmd_watch, "live progress bar until the job ends")):
        p = jobs.add_parser(name, help=hlp)
        p.add_argument("id")
        p.add_argument("--json", action="store_true")
        p.add_argument("--timeout", type=float, default=3600)
        p.set_defaults(func=fn)
    p = jobs.add_parser("logs", help="job log lines")
    p.add_argument("id")
    p.add_argument("--level", choices=["INFO", "WARNING", "ERROR"])
    p.add_argument("--limit", type=int, default=200)
    p.set_defaults(func=cmd_logs)
    from backend.cli import jobs_samples

    jobs_samples.register(jobs)


def cmd_estimate(args) -> int:
    from backend.jobs.service import build_config, estimate_for_dataset

    config = build_config(args.preset, base_model=args.base_model, overrides=_overrides(args))
    est = estimate_for_dataset(actor(args), args.dataset, config, args.gpu, args.workers)
    if args.json:
        print_json(est)
        return 0
    c, v = est["cost"], est["vram"]
    console.print(f"[bold]{args.workers} × {safe(est['hardware']['name'])}[/bold], preset "
                  f"{args.preset}, {config.num_epochs} epoch(s), {est['total_steps']} steps, "
                  f"{est['validation_conversations']} conversation(s) held out")
    console.print(f"  tokens to train {est['tokens_to_train']:,} (+{est['eval_tokens']:,} eval) at "
                  f"{est['throughput_tokens_per_s']:,.0f} tok/s"
                  + (f" (calibrated from {est['calibrated_from']} jobs)"
                     if est["calibrated_from"] else ""))
    hours = "GPU-h" if est["hardware"]["is_gpu"] else "worker-h"
    console.print(f"  duration {est['duration_s'] / 60:,.1f} min · {est['worker_hours']:.3f} {hours} · "
                  f"cost {money(c['total'])} (compute {money(c['compute'])}, storage "
                  f"{money(c['storage'])}, transfer {money(c['data_transfer'])})")
    console.print(f"  memory {v['total_gb']:.1f} GB of {v['available_gb']:g} GB per worker: "
                  + ("[green]fits[/green]" if v["fits"] else "[red]does not fit[/red]")
                  + f", gradient checkpointing {'on' if v.get('gradient_checkpointing') else 'off'}")
    b = est["budget"]
    if b.get("budget"):
        console.print(f"  budget: {money(b['projected'])} of {money(b['budget'])} this month "
                      f"({b['percent']:.0f} %)" + (" — [red]over budget[/red]"
                                                    if b["over_budget"] else ""))
    for w in est.get("warnings", []):
        console.print(f"  [yellow]warning:[/yellow] {safe(w)}", highlight=False)
    return 0


def cmd_create(args) -> int:
    from backend.jobs.service import create_job

    who = actor(args)
    job = create_job(who, args.dataset, preset_id=args.preset, overrides=_overrides(args),
                     base_model=args.base_model, hardware_id=args.gpu, workers=args.workers,
                     allow_over_budget=args.allow_over_budget, name=args.name,
                     parent_model_id=args.parent_model)
    if not args.json:
        err_console.print(f"job {job.id} {job.status}; Ray submission {job.external_job_id}")
    if args.wait and job.status not in TERMINAL:
        job = _watch(who, job.id, args.timeout, quiet=args.json)
    _emit(job, args.json, who)
    return 0 if job.status in ("completed", "queued", "initializing", "running") else 1


def _watch(who, job_id: str, timeout: float, quiet: bool = False):
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from backend.jobs.service import get_job, reconcile

    deadline, last_reconcile = time.monotonic() + timeout, 0.0
    with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.percentage:>5.1f}%"),
                  TextColumn("{task.fields[info]}"), TimeElapsedColumn(), console=err_console,
                  disable=quiet) as bar:
        task = bar.add_task("queued", total=100, info="")
        while True:
            job = get_job(who, job_id)
            m = job.current_metrics or {}
            info = " ".join(f"{k} {m[k]:.4f}" for k in ("training_loss", "validation_loss")
                            if isinstance(m.get(k), (int, float)))
            bar.update(task, completed=job.progress, info=info,
                       description=f"{job.status}/{job.current_stage} ep {job.current_epoch} "
                                   f"step {job.current_step}/{job.total_steps or '?'}")
            if job.status in TERMINAL:
                return job
            if time.monotonic() - last_reconcile > 5:
                reconcile()
                last_reconcile = time.monotonic()
            if time.monotonic() > deadline:
                return job
            time.sleep(1.0)


def _emit(job, as_json: bool, who=None) -> None:
    if as_json:
        print_json(_job_json(job, who))
        return
    console.print(f"[bold]{safe(job.name or job.id, one_line=True)}[/bold] ({job.id}) — "
                  f"{job.status}, stage {job.current_stage}, {job.progress:.0f} %, dataset "
                  f"{safe(job.dataset_name, one_line=True)}")
    console.print(f"  cost {money(job.current_cost)} of estimated {money(job.estimated_total_cost)}"
                  + (f"; model {job.artifact_id}" if job.artifact_id else ""))
    if job.current_metrics:
        console.print(f"  metrics {safe(job.current_metrics)}", highlight=False)
    if job.error_message:
        console.print(f"  error: {safe(job.error_message)}", style="red", highlight=False)


def _job_json(job, who) -> dict:
    """The job, plus its plan and actuals under the names `jobs estimate --json` uses and every
    figure (backend/jobs/figures.py), so the estimate can be held against the run."""
    out = job.to_json()
    if who is not None:
        from backend.jobs.figures import get_figures

        fig = get_figures(who, job.id).to_dict()
        out["plan"], out["actual"] = fig.pop("plan"), fig.pop("actual")
        out["figures"] = fig
        from backend.cli.jobs_samples import samples_json

        out.update(samples_json(who, job.id))
    return out


def cmd_list(args) -> int:
    from backend.jobs.service import list_jobs

    page = list_jobs(actor(args), status=args.status, per_page=200)
    if args.json:
        print_json([j.to_json() for j in page.items])
        return 0
    table(f"Jobs ({page.total})", ["id", "name", "dataset", "preset", "status", "progress",
                                   "cost", "created"],
          [(j.id, j.name, j.dataset_name, j.preset_id, j.status, f"{j.progress:.0f} %",
            money(j.current_cost), j.created_at.strftime("%Y-%m-%d %H:%M")) for j in page.items])
    return 0


def cmd_show(args) -> int:
    from backend.jobs.service import get_job

    who = actor(args)
    _emit(get_job(who, args.id), args.json, who)
    return 0


def cmd_watch(args) -> int:
    who = actor(args)
    job = _watch(who, args.id, args.timeout, quiet=args.json)
    _emit(job, args.json, who)
    return 0 if job.status == "completed" else 1


def cmd_cancel(args) -> int:
    from backend.jobs.service import cancel_job

    _emit(cancel_job(actor(args), args.id), args.json)
    return 0


def cmd_logs(args) -> int:
    from backend.jobs.service import job_logs

    for line in job_logs(actor(args), args.id, level=args.level, limit=args.limit):
        console.print(f"{line.timestamp:%H:%M:%S} {line.level:<7} {safe(line.message)}",
                      highlight=False)
    return 0
