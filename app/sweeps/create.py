"""The Sweeps page's "New sweep" form: a ready dataset, a preset, the values to try per setting
(comma lists), how many trials run at once and the scheduler; the trial count, the summed estimate
and the budget decision are shown before anything is launched (``backend.sweeps.service.plan_sweep``,
which writes nothing), and Launch creates the sweep as ``brightrun sweeps create`` does."""
from __future__ import annotations

import streamlit as st

from app.ui.job_widgets import fmt_duration
from app.ui.widgets import handled, literal
from backend.costs import money_text
from backend.datasets import service as datasets
from backend.sweeps import service as sweeps
from backend.training.catalogs import PRESET_IDS

# the settings a sweep most often varies (docs/training.md "Hyperparameter sweeps"), with defaults
GRID_FIELDS = (("learning_rate", "5e-4,1e-3,2e-3"), ("lora_r", "8,16"), ("num_epochs", ""))
SCHEDULERS = {"fifo": "run every trial to the end", "asha": "ASHA: stop weak trials early"}


def grid_items(values: dict[str, str]) -> list[str]:
    """``--grid`` items from the form's comma lists; a blank field is not swept."""
    return [f"{name}={text.strip()}" for name, text in values.items() if text and text.strip()]


def _datasets(actor) -> dict[str, str]:
    page = datasets.list_datasets(actor, status="ready", per_page=100)
    return {d.id: d.name for d in page.items}


def _plan_line(plan: dict) -> str:
    trials, budget = plan["trials"], plan["budget"]
    line = (f"{len(trials)} trials · estimated {money_text(plan['cost'])} in all "
            f"({money_text(min(t['estimate']['cost']['total'] for t in trials))}–"
            f"{money_text(max(t['estimate']['cost']['total'] for t in trials))} each) · "
            f"{plan['evaluations']} evaluations per trial · "
            f"{fmt_duration(sum(t['estimate']['duration_s'] for t in trials))} of training in all")
    if budget.get("budget") is not None:
        line += (f" · this month {money_text(budget['month_spend'])} → "
                 f"{money_text(budget['projected'])} of your {money_text(budget['budget'])} budget")
    return line


def new_sweep(actor, *, expanded: bool) -> None:
    """The form; on Launch the new sweep is selected (``?sweep_id=``)."""
    with st.expander("New sweep", expanded=expanded, icon=":material/add:"):
        choices = _datasets(actor)
        if not choices:
            st.info("A sweep needs a ready dataset: upload one on the Datasets page first.")
            return
        c = st.columns([2, 1])
        dataset_id = c[0].selectbox("Dataset", list(choices), key="sweep_new_dataset",
                                    format_func=lambda i: choices[i])
        preset_id = c[1].selectbox("Preset", PRESET_IDS, index=PRESET_IDS.index("balanced"),
                                   key="sweep_new_preset")
        st.caption("Values to try, comma-separated; every combination is one trial (a blank "
                   "field keeps the preset's value).")
        cols = st.columns(len(GRID_FIELDS))
        values = {name: cols[i].text_input(name, value=default, key=f"sweep_new_{name}")
                  for i, (name, default) in enumerate(GRID_FIELDS)}
        c = st.columns(3)
        max_concurrent = c[0].number_input("Trials at once", 1, sweeps.MAX_CONCURRENT, 2,
                                           key="sweep_new_concurrent")
        scheduler = c[1].selectbox("Scheduler", list(SCHEDULERS), key="sweep_new_scheduler",
                                   format_func=SCHEDULERS.get)
        samples = c[2].number_input("Seeds per combination", 1, 8, 1, key="sweep_new_samples")
        name = st.text_input("Name (optional)", key="sweep_new_name", max_chars=200)
        grid = grid_items(values)
        if not grid:
            st.warning("Give at least one setting values to try.")
            return
        args = dict(preset_id=preset_id, grid=grid, samples=int(samples),
                    max_concurrent=int(max_concurrent), scheduler=scheduler)
        plan = None
        with handled():
            plan = sweeps.plan_sweep(actor, dataset_id, **args)
        if plan is None:
            return
        st.markdown(f"**{_plan_line(plan)}**")
        over = plan["budget"]["over_budget"]
        confirmed = over and st.checkbox("Start it anyway, over the monthly budget",
                                         key="sweep_new_over_budget")
        if over and not confirmed:
            st.warning("This sweep would take this month's spend over your budget.")
        if st.button("Launch sweep", type="primary", key="sweep_new_launch",
                     disabled=over and not confirmed, icon=":material/rocket_launch:"):
            with handled():
                sw = sweeps.create_sweep(actor, dataset_id, allow_over_budget=bool(confirmed),
                                         name=name or None, **args)
                st.session_state.pop("sweeps_pick", None)
                st.query_params["sweep_id"] = sw.id
                st.toast(f"Sweep {literal(sw.name or sw.id)} launched: {sw.trial_count} trials")
                st.rerun()
