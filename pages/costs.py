"""Costs: month-to-date spend by type and by job, against the monthly budget."""
from __future__ import annotations

import streamlit as st

from app.auth import current_user
from app.widgets import handled, literal
from backend import costs


def main() -> None:
    actor = current_user()
    st.title("Costs")
    with handled():
        summary = costs.summary(actor)
        st.caption(f"Month to date ({summary.period}).")
        c = st.columns(4)
        c[0].metric("Total", f"${summary.total:,.2f}")
        for col, kind in zip(c[1:], ("compute", "storage", "data_transfer")):
            col.metric(kind.replace("_", " ").capitalize(),
                       f"${summary.by_type.get(kind, 0.0):,.2f}")
        if summary.budget:
            st.progress(min((summary.percent_used or 0) / 100.0, 1.0),
                        text=f"{summary.percent_used or 0:.0f} % of the ${summary.budget:,.2f} "
                             "monthly budget")
        if not summary.by_job:
            st.info("No costs recorded this month — costs accrue while training jobs run and "
                    "for stored objects.", icon=":material/payments:")
            return
        st.markdown("#### By job")
        for row in summary.by_job:
            st.markdown(f"{literal(row['job'])}: ${row['amount']:,.2f}")


main()
