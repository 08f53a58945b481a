"""One definition of "the Ray submission has ended" for every reconciler (backend/cluster/ended.py)."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

from backend.cluster import ended


def _ago(seconds: float) -> datetime:
    return datetime.now(timezone.utc) - timedelta(seconds=seconds)


def test_running_and_just_submitted_have_not_ended():
    for status in ("PENDING", "RUNNING"):
        assert not ended.has_ended({"status": status}, _ago(3600))
    assert not ended.has_ended({"status": "MISSING"}, _ago(ended.MISSING_GRACE_S - 5))
    assert ended.has_ended({"status": "MISSING"}, _ago(ended.MISSING_GRACE_S + 5))
    for status in ("SUCCEEDED", "FAILED", "STOPPED"):
        assert ended.has_ended({"status": status}, _ago(1))


def test_never_submitted_after_the_grace_naive_times_are_utc():
    naive = (datetime.now(timezone.utc) - timedelta(seconds=ended.NEVER_SUBMITTED_GRACE_S + 5)
             ).replace(tzinfo=None)
    assert ended.never_submitted(naive)
    assert not ended.never_submitted(_ago(10))


def test_reason_names_the_job_and_its_last_log_lines(monkeypatch):
    class Gateway:
        def logs(self, sub):
            return "\n".join(f"line {i}" for i in range(9))

    import backend.cluster.gateway as gw
    monkeypatch.setattr(gw, "get_gateway", lambda: Gateway())
    text = ended.ended_reason("sub-1", {"status": "FAILED", "message": "exit 1"})
    assert text.startswith("the Ray job sub-1 failed: exit 1") and text.endswith("line 8")
    assert "line 3" not in text  # the last 5 lines only
    assert "no longer exists" in ended.ended_reason("sub-1", {"status": "MISSING"})
