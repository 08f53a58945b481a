"""`brightrun models export MODEL_ID --format merged|gguf|ollama [--quant f16|q8_0] --out DIR` and
`brightrun models exports MODEL_ID`: an export runs as a Ray job, is stored next to the adapter and
reused when asked again; the command waits for it (a progress line) and downloads its files."""
from __future__ import annotations

import time
from pathlib import Path

from backend.cli.common import actor, console, print_json, safe, table

WAIT_POLL_S = 1.0


def register(models) -> None:
    """Add ``export`` and ``exports`` to the ``models`` subcommands."""
    p = models.add_parser("export", help="export a model: merged HF folder, GGUF, or Ollama")
    p.add_argument("id")
    p.add_argument("--format", required=True, choices=["merged", "gguf", "ollama"])
    p.add_argument("--quant", choices=["f16", "q8_0"], help="GGUF weights (default f16)")
    p.add_argument("--out", help="folder to download the export into (omit: only build it)")
    p.add_argument("--timeout", type=float, default=3600.0, help="seconds to wait for the job")
    p.set_defaults(func=cmd_export)
    p = models.add_parser("exports", help="list a model's exports")
    p.add_argument("id")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_exports)


def _wait(who, export_id: str, timeout_s: float):
    from backend.core.errors import RayError
    from backend.exports.service import get_export

    deadline, last = time.monotonic() + timeout_s, None
    while True:
        info = get_export(who, export_id)
        line = f"{info.progress:5.1f} % {info.stage or info.status}"
        if line != last:
            console.print(f"  {safe(line, one_line=True)}", highlight=False)
            last = line
        if info.status not in ("queued", "running"):
            return info
        if time.monotonic() > deadline:
            raise RayError(f"export {export_id} is still {info.status} after {timeout_s:g}s",
                           code="export_timeout")
        time.sleep(WAIT_POLL_S)


def cmd_export(args) -> int:
    from backend.core.errors import BrightRunError
    from backend.exports.service import export_files, open_export_file, request_export

    who = actor(args)
    info, reused = request_export(who, args.id, args.format, args.quant)
    console.print(f"export {info.id} ({safe(info.label)}): "
                  f"{'reusing the stored export' if reused else 'started as a Ray job'}",
                  highlight=False)
    info = _wait(who, info.id, args.timeout)
    if info.status != "completed":
        raise BrightRunError(f"export {info.id} failed: {info.error or info.status}",
                             code="export_failed")
    if not args.out:
        console.print(f"stored; download it with --out DIR ({info.seconds} s)", highlight=False)
        return 0
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for f in export_files(who, info.id):
        dest = out / f["name"]
        with open_export_file(who, info.id, f["name"]) as src, open(dest, "wb") as fh:
            while chunk := src.read(1 << 20):
                fh.write(chunk)
        console.print(f"{safe(dest)} ({f['size']:,} bytes)", highlight=False)
    return 0


def cmd_exports(args) -> int:
    from backend.exports.service import list_exports

    rows = list_exports(actor(args), args.id)
    if args.json:
        print_json([r.model_dump(mode="json") for r in rows])
        return 0
    table(f"Exports ({len(rows)})", ["id", "format", "status", "progress", "size", "seconds",
                                     "error"],
          [(r.id, r.label, r.status, f"{r.progress:.0f} %",
            f"{sum((r.files or {}).values()):,}" if r.files else "", r.seconds, r.error or "")
           for r in rows])
    return 0
