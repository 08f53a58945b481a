"""Sweeps: hyperparameter sweeps on Ray Tune — start one (the New sweep form shows the trial count,
the summed estimate and the budget before launch; or ``brightrun sweeps create``), pick one, see its
trials (each a training job: outcome, stopped early by ASHA, validation loss, the best marked with
its adapter), their validation curves overlaid, and cancel a running sweep with every trial."""
from __future__ import annotations

import streamlit as st

from app.auth import current_user
from app.sweeps import create, view
from app.ui.widgets import handled
from backend.sweeps import service as sweeps

REFRESH_S = 5  # while a sweep runs, its part of the page is redrawn this often


def _cancel(actor, sw) -> None:
    if sw.status not in view.ACTIVE:
        return
    if not st.session_state.get("sweeps_confirm"):
        st.button("Cancel sweep", key="sweeps_cancel", icon=":material/cancel:",
                  on_click=lambda: st.session_state.update(sweeps_confirm=True))
        return
    st.warning("Cancel this sweep and every trial still running or queued?")
    c = st.columns(2)
    if c[0].button("Yes, cancel the sweep", key="sweeps_cancel_yes", type="primary"):
        with handled():
            sweeps.cancel_sweep(actor, sw.id)
            st.session_state["sweeps_confirm"] = False
            st.rerun()
    c[1].button("Keep it running", key="sweeps_cancel_no",
                on_click=lambda: st.session_state.update(sweeps_confirm=False))


def main() -> None:
    actor = current_user()
    st.title("Sweeps")
    items = []
    with handled():
        items = sweeps.list_sweeps(actor, per_page=100).items
    create.new_sweep(actor, expanded=not items)
    with handled():
        if not items:
            st.info("No sweeps yet. Start one above, or from a terminal: `brightrun sweeps create "
                    "--dataset ID --preset balanced --grid learning_rate=1e-4,5e-4,1e-3 "
                    "--grid lora_r=8,16 --max-concurrent 2 --scheduler asha`",
                    icon=":material/science:")
            return
        by_id = {s.id: s for s in items}
        wanted = st.query_params.get("sweep_id")
        ids = list(by_id)
        chosen = st.selectbox("Sweep", ids, key="sweeps_pick",
                              index=ids.index(wanted) if wanted in by_id else 0,
                              format_func=lambda i: view.sweep_label(by_id[i]))
        active = sweeps.get_sweep(actor, chosen).status in view.ACTIVE
    st.fragment(_live, run_every=REFRESH_S if active else None)(actor, chosen)


def _live(actor, sweep_id: str) -> None:
    """The sweep's summary, curves and trials, redrawn every few seconds while it runs."""
    with handled():
        sw = sweeps.get_sweep(actor, sweep_id)
        view.summary(sw)
        _cancel(actor, sw)
        st.markdown("#### Validation loss by trial")
        chart = view.curves_chart(sw, sweeps.sweep_curves(actor, sw.id))
        if chart is None:
            st.caption("No trial has reported a validation loss yet.")
        else:
            st.altair_chart(chart, width="stretch")
        st.markdown("#### Trials")
        view.trials_table(sw)


main()
