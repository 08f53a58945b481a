"""Configure page, DPO: a preference set defaults the method to DPO with β, the job records them;
SFT on preference pairs is refused by the estimate with one clear message."""
from __future__ import annotations

import pytest

from backend.jobs import service as jobs
from tests.fixtures.paths import REPO
from tests.pages.conftest import TIMEOUT, make_dataset, open_app, texts


@pytest.fixture
def submitted(monkeypatch):
    calls: list[str] = []
    monkeypatch.setattr(jobs, "submit_job", lambda job_id: calls.append(job_id) or "raysub-1")
    return calls


def test_preference_set_trains_with_dpo_and_beta(actor, submitted):
    d = make_dataset(actor, "prefs", content=(REPO / "examples" / "preference-demo.jsonl").read_bytes())
    at = open_app("configure", {"dataset_id": d.id})
    assert not at.exception, at.exception
    assert at.radio(key="configure_method").value == "dpo"
    at.number_input(key="configure_dpo_beta").set_value(0.2).run(timeout=TIMEOUT)
    assert not at.error and "Estimate" in texts(at)
    at.button(key="configure_start").click().run(timeout=TIMEOUT)
    assert not at.exception, at.exception
    (job,) = jobs.list_jobs(actor).items
    assert submitted == [job.id]
    assert job.hyperparameters["method"] == "dpo" and job.hyperparameters["dpo_beta"] == 0.2


def test_sft_on_preference_pairs_is_refused(actor, submitted):
    d = make_dataset(actor, "prefs", content=(REPO / "examples" / "preference-demo.jsonl").read_bytes())
    at = open_app("configure", {"dataset_id": d.id})
    at.radio(key="configure_method").set_value("sft").run(timeout=TIMEOUT)
    assert not at.exception, at.exception
    assert any("method sft cannot train" in str(e.value) for e in at.error)
    assert at.button(key="configure_start").disabled
