import pytest

from backend.core import states
from backend.core.errors import InvalidTransition

LEGAL = [
    ("dataset", "uploading", "validating"), ("dataset", "validating", "ready"),
    ("dataset", "validating", "error"), ("dataset", "error", "validating"),
    ("dataset", "uploading", "error"),
    ("job", "queued", "initializing"), ("job", "initializing", "running"),
    ("job", "running", "completed"), ("job", "running", "failed"), ("job", "queued", "cancelled"),
    ("job", "initializing", "cancelled"), ("job", "running", "cancelled"),
    ("stage", "queued", "initializing"), ("stage", "initializing", "training"),
    ("stage", "training", "validating"), ("stage", "validating", "saving"),
    ("stage", "saving", "completed"),
    ("model", "stored", "deployed"), ("model", "deployed", "stored"), ("model", "stored", "archived"),
]
ILLEGAL = [
    ("dataset", "ready", "uploading"), ("dataset", "uploading", "ready"),
    ("job", "completed", "running"), ("job", "failed", "running"), ("job", "cancelled", "queued"),
    ("job", "queued", "completed"), ("job", "queued", "running"),
    ("stage", "queued", "training"), ("stage", "completed", "saving"),
    ("model", "archived", "stored"), ("model", "stored", "stored"),
]


@pytest.mark.parametrize("kind,cur,new", LEGAL)
def test_legal(kind, cur, new):
    states.check(kind, cur, new)
    assert states.can(kind, cur, new)


@pytest.mark.parametrize("kind,cur,new", ILLEGAL)
def test_illegal(kind, cur, new):
    with pytest.raises(InvalidTransition):
        states.check(kind, cur, new)


def test_unknown_status_named():
    with pytest.raises(InvalidTransition, match="not a job status"):
        states.check("job", "queued", "exploded")
