"""Monitor, DPO job: the TRL-named preference metrics written through the progress sink are stored
(metrics_points.preference) and drawn; an SFT job shows no such panel."""
from __future__ import annotations

from backend.jobs.preference_metrics import preference_history
from tests.fixtures.paths import REPO
from tests.pages.conftest import make_dataset, open_app, texts
from tests.pages.job_helpers import new_job, run_job


def test_dpo_job_shows_reward_accuracy_and_margin(actor):
    d = make_dataset(actor, "prefs", content=(REPO / "examples" / "preference-demo.jsonl").read_bytes())
    job = new_job(actor, d.id, name="dpo", overrides={"method": "dpo", "dpo_beta": 0.1})
    sink = run_job(job.id, steps=4)
    points = [{"epoch": 1, "step": s, "training_loss": 0.6 - 0.1 * s, "rewards/chosen": 0.1 * s,
               "rewards/rejected": -0.1 * s, "rewards/accuracies": 0.5 + 0.1 * s,
               "rewards/margins": 0.2 * s} for s in (5, 6)]
    points[-1].update({"validation_loss": 0.2, "eval_loss": 0.2, "eval_rewards/chosen": 0.5,
                       "eval_rewards/rejected": -0.6, "eval_rewards/accuracies": 0.75,
                       "eval_rewards/margins": 1.1})
    sink.metrics(points)
    sink.progress(1, 6, 8, 75.0, {"training_loss": 0.0}, 10.0)
    history = preference_history(actor, job.id)
    assert [p["step"] for p in history] == [5, 6] and history[1]["eval_rewards/accuracies"] == 0.75
    at = open_app("monitor", {"job_id": job.id})
    assert not at.exception, at.exception
    shown = texts(at)
    assert "**Preference rewards** (DPO, β × log-ratio to the reference)" in shown
    assert "Held-out pairs at step 6: reward accuracy 0.75, margin 1.100, DPO loss 0.2000." in shown


def test_sft_job_has_no_preference_panel(actor):
    d = make_dataset(actor, "d")
    job = new_job(actor, d.id, name="sft")
    run_job(job.id, steps=3)
    assert preference_history(actor, job.id) == []
    at = open_app("monitor", {"job_id": job.id})
    assert not at.exception and "Preference rewards" not in texts(at)
