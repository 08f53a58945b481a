"""`brightrun sweeps`: bad input is one line on stderr and writes nothing; show/list/cancel of a
sweep created without Ray; user text is escaped."""
import json

import pytest
from sqlalchemy import func, select

from backend.accounts.users import ensure_local_user
from backend.cli import main
from backend.db.models import Sweep, TrainingJob
from backend.db.session import session_scope
from backend.sweeps import service as sweeps
from tests.backend.jobs.test_jobs import ready_dataset


@pytest.fixture
def me(db):
    return ensure_local_user()


def _rows():
    with session_scope() as s:
        return (s.scalar(select(func.count()).select_from(Sweep)),
                s.scalar(select(func.count()).select_from(TrainingJob)))


@pytest.mark.parametrize("extra, words", [
    (["--grid", "learning_rate"], "expected NAME=V1,V2"),
    (["--grid", "lerning_rate=1e-4"], "unknown field"),
    (["--grid", "lora_r=8", "--max-concurrent", "0"], "--max-concurrent"),
    ([], "at least one --grid"),
])
def test_bad_input_one_line_nothing_written(me, capsys, extra, words):
    d = ready_dataset(me)
    assert main(["sweeps", "create", "--dataset", d.id, *extra]) == 1
    err = capsys.readouterr().err
    assert words in err and err.count("\n") == 1 and err.startswith("error [")
    assert _rows() == (0, 0)


def test_unknown_dataset(me, capsys):
    assert main(["sweeps", "create", "--dataset", "nope", "--grid", "lora_r=4,8"]) == 1
    err = capsys.readouterr().err
    assert "nope not found" in err and err.count("\n") == 1
    assert _rows() == (0, 0)


def test_show_list_cancel(me, capsys):
    d = ready_dataset(me)
    sw = sweeps.create_sweep(me, d.id, grid=["learning_rate=1e-4,1e-3"], submit=False,
                             name="[red]my sweep[/red]")
    assert main(["sweeps", "show", sw.id]) == 0
    out = capsys.readouterr().out
    assert "[red]my sweep[/red]" in out and "2 trials" in out  # markup shown, not read
    assert main(["sweeps", "list", "--json"]) == 0
    [row] = json.loads(capsys.readouterr().out)
    assert row["id"] == sw.id and len(row["trials"]) == 2
    assert main(["sweeps", "cancel", sw.id, "--json"]) == 0
    got = json.loads(capsys.readouterr().out)
    assert got["status"] == "cancelled" and {t["status"] for t in got["trials"]} == {"cancelled"}
    assert main(["sweeps", "cancel", sw.id]) == 1
    assert "cannot go from 'cancelled'" in capsys.readouterr().err
