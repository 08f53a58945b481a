"""Ray Job entrypoint: build one queued model export (merged / GGUF / Ollama) and store its files.

Started by the product through the Ray gateway (``backend/exports/service.request_export``); also
runnable by hand:

    ray job submit -- python -m ray_jobs.export_model --export-id ID
"""
from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ray_jobs.export_model", description=__doc__)
    parser.add_argument("--export-id", required=True, help="model_exports row (status queued)")
    args = parser.parse_args(argv)
    from backend.exports.service import run_export

    info = run_export(args.export_id)
    print(f"export {info.id}: {info.status} ({info.label}, {sum((info.files or {}).values()):,} "
          f"bytes in {info.seconds} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
