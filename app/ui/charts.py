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
    filled = [b for b in rows if int(b.get("count") or 0) > 0]
    if len(filled) == 1 and int(filled[0]["bin_end"]) - int(filled[0]["bin_start"]) <= 1:
        return single_length_bar(int(filled[0]["bin_start"]), int(filled[0]["count"]))
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


def single_length_bar(length: int, count: int) -> alt.Chart:
    """Every conversation has one length: one narrow bar at that length on a padded axis, labelled
    with what it says ("all 40 conversations: 57 tokens"), instead of one bar over the full width
    with "p10 = p50 = p90" on top."""
    half = max(0.5, length * 0.015)
    reach = max(10.0, length * 0.5)
    df = pd.DataFrame({"start": [length - half], "end": [length + half], "count": [count],
                       "length": [length],
                       "label": [f"all {count:,} conversation(s): {length:,} tokens"]})
    x = alt.X("start:Q", title="tokens per conversation",
              scale=alt.Scale(domain=[max(0.0, length - reach), length + reach], nice=False),
              axis=alt.Axis(format=",d", tickMinStep=1))
    y = alt.Y("count:Q", title="conversations", scale=alt.Scale(domain=[0, count * 1.25]),
              axis=alt.Axis(format="d", tickMinStep=1))
    tooltip = [alt.Tooltip("length:Q", title="tokens", format=",d"),
               alt.Tooltip("count:Q", title="conversations")]
    bar = alt.Chart(df).mark_bar(color="#4c78a8").encode(x=x, x2="end:Q", y=y, tooltip=tooltip)
    label = alt.Chart(df).mark_text(baseline="bottom", dy=-4, color="#1f2328").encode(
        x=alt.X("length:Q"), y="count:Q", text="label:N")
    return alt.layer(bar, label).properties(height=260)


def spend_by_day_chart(by_day: list[dict], period: str) -> alt.Chart | None:
    """Spend per day of the month ``period`` ("YYYY-MM"), stacked by cost type, on a time axis
    spanning the whole calendar month: one day is a ~1/30-wide bar however many days have spend.
    ``by_day``: [{day: "YYYY-MM-DD", cost_type, amount}]. None when empty."""
    from app.ui.job_charts import COST_COLOURS, COST_LABELS, money_format

    if not by_day:
        return None
    start = pd.Timestamp(f"{period}-01")
    end = start + pd.offsets.MonthBegin(1)
    order = {t: i for i, t in enumerate(COST_COLOURS)}
    df = pd.DataFrame(by_day)
    df["amount"] = df["amount"].astype(float)
    df["rank"] = df["cost_type"].map(lambda t: order.get(t, len(order)))
    df = df.sort_values(["day", "rank"]).reset_index(drop=True)
    df["top"] = df.groupby("day")["amount"].cumsum()  # stacked in pandas: x/x2 bars, y/y2 spans
    df["bottom"] = df["top"] - df["amount"]
    day = pd.to_datetime(df["day"])
    df["start"] = day + pd.Timedelta(hours=3)  # a gap between neighbouring days
    df["end"] = day + pd.Timedelta(hours=21)
    df["type"] = df["cost_type"].map(lambda t: COST_LABELS.get(t, t))
    df["date"] = day.dt.strftime("%b %d")
    df["day_total"] = df.groupby("day")["amount"].transform("sum")
    largest = float(df["top"].max() or 0.0)
    types = [COST_LABELS[k] for k in COST_COLOURS]
    return alt.Chart(df.drop(columns=["rank"])).mark_bar().encode(
        x=alt.X("start:T", title="day", scale=alt.Scale(domain=[
            alt.DateTime(year=start.year, month=start.month, date=1),
            alt.DateTime(year=end.year, month=end.month, date=1)]),
            axis=alt.Axis(format="%b %d", labelAngle=0, tickCount={"interval": "day",
                                                                   "step": 7})),
        x2="end:T",
        y=alt.Y("top:Q", title="spend ($)", scale=alt.Scale(domainMin=0),
                axis=alt.Axis(format=money_format(largest), tickCount=5)),
        y2="bottom:Q",
        color=alt.Color("type:N", title="cost type", scale=alt.Scale(
            domain=types, range=list(COST_COLOURS.values())), legend=alt.Legend(orient="top")),
        tooltip=[alt.Tooltip("date:N", title="day"), alt.Tooltip("type:N", title="cost type"),
                 alt.Tooltip("amount:Q", format="$,.4f"),
                 alt.Tooltip("day_total:Q", title="day total", format="$,.4f")],
    ).properties(height=280)
