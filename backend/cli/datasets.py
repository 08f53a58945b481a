"""`brightrun datasets upload|list|show|validate|rename|delete`."""
from __future__ import annotations

import os
import time

from backend.cli.common import actor, console, err_console, print_json, safe, table

SHOW_FIELDS = ("id", "name", "description", "status", "format", "file_name", "file_size",
               "total_conversations", "total_training_pairs", "total_validation_pairs",
               "total_tokens", "assistant_tokens", "avg_turns_per_conversation",
               "avg_tokens_per_turn", "tokenizer_name", "training_ready", "error_count",
               "warning_count", "error_message", "validation_errors", "statistics",
               "sample_data", "created_at", "validated_at", "external_job_id")


def default_name(path: str, name: str | None) -> str:
    """The name an upload gets: ``name`` when given (stripped), else the file name without its
    extension — the same default as the Datasets page's upload form."""
    return (name or "").strip() or os.path.basename(path).rsplit(".", 1)[0]


def register(sub) -> None:
    ds = sub.add_parser("datasets", help="upload and manage datasets").add_subparsers(
        dest="ds_cmd", required=True)
    p = ds.add_parser("upload", help="upload a JSONL file (streamed, any size)")
    p.add_argument("file")
    p.add_argument("--name", help="the dataset's name (default: the file name without .jsonl, as on "
                                   "the Datasets page)")
    p.add_argument("--format", help="declare the format instead of detecting it")
    p.add_argument("--description")
    p.add_argument("--wait", action="store_true", help="wait until validation finishes")
    p.add_argument("--timeout", type=float, default=600)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_upload)
    p = ds.add_parser("list", help="list datasets")
    p.add_argument("--status")
    p.add_argument("--search")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_list)
    p = ds.add_parser("show", help="one dataset with statistics and problems")
    p.add_argument("id")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_show)
    p = ds.add_parser("validate", help="validate again")
    p.add_argument("id")
    p.add_argument("--wait", action="store_true")
    p.add_argument("--timeout", type=float, default=600)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_validate)
    p = ds.add_parser("rename", help="rename (and optionally describe)")
    p.add_argument("id")
    p.add_argument("name")
    p.add_argument("--description")
    p.set_defaults(func=cmd_rename)
    p = ds.add_parser("delete", help="soft-delete (refused while a job uses it)")
    p.add_argument("id")
    p.set_defaults(func=cmd_delete)


class _Progress:
    """A file wrapper that advances a rich progress bar as the upload streams."""

    def __init__(self, fh, progress, task):
        self.fh, self.progress, self.task = fh, progress, task

    def read(self, n=-1):
        data = self.fh.read(n)
        self.progress.update(self.task, advance=len(data))
        return data


def cmd_upload(args) -> int:
    from rich.progress import BarColumn, DownloadColumn, Progress, TransferSpeedColumn

    from backend.core.errors import InvalidInput
    from backend.datasets.service import upload_dataset

    who = actor(args)
    if not os.path.isfile(args.file):
        raise InvalidInput(f"no such file: {args.file!r}", code="file_not_found")
    size = os.path.getsize(args.file)
    with open(args.file, "rb") as fh, Progress(
            "[progress.description]{task.description}", BarColumn(), DownloadColumn(),
            TransferSpeedColumn(), console=err_console, disable=args.json) as progress:
        task = progress.add_task("uploading", total=size)
        info = upload_dataset(who, _Progress(fh, progress, task), os.path.basename(args.file),
                              default_name(args.file, args.name), description=args.description, format=args.format,
                              size=size)
    if not args.json:
        err_console.print(f"dataset {info.id} uploaded ({size:,} bytes); status {info.status}")
    if args.wait:
        info = _wait(who, info.id, args.timeout, quiet=args.json)
    _emit(info, args.json)
    return 0 if info.status in ("ready", "validating") else 1


def _wait(who, dataset_id: str, timeout: float, quiet: bool):
    from backend.core.errors import BrightRunError
    from backend.datasets.service import get_dataset, reconcile_validations

    deadline = time.monotonic() + timeout
    with err_console.status("validating on Ray…", spinner="dots") if not quiet else _Null():
        while True:
            info = get_dataset(who, dataset_id)
            if info.status not in ("uploading", "validating"):
                return info
            if time.monotonic() > deadline:
                raise BrightRunError(f"dataset {dataset_id} still {info.status} after {timeout:.0f}"
                                     " s", code="timeout")
            reconcile_validations()
            time.sleep(1.0)


class _Null:
    def __enter__(self):
        return self

    def __exit__(self, *a):
        return False


def _emit(info, as_json: bool) -> None:
    if as_json:
        print_json({k: getattr(info, k) for k in SHOW_FIELDS} | {"created_at": str(info.created_at)})
        return
    st = info.statistics or {}
    pct = st.get("length_percentiles") or {}
    console.print(f"[bold]{safe(info.name, one_line=True)}[/bold] ({info.id}) — {info.status}, "
                  f"format {safe(info.format)}")
    if info.description:
        console.print(f"  {safe(info.description)}", highlight=False)
    if info.total_conversations is not None:
        console.print(f"  {info.total_conversations} conversations, {info.total_training_pairs} "
                      f"training pairs ({info.total_validation_pairs} held out), "
                      f"{info.total_tokens} tokens ({info.assistant_tokens} trained) "
                      f"with {safe(info.tokenizer_name)}")
        if pct:
            console.print(f"  tokens per conversation p10 {pct.get('p10')} · p50 {pct.get('p50')}"
                          f" · p90 {pct.get('p90')} · max {pct.get('max')}")
    if info.error_message:
        console.print(f"  [red]{safe(info.error_message)}[/red]", markup=True, highlight=False)
    issues = info.validation_errors or []
    if issues:
        table(f"Problems ({info.error_count} errors, {info.warning_count} warnings; first "
              f"{len(issues)} shown)", ["line", "code", "severity", "error", "suggestion"],
              [(i.get("line"), i.get("code"), i.get("severity"), i.get("error"),
                i.get("suggestion")) for i in issues])


def cmd_list(args) -> int:
    from backend.datasets.service import list_datasets

    page = list_datasets(actor(args), status=args.status, search=args.search, per_page=200)
    if args.json:
        print_json([d.to_json() for d in page.items])
        return 0
    table(f"Datasets ({page.total})", ["id", "name", "status", "format", "conversations",
                                       "tokens", "created"],
          [(d.id, d.name, d.status, d.format, d.total_conversations, d.total_tokens,
            d.created_at.strftime("%Y-%m-%d %H:%M")) for d in page.items])
    return 0


def cmd_show(args) -> int:
    from backend.datasets.service import get_dataset

    _emit(get_dataset(actor(args), args.id), args.json)
    return 0


def cmd_validate(args) -> int:
    from backend.datasets.service import revalidate

    who = actor(args)
    info = revalidate(who, args.id)
    if args.wait:
        info = _wait(who, info.id, args.timeout, quiet=args.json)
    _emit(info, args.json)
    return 0 if info.status != "error" else 1


def cmd_rename(args) -> int:
    from backend.datasets.service import update_dataset

    info = update_dataset(actor(args), args.id, name=args.name, description=args.description)
    console.print(f"renamed {info.id} to “{safe(info.name, one_line=True)}”")
    return 0


def cmd_delete(args) -> int:
    from backend.datasets.service import delete_dataset

    delete_dataset(actor(args), args.id)
    console.print(f"deleted {safe(args.id)}")
    return 0
