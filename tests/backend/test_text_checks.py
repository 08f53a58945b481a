"""Names and descriptions refuse NUL and other control characters with a clear InvalidInput (no raw
database error, nothing written): datasets, jobs, models."""
from __future__ import annotations

import io

import pytest
from sqlalchemy import func, select

from backend.accounts.users import ensure_local_user
from backend.adapters import update_model
from backend.core.errors import InvalidInput
from backend.core.text_checks import check_text, control_characters
from backend.datasets import service as datasets
from backend.db.models import Dataset, TrainingJob
from backend.db.session import session_scope
from backend.jobs import service as jobs
from tests.pages.conftest import jsonl, make_dataset
from tests.pages.job_helpers import finished_job


@pytest.mark.parametrize("text,multiline,found", [
    ("plain name", False, []),
    ("ünïcode — [x] <b>", False, []),
    ("a\x00b", False, ["\\x00"]),
    ("\x1b[31mred\x1b[0m", False, ["\\x1b"]),
    ("two\nlines\ttab", False, ["\\x0a", "\\x09"]),
    ("two\nlines\ttab\r\n", True, []),
    ("nul\x00 in description", True, ["\\x00"]),
    ("del\x7f c1\x9b", True, ["\\x7f", "\\x9b"]),
])
def test_control_characters(text, multiline, found):
    assert control_characters(text, multiline=multiline) == found


def test_check_text_message():
    with pytest.raises(InvalidInput) as err:
        check_text("a\x00b", "dataset name")
    assert err.value.code == "invalid_name"
    assert "dataset name contains control characters (\\x00)" in err.value.message


def _count(model) -> int:
    with session_scope() as s:
        return s.scalar(select(func.count()).select_from(model))


@pytest.mark.parametrize("name,description", [("bad\x00name", None), ("esc\x1b[2J", None),
                                              ("fine", "nul\x00here")])
def test_dataset_upload_refuses_control_characters(db, name, description):
    data = jsonl(3)
    with pytest.raises(InvalidInput) as err:
        datasets.upload_dataset(ensure_local_user(), io.BytesIO(data), "d.jsonl", name,
                                description=description, size=len(data), submit=False)
    assert err.value.code in ("invalid_name", "invalid_description")
    assert "control characters" in err.value.message
    assert _count(Dataset) == 0


def test_rename_job_and_model_refuse_control_characters(db, tmp_path):
    me = ensure_local_user()
    ds = make_dataset(me, "ok")
    with pytest.raises(InvalidInput, match="control characters"):
        datasets.update_dataset(me, ds.id, name="x\x00")
    with pytest.raises(InvalidInput, match="control characters"):
        datasets.update_dataset(me, ds.id, description="x\x00")
    assert datasets.get_dataset(me, ds.id).name == "ok"
    assert datasets.update_dataset(me, ds.id, description="two\nlines").description == "two\nlines"
    jobs_before = _count(TrainingJob)
    with pytest.raises(InvalidInput, match="job name contains control characters"):
        jobs.create_job(me, ds.id, name="run\x00", submit=False)
    assert _count(TrainingJob) == jobs_before
    _, model_id = finished_job(me, ds.id, tmp_path, name="[/bold] is fine")
    with pytest.raises(InvalidInput, match="model name contains control characters"):
        update_model(me, model_id, name="m\x1b[0m")
    with pytest.raises(InvalidInput, match="description contains control characters"):
        update_model(me, model_id, name="renamed", description="d\x00")
    from backend.adapters import get_model

    assert get_model(me, model_id).name != "renamed"  # nothing half written


def test_user_name_refuses_control_characters(db):
    from backend.accounts.users import create_user

    with pytest.raises(InvalidInput, match="name contains control characters"):
        create_user("esc@x.io", "Eve\x1b]8;;http://x\x07", "password-123")
