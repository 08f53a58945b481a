"""CLI output escapes user text: rich markup is printed literally and control characters are made
visible, in every command that lists or shows datasets, jobs, models, logs and notifications.

The ESC name cannot be created through the services any more (control characters are refused,
tests/backend/test_text_checks.py), so it is written into the rows directly, as a row from before
that check would hold it.
"""
from __future__ import annotations

import io

import pytest

from backend.cli import common, main
from backend.cli.common import safe, visible
from backend.db.models import Dataset, ModelArtifact, TrainingJob
from backend.db.session import session_scope
from tests.pages.conftest import make_dataset
from tests.pages.job_helpers import finished_job

ESC_NAME = "\x1b[31mred\x1b[0m"
NAMES = ["[/bold]", "[link=x]y[/link]", ESC_NAME]
SHOWN = {"[/bold]": "[/bold]", "[link=x]y[/link]": "[link=x]y[/link]",
         ESC_NAME: "\\x1b[31mred\\x1b[0m"}


@pytest.mark.parametrize("text,shown", [
    ("[/bold]", "\\[/bold]"),
    ("[link=http://evil]click[/link]", "\\[link=http://evil]click\\[/link]"),
    ("\x1b[2J\x1b]8;;http://x\x07", "\\x1b[2J\\x1b]8;;http://x\\x07"),
    ("a\x00b\x7fc\x9bd", "a\\x00b\\x7fc\\x9bd"),
    ("abc\u202eevil", "abc\\u202eevil"),
    ("line\nnext\ttab\rover", "line\nnext\ttab\\x0dover"),
    ("ends with \\", "ends with \\\\"),
    ("plain — ünïcode [1]", "plain — ünïcode [1]"),
])
def test_safe_escapes_markup_and_controls(text, shown):
    assert safe(text) == shown
    console = common.Console(record=True, width=200, file=io.StringIO())
    console.print(f"[bold]{safe(text)}[/bold]", end="")  # as the commands use it
    # markup escaped: printed exactly as visible() says (rich only expands tabs)
    assert console.export_text() == visible(text).expandtabs(8)
    assert "\x1b" not in console.export_text()


def test_visible_one_line():
    assert visible("a\nb\tc", one_line=True) == "a\\nb\\tc"
    assert visible(None) == ""


@pytest.fixture
def hostile(db, tmp_path):
    """Datasets, jobs (with a log line and an error), models and notifications named after NAMES."""
    from backend.accounts.users import ensure_local_user

    actor = ensure_local_user()
    ids = []
    for i, name in enumerate(NAMES):
        ds = make_dataset(actor, f"dataset {i}")
        job_id, model_id = finished_job(actor, ds.id, tmp_path, name=f"job {i}")
        with session_scope() as s:
            s.get(Dataset, ds.id).name = name
            s.get(Dataset, ds.id).description = f"about {name}"
            job = s.get(TrainingJob, job_id)
            job.name, job.error_message = name, f"failed on {name}"
            model = s.get(ModelArtifact, model_id)
            model.name, model.description = name, f"made from {name}"
        from backend.jobs.db_sink import DbSink

        sink = DbSink(job_id)
        sink.log("info", f"log line {name}")
        sink.flush_logs()
        ids.append((ds.id, job_id, model_id))
    return ids


def _run(capsys, *argv) -> str:
    capsys.readouterr()
    rc = main(list(argv))
    out = capsys.readouterr()
    assert rc == 0, (argv, out.err)
    text = out.out + out.err
    assert "\x1b" not in text, argv  # no raw ESC byte: the terminal is never driven by user text
    assert "Traceback" not in text
    return text


def test_cli_lists_and_shows_hostile_names_literally(hostile, capsys, monkeypatch):
    monkeypatch.setattr(common.console, "width", 400)  # long cells on one line
    lists = {cmd: _run(capsys, *cmd.split()) for cmd in
             ("datasets list", "jobs list", "models list", "notifications list")}
    for name in NAMES:
        for cmd in ("datasets list", "jobs list", "models list"):
            assert SHOWN[name] in lists[cmd], (cmd, name, lists[cmd])
    for (ds_id, job_id, model_id), name in zip(hostile, NAMES):
        ds = _run(capsys, "datasets", "show", ds_id)
        assert SHOWN[name] in ds and f"about {SHOWN[name]}" in ds
        job = _run(capsys, "jobs", "show", job_id)
        assert SHOWN[name] in job and f"failed on {SHOWN[name]}" in job
        assert f"log line {SHOWN[name]}" in _run(capsys, "jobs", "logs", job_id)
        model = _run(capsys, "models", "show", model_id)
        assert SHOWN[name] in model and f"made from {SHOWN[name]}" in model
    for cmd in ("datasets list --json", "jobs list --json", "models list --json"):
        assert "\\u001b[31mred" in _run(capsys, *cmd.split())  # JSON escapes ESC itself


def test_cli_error_quoting_user_text_is_escaped(db, capsys):
    assert main(["datasets", "show", "[/bold]\x1b[2J"]) == 1
    err = capsys.readouterr().err
    assert "\x1b" not in err and "\\x1b[2J" in err and len(err.strip().splitlines()) == 1


def test_table_never_cuts_ids_or_cells_on_a_narrow_terminal(monkeypatch):
    """On an 80-column terminal the id column shows whole ids on one line (users copy them into the
    next command) and no other cell is cut with an ellipsis."""
    out = io.StringIO()
    monkeypatch.setattr(common, "console", common.Console(width=80, file=out, force_terminal=False))
    job_id = "e4c1e75e-3b1f-4a8e-9d5c-0a1b2c3d4e5f"
    common.table("Jobs (1)", ["id", "name", "dataset", "preset", "status", "progress", "created"],
                 [(job_id, "Demo support on SmolLM2", "missing_system_prompt", "balanced",
                   "completed", "100 %", "2026-12-04 20:34")])
    text = out.getvalue()
    assert job_id in text
    assert "…" not in text
    assert max(len(line) for line in text.splitlines()) <= 80  # nothing cropped at the right
    body = [line.split("│") for line in text.splitlines() if line.startswith("│")]
    column = lambda k: "".join(cells[k].strip() for cells in body)  # noqa: E731
    assert column(1) == job_id
    assert column(3) == "missing_system_prompt" and column(7) == "2026-12-0420:34"
