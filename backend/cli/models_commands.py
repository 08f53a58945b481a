"""`brightrun models list|show|download` (and export|exports: backend/cli/models_export.py)."""
from __future__ import annotations

from pathlib import Path

from backend.cli import models_export
from backend.cli.common import actor, console, print_json, safe, table, visible


def register(sub) -> None:
    models = sub.add_parser("models", help="trained adapters").add_subparsers(
        dest="models_cmd", required=True)
    p = models.add_parser("list")
    p.add_argument("--sort", default="created_at", choices=["created_at", "quality", "name"])
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_list)
    p = models.add_parser("show")
    p.add_argument("id")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_show)
    p = models.add_parser("download", help="download every file of the adapter into a folder")
    p.add_argument("id")
    p.add_argument("--out", help="folder to write the files into (not needed with --urls)")
    p.add_argument("--urls", action="store_true", help="print expiring download URLs instead")
    p.set_defaults(func=cmd_download)
    models_export.register(models)
    __import__("backend.cli.models_evaluate", fromlist=["register"]).register(models)


def cmd_list(args) -> int:
    from backend.adapters import list_models

    page = list_models(actor(args), sort=args.sort, per_page=200)
    if args.json:
        print_json([m.to_json() for m in page.items])
        return 0
    table(f"Models ({page.total})", ["id", "name", "version", "status", "val loss", "rating",
                                     "created"],
          [(m.id, m.name, m.version, m.status, m.quality_metrics.get("final_validation_loss"),
            m.quality_metrics.get("convergence_quality"), m.created_at.strftime("%Y-%m-%d %H:%M"))
           for m in page.items])
    return 0


def cmd_show(args) -> int:
    from backend.adapters import get_model, lineage

    who = actor(args)
    m = get_model(who, args.id)
    if args.json:
        print_json(m.to_json() | {"lineage": lineage(who, args.id)})
        return 0
    console.print(f"[bold]{safe(m.name, one_line=True)}[/bold] {safe(m.version)} ({m.id}) — "
                  f"{m.status}, base {safe(m.base_model)}")
    if m.description:
        console.print(f"  {safe(m.description)}", highlight=False)
    console.print(f"  quality {safe(m.quality_metrics)}", highlight=False)
    console.print(f"  summary {safe(m.training_summary)}", highlight=False)
    return 0


def cmd_download(args) -> int:
    from backend.adapters import download_urls, model_files, open_file
    from backend.core.errors import InvalidInput

    who = actor(args)
    if args.urls:
        for f in download_urls(who, args.id):
            print(f"{visible(f['name'], one_line=True)}: {visible(f['url'], one_line=True)}")  # plain print: rich would fold long URLs at 80 cols
        return 0
    if not args.out:
        raise InvalidInput("give --out FOLDER to download into (or --urls to print the links)")
    out = Path(args.out)
    for f in model_files(who, args.id):
        dest = out / f["name"]
        dest.parent.mkdir(parents=True, exist_ok=True)
        with open_file(who, args.id, f["name"]) as src, open(dest, "wb") as fh:
            while chunk := src.read(1 << 20):
                fh.write(chunk)
        console.print(f"{safe(dest)} ({f['size']:,} bytes)", highlight=False)
    return 0
