"""The command line: ``brightrun …`` / ``python -m backend.cli …`` — a thin layer over services.

Errors raised by services (BrightRunError) are printed as one line with their code; exit status 1
(2 for usage errors). No tracebacks for expected errors. Error messages can quote user text and
settings: secrets are masked and control characters shown visibly (``backend.cli.common.visible``).
"""
from __future__ import annotations

import argparse
import sys

from backend.core.errors import BrightRunError


def build_parser() -> argparse.ArgumentParser:
    from backend.cli import admin, base_models, datasets, jobs_commands, models_commands

    parser = argparse.ArgumentParser(prog="brightrun", description="BrightRun LoRA Studio: turn "
                                     "conversation datasets into trained LoRA adapters.")
    parser.add_argument("--user", help="password mode: act as this user (or BRIGHTRUN_USER; "
                                       "password from BRIGHTRUN_PASSWORD)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    admin.register(sub)
    admin.register_ray(sub)
    datasets.register(sub)
    jobs_commands.register(sub)
    models_commands.register(sub)
    base_models.register(sub)
    __import__("backend.cli.sweeps", fromlist=["register"]).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except BrightRunError as exc:
        from backend.cli.common import visible
        from backend.core.config import mask_secrets

        print(f"error [{exc.code}]: {visible(mask_secrets(str(exc)), one_line=True)}",
              file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
