"""Costs: month-to-date spend (total, by type, by day, by job) against the monthly budget, with
the 80 % (high) and 100 % (critical) alert states and the budget setting. Admins and billing
admins can switch to all users (adds a by-user table)."""
from __future__ import annotations

import pandas as pd
import streamlit as st

from app.auth import current_user
from app.ui import charts, job_charts
from app.ui.job_widgets import fmt_money
from app.ui.widgets import handled, literal, page_path, show_error
from backend import costs
from backend.accounts import users
from backend.core.errors import BrightRunError

TYPE_LABELS = {"compute": "Compute", "storage": "Storage", "data_transfer": "Data transfer"}


def _totals(summary, everyone: bool) -> None:
    who = "all users" if everyone else "you"
    st.caption(f"Month to date ({summary.period}), {who}.")
    c = st.columns(4)
    c[0].metric("Total", fmt_money(summary.total))
    for col, (kind, label) in zip(c[1:], TYPE_LABELS.items()):
        col.metric(label, fmt_money(summary.by_type.get(kind, 0.0)))


def _alert(summary) -> None:
    text = (f"{fmt_money(summary.budget * summary.percent_used / 100)} of your "
            f"{fmt_money(summary.budget)} monthly budget spent ({summary.percent_used:.0f} %).")
    if summary.alert_level == "critical":
        st.error(f"**Over budget (critical).** {text} New jobs need an explicit confirmation.",
                 icon=":material/report:")
    elif summary.alert_level == "high":
        st.warning(f"**80 % of the budget reached (high).** {text}", icon=":material/warning:")
    else:
        st.success(f"Within budget. {text}", icon=":material/savings:")


def _save_budget(actor, amount: float | None) -> None:
    try:
        users.set_budget(actor, actor.id, amount)
    except BrightRunError as exc:
        st.session_state["costs_error"] = exc
        return
    st.session_state["costs_flash"] = ("Budget removed." if amount is None else
                                       f"Monthly budget set to {fmt_money(amount)}.")
    st.session_state.pop("costs_budget_for", None)


def _budget(actor, summary) -> None:
    st.markdown("#### Monthly budget")
    error = st.session_state.pop("costs_error", None)
    if error is not None:
        show_error(error)
    flash = st.session_state.pop("costs_flash", None)
    if flash:
        st.success(flash, icon=":material/check_circle:")
    if summary.budget:
        _alert(summary)
        st.altair_chart(job_charts.budget_gauge(summary.budget * summary.percent_used / 100,
                                                summary.budget), width="stretch")
        st.caption(f"Alerts at 80 % ({fmt_money(0.8 * summary.budget)}, high) and 100 % "
                   f"({fmt_money(summary.budget)}, critical) of the budget.")
    else:
        st.caption("No monthly budget set: jobs start without a budget check. Alerts come at "
                   "80 % (high) and 100 % (critical) once one is set.")
    if st.session_state.get("costs_budget_for") != summary.budget:
        st.session_state["costs_budget_for"] = summary.budget
        st.session_state["costs_budget"] = float(summary.budget or 0.0)
    c = st.columns([2, 1, 1], vertical_alignment="bottom")
    c[0].number_input("Monthly budget ($)", min_value=0.0, step=10.0, format="%.2f",
                      key="costs_budget",
                      help="Your spend limit per calendar month (UTC). Jobs that would exceed "
                           "it need a confirmation.")
    c[1].button("Save budget", key="costs_budget_save", type="primary", on_click=_save_typed,
                args=(actor,), width="stretch")
    if summary.budget:
        c[2].button("Remove budget", key="costs_budget_remove", on_click=_save_budget,
                    args=(actor, None), width="stretch")


def _save_typed(actor) -> None:
    _save_budget(actor, float(st.session_state.get("costs_budget") or 0.0))


def _breakdown(summary, everyone: bool) -> None:
    chart = charts.spend_by_day_chart(summary.by_day, summary.period)  # the whole month on x
    if chart is not None:
        st.markdown("#### By day")
        st.altair_chart(chart, width="stretch")
    st.markdown("#### By job")
    st.dataframe(pd.DataFrame(costs.by_job_rows(summary)), hide_index=True, width="stretch",
                 key="costs_by_job", column_config={
                     "job": st.column_config.TextColumn("job", width="large"),
                     "share": st.column_config.ProgressColumn(format="percent", min_value=0.0,
                                                              max_value=1.0)})
    if everyone and summary.by_user:
        st.markdown("#### By user")
        df = pd.DataFrame([{"user": r["user"], "amount": fmt_money(r["amount"])} for r in
                           sorted(summary.by_user, key=lambda r: -r["amount"])])
        st.dataframe(df, hide_index=True, width="stretch", key="costs_by_user")


def main() -> None:
    actor = current_user()
    st.title("Costs")
    everyone = False
    if actor.sees_all_costs:
        everyone = st.toggle("All users", key="costs_everyone",
                             help="Admins and billing admins: everyone's costs, with a by-user "
                                  "table. The budget below stays yours.")
    with handled():
        summary = costs.summary(actor, everyone=everyone)
        _totals(summary, everyone)
        _budget(actor, summary)
        if not summary.by_job:
            st.info("No costs recorded this month — costs accrue while training jobs run and "
                    "for stored objects.", icon=":material/payments:")
            st.page_link(page_path("jobs"), label="Training jobs", icon=":material/list_alt:")
            return
        _breakdown(summary, everyone)
    st.caption(literal("Prices: compute per worker-hour of the hardware catalog; storage and "
                       "data transfer at the catalog's list prices."))


main()
