"""Sweep service without Ray: planning, admission, one queued job per trial, bad input changing
nothing, cancel, the best trial, reconcile of a sweep that was never submitted."""
from datetime import timedelta

import pytest
from sqlalchemy import func, select, update

from backend.accounts.users import ensure_local_user, set_budget
from backend.core.errors import BudgetExceeded, InvalidInput, InvalidTransition, NotFound
from backend.costs import add_cost
from backend.db.models import Sweep, TrainingJob, utcnow
from backend.db.session import session_scope
from backend.jobs import service as jobs
from backend.sweeps import progress as sp
from backend.sweeps import service as sweeps
from tests.backend.jobs.test_jobs import ready_dataset

GRID = ["learning_rate=1e-4,1e-3", "lora_r=4,8"]


@pytest.fixture
def me(db):
    return ensure_local_user()


def _counts():
    with session_scope() as s:
        return (s.scalar(select(func.count()).select_from(Sweep)),
                s.scalar(select(func.count()).select_from(TrainingJob)))


def test_create_stores_one_queued_job_per_trial(me):
    d = ready_dataset(me)
    sw = sweeps.create_sweep(me, d.id, preset_id="conservative", grid=GRID, max_concurrent=2,
                             scheduler="asha", overrides=["num_epochs=3"], submit=False)
    assert sw.status == "queued" and sw.trial_count == 4 and len(sw.trials) == 4
    assert sw.scheduler == "asha" and sw.max_concurrent == 2
    assert sw.grid == {"learning_rate": [1e-4, 1e-3], "lora_rank": [4, 8]}
    params = [t.sweep_trial["params"] for t in sw.trials]
    assert params[0] == {"learning_rate": 1e-4, "lora_rank": 4} and len(params) == 4
    for t in sw.trials:
        assert t.status == "queued" and t.sweep_id == sw.id and t.total_epochs == 3
        assert t.hyperparameters["lora_rank"] == t.sweep_trial["params"]["lora_rank"]
        assert t.hyperparameters["learning_rate"] == t.sweep_trial["params"]["learning_rate"]
    assert sw.estimated_total_cost == pytest.approx(sum(t.estimated_total_cost for t in sw.trials))
    assert sw.estimate["evaluations"] >= 3
    assert [s.id for s in sweeps.list_sweeps(me).items] == [sw.id]
    assert {j.id for j in jobs.list_jobs(me).items} == {t.id for t in sw.trials}


@pytest.mark.parametrize("kwargs, code", [
    ({"grid": ["lerning_rate=1e-4"]}, "invalid_grid"),
    ({"grid": ["learning_rate"]}, "invalid_grid"),
    ({"grid": ["learning_rate=-1"]}, "invalid_grid"),
    ({"grid": GRID, "scheduler": "hyperband"}, "invalid_grid"),
    ({"grid": GRID, "max_concurrent": 0}, "invalid_grid"),
    ({"grid": GRID, "scheduler": "asha", "overrides": ["num_epochs=1"]}, "invalid_grid"),
])
def test_bad_input_is_refused_and_writes_nothing(me, kwargs, code):
    d = ready_dataset(me)
    with pytest.raises(InvalidInput) as err:
        sweeps.create_sweep(me, d.id, preset_id="conservative", submit=False, **kwargs)
    assert err.value.code == code and "\n" not in str(err.value)
    assert _counts() == (0, 0)


def test_unknown_dataset_refused(me):
    with pytest.raises(NotFound):
        sweeps.create_sweep(me, "no-such-dataset", grid=GRID, submit=False)
    assert _counts() == (0, 0)


def test_budget_admission_sums_the_trials(me):
    d = ready_dataset(me)
    set_budget(me, me.id, 0.01)
    with session_scope() as s:
        add_cost(s, me.id, "compute", 0.02)
    with pytest.raises(BudgetExceeded) as err:
        sweeps.create_sweep(me, d.id, grid=GRID, submit=False)
    assert "4 trials" in str(err.value) and "allow-over-budget" in str(err.value)
    assert _counts() == (0, 0)
    sw = sweeps.create_sweep(me, d.id, grid=GRID, allow_over_budget=True, submit=False)
    assert sw.budget_decision["over_budget"] and sw.budget_decision["confirmed_over_budget"]


def test_cancel_ends_every_trial(me):
    d = ready_dataset(me)
    sw = sweeps.create_sweep(me, d.id, grid=GRID, submit=False)
    done = sweeps.cancel_sweep(me, sw.id)
    assert done.status == "cancelled" and {t.status for t in done.trials} == {"cancelled"}
    with pytest.raises(InvalidTransition):
        sweeps.cancel_sweep(me, sw.id)


def test_best_trial_is_the_lowest_validation_loss_of_the_completed(me):
    d = ready_dataset(me)
    sw = sweeps.create_sweep(me, d.id, grid=GRID, submit=False)
    a, b, c, e = (t.id for t in sw.trials)
    with session_scope() as s:
        for job_id, loss in ((a, 2.0), (b, 1.5)):
            s.execute(update(TrainingJob).where(TrainingJob.id == job_id).values(
                status="completed", artifact_id=f"art-{job_id[:8]}",
                current_metrics={"validation_loss": loss}))
        s.execute(update(TrainingJob).where(TrainingJob.id == c).values(
            status="running", current_metrics={"validation_loss": 0.5}))
    assert sp.trial_stopped_early(c, 1, 0.5)
    assert sp.mark_running(sw.id)
    assert sp.finish_sweep(sw.id) == b
    got = sweeps.get_sweep(me, sw.id)
    assert got.status == "completed" and got.best_job_id == b
    by_id = {t.id: t for t in got.trials}
    assert by_id[b].sweep_trial["best"] and not by_id[a].sweep_trial["best"]
    assert by_id[c].status == "cancelled" and by_id[c].sweep_trial["stopped_early"]
    assert "stopped early by ASHA" in by_id[c].error_message
    assert by_id[e].status == "failed"  # Tune never ended it: nothing left active
    assert got.counts() == {"completed": 2, "stopped_early": 1, "failed": 1, "cancelled": 0,
                            "active": 0}


def test_a_sweep_never_submitted_is_reconciled_with_its_trials(me):
    d = ready_dataset(me)
    sw = sweeps.create_sweep(me, d.id, grid=GRID, submit=False)
    assert sweeps.reconcile_sweeps() == 0  # within the grace
    assert jobs.reconcile() == 0  # trials are the sweep's to reconcile
    with session_scope() as s:
        s.execute(update(Sweep).values(created_at=utcnow() - timedelta(hours=1)))
        s.execute(update(TrainingJob).values(created_at=utcnow() - timedelta(hours=1)))
    assert jobs.reconcile() == 0
    assert sweeps.reconcile_sweeps() == 1
    got = sweeps.get_sweep(me, sw.id)
    assert got.status == "failed" and "never submitted" in got.error_message
    assert {t.status for t in got.trials} == {"failed"}
