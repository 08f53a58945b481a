"""`brightrun base-models list|install|add` — the base models training starts from."""
from __future__ import annotations

from backend.cli.common import console, print_json, safe, table


def register(sub) -> None:
    base = sub.add_parser("base-models", help="base models to train on (install, add, list)"
                          ).add_subparsers(dest="base_models_cmd", required=True)
    p = base.add_parser("list", help="installed and known base models")
    p.add_argument("--json", action="store_true",
                   help="each model's id, hf_id, path, params, size_bytes, installed flag, …")
    p.set_defaults(func=cmd_list)
    p = base.add_parser("install", help="install a catalog model offline (converted once)")
    p.add_argument("id", help="catalog id, e.g. smollm2-135m-instruct")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_install)
    p = base.add_parser("add", help="add a local Hugging Face model folder or a .gguf file")
    p.add_argument("path")
    p.add_argument("--id", help="id to train with (default: the folder or file name)")
    p.set_defaults(func=cmd_add)


def cmd_list(args) -> int:
    from backend.base_models.catalog import list_base_models, params_text, size_text

    models = list_base_models()
    if args.json:
        print_json([m.as_dict() for m in models])
        return 0
    table("Base models", ["id", "installed", "parameters", "size", "source", "chat template"],
          [(m.id, "yes" if m.installed else ("installable" if m.installable else "no"),
            params_text(m.params).removesuffix(" params"), size_text(m.size_bytes), m.source,
            m.chat_template) for m in models])
    return 0


def _with_progress(run, description: str, quiet: bool):
    if quiet:
        return run(None)
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.fields[step]}"),
                  TimeElapsedColumn(), console=console, transient=False) as bar:
        task = bar.add_task(description, total=1.0, step="")
        return run(lambda fraction, message: bar.update(task, completed=fraction, step=message))


def cmd_install(args) -> int:
    from backend.base_models.catalog import install_model

    marker = _with_progress(lambda progress: install_model(args.id, progress=progress),
                            f"installing {safe(args.id)}", args.quiet)
    console.print(f"[bold]{safe(marker['id'])}[/bold] installed in {safe(marker['path'])}")
    return 0


def cmd_add(args) -> int:
    from backend.base_models.install import add, base_models_root

    marker = _with_progress(lambda progress: add(args.path, base_models_root(), args.id, progress),
                            f"adding {safe(args.path)}", False)
    console.print(f"[bold]{safe(marker['id'])}[/bold] added ({safe(marker['path'])}); train with "
                  f"--set base_model={safe(marker['id'])}")
    return 0
