"""One definition per job figure (backend/jobs/figures.py), as a table of cases."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from types import SimpleNamespace

import pytest

from backend.jobs.figures import PLAN_FIELDS, adapter_readme, durations, job_cost, job_figures, total_seconds

T0 = datetime(2026, 12, 1, 12, 0, tzinfo=timezone.utc)


def job(**kw):
    base = dict(status="completed", gpu_config={"gpu_type": "cpu-local", "num_workers": 2},
                started_at=T0, completed_at=T0 + timedelta(seconds=100), current_step=8,
                total_steps=8, current_epoch=2, total_epochs=2, final_cost=0.5, current_cost=0.4,
                estimated_total_cost=0.6, current_metrics={"training_loss": 8.135},
                estimate={"total_steps": 8, "tokens_to_train": 1000,
                          "validation_conversations": 4})
    base.update(kw)
    return SimpleNamespace(**base)


SUMMARY = {"training_seconds": 40.0, "duration_seconds": 70.0, "total_tokens_processed": 1000,
           "total_steps": 8, "plan": {"total_steps": 8, "validation_conversations": 4,
                                      "train_conversations": 36, "tokens_to_train": 1000}}
QUALITY = {"final_training_loss": 8.1707, "final_validation_loss": 8.3, "best_validation_loss": 8.2,
           "best_epoch": 2, "convergence_quality": "poor"}


def test_finished_cpu_job_has_one_value_per_figure():
    f = job_figures(job(), SUMMARY, QUALITY)
    assert (f.steps_done, f.steps_planned, f.tokens_processed) == (8, 8, 1000)
    assert (f.training_seconds, f.total_seconds) == (40.0, 100.0)
    assert f.throughput == pytest.approx(1000 / 40.0)  # tokens ÷ training time
    assert f.final_training_loss == 8.1707  # the last epoch's mean, not the last step's 8.135
    assert f.cost == 0.5 == job_cost(job())
    assert (f.hours_label, f.is_gpu) == ("worker-hours", False)
    assert f.hours == pytest.approx(100.0 * 2 / 3600)
    assert set(f.plan) == set(f.actual) - {"steps_done", "tokens_processed"} == set(PLAN_FIELDS)
    assert f.plan["total_steps"] == f.actual["total_steps"] == 8
    assert f.actual["tokens_to_train"] == f.plan["tokens_to_train"] == 1000
    assert f.validation_conversations == 4


def test_gpu_job_shows_worker_hours_as_worker_hours():
    f = job_figures(job(gpu_config={"gpu_type": "A100-80GB", "num_workers": 1}), SUMMARY, QUALITY)
    assert (f.hours_label, f.is_gpu) == ("GPU-hours", True)


def test_running_job_figures_come_from_its_points():
    first = SimpleNamespace(timestamp=T0 + timedelta(seconds=20), tokens_processed=100,
                            throughput=50.0, training_loss=9.0)
    latest = SimpleNamespace(timestamp=T0 + timedelta(seconds=30), tokens_processed=600,
                             throughput=60.0, training_loss=8.5)
    running = job(status="running", completed_at=None, final_cost=None, current_step=5)
    now = T0 + timedelta(seconds=45)
    f = job_figures(running, latest=latest, first=first, now=now,
                    trainer_plan={"validation_conversations": 4, "total_steps": 8})
    assert f.training_seconds == pytest.approx(12.0)  # 10 s between points + the first step's 2 s
    assert f.throughput == pytest.approx(600 / 12.0)
    assert f.total_seconds == pytest.approx(45.0) == total_seconds(running, now)
    assert f.training_loss == 8.135 and f.final_training_loss is None
    assert f.cost == 0.4 and f.actual["steps_done"] == 5 and f.validation_conversations == 4


@pytest.mark.parametrize("summary,started,completed,expected", [
    ({"training_seconds": 5.0}, T0, T0 + timedelta(seconds=9), (5.0, 9.0)),
    ({"duration_seconds": 7.0}, T0, T0 + timedelta(seconds=9), (7.0, 9.0)),  # older jobs
    ({}, None, None, (None, None)),
    ({"training_seconds": 12.0}, T0, T0 + timedelta(seconds=9), (12.0, 12.0)),  # clock skew
])
def test_durations(summary, started, completed, expected):
    assert durations(summary, started, completed) == expected


def test_readme_carries_the_same_figures():
    f = job_figures(job(), SUMMARY, QUALITY)
    text = adapter_readme(f, "orders <v2>", "brightrun/tiny-llama")
    assert "| tokens processed (chat template applied) | 1,000 |" in text
    assert "| worker-hours |" in text and "GPU-hours" not in text
    assert "| final training loss (last epoch) | 8.1707 |" in text
    unrated = job_figures(job(), SUMMARY, {**QUALITY, "convergence_quality": "not rated",
                                           "final_validation_loss": None})
    assert "not rated: no validation data" in adapter_readme(unrated, "x", "y")
