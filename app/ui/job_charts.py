"""Altair charts for training jobs and models: loss curves (training vs validation), learning
rate, throughput, a compare-runs overlay, the estimate's cost breakdown and spend by day.

Built from plain data (metric point objects or dicts); no service calls here.
"""
from __future__ import annotations

import math
from typing import Iterable

import altair as alt
import pandas as pd

COST_COLOURS = {"compute": "#4c78a8", "storage": "#f58518", "data_transfer": "#54a24b"}
RUN_COLOURS = ["#4c78a8", "#f58518", "#54a24b", "#e45756", "#b279a2", "#72b7b2", "#eeca3b",
               "#9d755d"]
COST_LABELS = {"compute": "compute", "storage": "storage", "data_transfer": "data transfer"}


MIN_SPAN_FRACTION = 0.1  # a value axis spans at least 10 % of its values' magnitude
EDGE_PAD = 0.06  # share of the span added on each side, so no mark sits on (or past) an edge
POINTS_UP_TO = 60  # lines of at most this many points also show each point


def value_domain(values: Iterable, *, min_span_fraction: float = MIN_SPAN_FRACTION,
                 pad: float = EDGE_PAD) -> list[float] | None:
    """[low, high] for a value axis: the values' range, widened to a minimum span (a 2-step run
    whose losses differ by 0.001 does not get a 0.001-tall axis) and padded on both sides; never
    below 0 when no value is negative. None when there is no finite value."""
    vals = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    if not vals:
        return None
    lo, hi = min(vals), max(vals)
    mid = (lo + hi) / 2
    span = max(hi - lo, abs(mid) * min_span_fraction, 1e-12)
    low, high = mid - span / 2 - span * pad, mid + span / 2 + span * pad
    if lo >= 0 > low:
        low = 0.0
    return [low, high]


def step_domain(steps: Iterable) -> list[float] | None:
    """[low, high] for the step axis: half a step (or a few per cent of the run) beyond the first
    and last point, so a lone point at the last step is drawn whole, not cut at the edge."""
    vals = [float(v) for v in steps if v is not None and math.isfinite(float(v))]
    if not vals:
        return None
    lo, hi = min(vals), max(vals)
    pad = max(0.5, (hi - lo) * 0.03)
    return [lo - pad, hi + pad]


def step_axis(steps: Iterable | None = None) -> alt.X:
    """Optimizer steps on x: whole numbers only (no 2.5 ticks on short runs), over a domain padded
    around ``steps`` when given."""
    domain = step_domain(steps) if steps is not None else None
    scale = alt.Scale(domain=domain, nice=False, zero=False) if domain else alt.Undefined
    return alt.X("step:Q", title="step", scale=scale,
                 axis=alt.Axis(format="d", tickMinStep=1))


def value_axis(field: str, values: Iterable, title: str | None, fmt: str | None = None) -> alt.Y:
    """A value on y over ``value_domain(values)``; ``fmt`` formats the ticks."""
    domain = value_domain(values)
    scale = alt.Scale(domain=domain, nice=False, zero=False) if domain else alt.Scale(zero=False)
    axis = alt.Axis(format=fmt) if fmt else alt.Undefined
    return alt.Y(f"{field}:Q", title=title, scale=scale, axis=axis)


def line_mark(chart: alt.Chart, n_points: int, **kw) -> alt.Chart:
    """Straight segments between the measured points (no smoothing that invents values between
    them), with a dot on each point while there are few."""
    return chart.mark_line(interpolate="linear", point=n_points <= POINTS_UP_TO, **kw)


def money_format(largest: float) -> str:
    """A d3 dollar format whose ticks stay distinct for ``largest`` (tiny spends get more
    decimals instead of a column of '$0.00')."""
    if largest >= 100:
        return "$,.0f"
    if largest >= 0.1 or largest <= 0:
        return "$,.2f"
    return f"$,.{min(6, math.ceil(-math.log10(largest)) + 1)}f"


def _get(point, name: str):
    return point.get(name) if isinstance(point, dict) else getattr(point, name, None)


def metrics_frame(points: Iterable) -> pd.DataFrame:
    """Metric points → one row per point (step, epoch, losses, learning rate, throughput)."""
    cols = ("step", "epoch", "training_loss", "validation_loss", "learning_rate", "throughput",
            "gradient_norm", "gpu_utilization")
    return pd.DataFrame([{c: _get(p, c) for c in cols} for p in points], columns=cols)


def loss_chart(points: Iterable, height: int = 280) -> alt.Chart | None:
    """Training loss as a line and validation loss as a line with dots, against the step."""
    df = metrics_frame(points)
    long = df.melt(id_vars=["step", "epoch"], value_vars=["training_loss", "validation_loss"],
                   var_name="series", value_name="loss").dropna(subset=["loss"])
    if long.empty:
        return None
    long["series"] = long["series"].map({"training_loss": "training",
                                         "validation_loss": "validation"})
    colour = alt.Color("series:N", title=None, scale=alt.Scale(
        domain=["training", "validation"], range=["#4c78a8", "#e45756"]),
        legend=alt.Legend(orient="top"))
    base = alt.Chart(long).encode(
        x=step_axis(long["step"]),
        y=value_axis("loss", long["loss"], "loss"),
        color=colour,
        tooltip=[alt.Tooltip("series:N"), alt.Tooltip("step:Q"), alt.Tooltip("epoch:Q"),
                 alt.Tooltip("loss:Q", format=".4f")])
    n = int((long["series"] == "training").sum())
    line = line_mark(base, n)
    dots = base.transform_filter(alt.datum.series == "validation").mark_point(filled=True, size=45)
    return alt.layer(line, dots).properties(height=height)


def series_chart(points: Iterable, field: str, title: str, fmt: str = ".3g",
                 colour: str = "#72b7b2", height: int = 200) -> alt.Chart | None:
    """One metric (``field``) against the step, or None when no point carries it."""
    df = metrics_frame(points)[["step", field]].dropna()
    if df.empty:
        return None
    return line_mark(alt.Chart(df), len(df), color=colour).encode(
        x=step_axis(df["step"]),
        y=value_axis(field, df[field], None, fmt),  # the page names it
        tooltip=[alt.Tooltip("step:Q"), alt.Tooltip(f"{field}:Q", title=title, format=fmt)],
    ).properties(height=height)


def compare_chart(runs: dict[str, list]) -> alt.Chart | None:
    """Loss curves of several runs overlaid: colour = run, dashed = validation."""
    frames = []
    for label, points in runs.items():
        df = metrics_frame(points)
        long = df.melt(id_vars=["step"], value_vars=["training_loss", "validation_loss"],
                       var_name="series", value_name="loss").dropna(subset=["loss"])
        long["series"] = long["series"].map({"training_loss": "training",
                                             "validation_loss": "validation"})
        long["run"] = label
        frames.append(long)
    data = pd.concat(frames) if frames else pd.DataFrame()
    if data.empty:
        return None
    return alt.Chart(data).mark_line(interpolate="linear", point=False).encode(
        x=step_axis(data["step"]),
        y=value_axis("loss", data["loss"], "loss"),
        color=alt.Color("run:N", title="run", scale=alt.Scale(range=RUN_COLOURS),
                        legend=alt.Legend(orient="top", labelLimit=260)),
        strokeDash=alt.StrokeDash("series:N", title=None, scale=alt.Scale(
            domain=["training", "validation"], range=[[1, 0], [5, 3]])),
        detail="series:N",
        tooltip=["run:N", "series:N", "step:Q", alt.Tooltip("loss:Q", format=".4f")],
    ).properties(height=320)


def spend_by_day_chart(by_day: list[dict]) -> alt.Chart | None:
    """Month-to-date spend per day, stacked by cost type. ``by_day``: [{day, cost_type, amount}]."""
    if not by_day:
        return None
    df = pd.DataFrame(by_day)
    df["type"] = df["cost_type"].map(lambda t: COST_LABELS.get(t, t))
    df["date"] = pd.to_datetime(df["day"]).dt.strftime("%b %d")
    order = list(dict.fromkeys(df.sort_values("day")["date"]))
    largest = float(df.groupby("date")["amount"].sum().max() or 0.0)
    return alt.Chart(df).mark_bar().encode(
        x=alt.X("date:O", title="day", sort=order, axis=alt.Axis(labelAngle=-45)),
        y=alt.Y("sum(amount):Q", title="spend ($)", stack="zero",
                axis=alt.Axis(format=money_format(largest), tickCount=5)),
        color=alt.Color("type:N", title="cost type", scale=alt.Scale(
            domain=[COST_LABELS[k] for k in COST_COLOURS], range=list(COST_COLOURS.values())),
            legend=alt.Legend(orient="top")),
        tooltip=[alt.Tooltip("day:N"), "type:N",
                 alt.Tooltip("sum(amount):Q", title="amount", format="$,.4f")],
    ).properties(height=280)


def budget_gauge(spend: float, budget: float) -> alt.Chart:
    """Spend as a bar against the budget; marks (and axis ticks) at 80 % (high) and 100 %
    (critical)."""
    top = max(budget * 1.1, spend * 1.05)
    colour = "#e45756" if spend >= budget else "#f58518" if spend >= 0.8 * budget else "#54a24b"
    x = alt.X("x:Q", title=None, scale=alt.Scale(domain=[0, top]),
              axis=alt.Axis(values=[0, 0.8 * budget, budget], grid=False,
                            format="$,.0f" if budget >= 10 else money_format(budget)))
    track = alt.Chart(pd.DataFrame({"x": [top]})).mark_bar(color="#eceff3", size=26).encode(x=x)
    bar = alt.Chart(pd.DataFrame({"x": [spend]})).mark_bar(color=colour, size=26).encode(
        x="x:Q", tooltip=[alt.Tooltip("x:Q", title="spent", format="$,.2f")])
    ticks = [alt.Chart(pd.DataFrame({"x": [value], "label": [label]})).mark_tick(
        color=tick_colour, thickness=3, size=34).encode(  # a rule with x alone draws nothing here
        x="x:Q", tooltip=["label:N", alt.Tooltip("x:Q", format="$,.2f")])
        for value, label, tick_colour in ((0.8 * budget, "80 % (high)", "#1f2328"),
                                          (budget, "100 % (critical)", "#b0211a"))]
    return alt.layer(track, bar, *ticks).properties(height=56)
