"""Altair charts used by the pages (built from plain data; no service calls here)."""
from __future__ import annotations

import altair as alt
import pandas as pd


def length_histogram(bins: list[dict], percentiles: dict | None = None) -> alt.Chart | None:
    """Conversation length distribution (tokens per conversation) as bars, with rules at the
    p10/p50/p90 percentiles. ``bins`` is ``[{bin_start, bin_end, count}]``. None when empty."""
    rows = [b for b in bins or [] if b.get("bin_end") is not None]
    if not rows:
        return None
    df = pd.DataFrame({"start": [float(b["bin_start"]) for b in rows],
                       "end": [float(b["bin_end"]) for b in rows],
                       "count": [int(b.get("count") or 0) for b in rows]})
    bars = alt.Chart(df).mark_bar(color="#4c78a8").encode(
        x=alt.X("start:Q", bin="binned", title="tokens per conversation",
                axis=alt.Axis(format=",d", tickMinStep=1)),  # token counts: whole numbers
        x2="end:Q",
        y=alt.Y("count:Q", title="conversations", axis=alt.Axis(format="d", tickMinStep=1)),
        tooltip=[alt.Tooltip("start:Q", title="from", format=",.0f"),
                 alt.Tooltip("end:Q", title="to", format=",.0f"),
                 alt.Tooltip("count:Q", title="conversations")],
    )
    marks = [(k, percentiles.get(k)) for k in ("p10", "p50", "p90")] if percentiles else []
    merged: dict[float, list[str]] = {}  # equal percentiles share one rule: "p10 = p50"
    for k, v in marks:
        if v is not None:
            merged.setdefault(float(v), []).append(k)
    if not merged:
        return bars.properties(height=260)
    pdf = pd.DataFrame({"label": [" = ".join(ks) for ks in merged.values()],
                        "value": list(merged)})
    rules = alt.Chart(pdf).mark_rule(color="#e45756", strokeDash=[4, 3]).encode(
        x="value:Q", tooltip=["label:N", alt.Tooltip("value:Q", format=",.0f")])
    labels = alt.Chart(pdf).mark_text(align="left", baseline="top", dx=3, color="#e45756").encode(
        x="value:Q", y=alt.value(2), text="label:N")
    return alt.layer(bars, rules, labels).properties(height=260)
