"""Ray Job entrypoint: validate one dataset and store the report.

Started by the product through the Ray gateway; also runnable by hand:

    ray job submit -- python -m ray_jobs.validate_dataset --dataset-id ID
    python -m ray_jobs.validate_dataset --file data.jsonl        # no database: print the report
"""
from __future__ import annotations

import argparse
import json
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ray_jobs.validate_dataset", description=__doc__)
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--dataset-id", help="dataset row to validate (status must be validating)")
    group.add_argument("--file", help="a local JSONL file to validate without the database")
    parser.add_argument("--max-seq-length", type=int, default=2048)
    args = parser.parse_args(argv)
    if args.file:
        from backend.datasets.validation import validate_stream

        with open(args.file, "rb") as fh:
            report = validate_stream(fh, max_seq_length=args.max_seq_length)
        print(json.dumps(report.to_dict(), indent=2, default=str))
        return 0 if report.ok else 1
    from backend.datasets.service import run_validation

    info = run_validation(args.dataset_id, max_seq_length=args.max_seq_length)
    print(f"dataset {info.id}: {info.status} ({info.error_count} errors, "
          f"{info.warning_count} warnings, {info.total_conversations} conversations, "
          f"{info.total_tokens} tokens with {info.tokenizer_name})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
