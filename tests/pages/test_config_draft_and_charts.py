"""Pure parts of the dashboard, with tables: the Configure draft's URL encoding, the chart axes
(padded domains, minimum spans, straight lines, the single-length histogram), the Monitor's
snapshot cut and the text helpers."""
from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from types import SimpleNamespace

import pytest

from app.configure import draft as config_draft
from app.monitor.panels import as_of
from app.ui import charts, job_charts
from app.ui.widgets import fmt_time, short_label

KINDS = {"base_model": str, "target_modules": list, "learning_rate": float, "batch_size": int,
         "eval_every_steps": type(None)}
PRESET = {"base_model": "tiny", "target_modules": ["q_proj", "v_proj"], "learning_rate": 2e-4,
          "batch_size": 8, "eval_every_steps": None}


@pytest.mark.parametrize("values, expected", [
    (PRESET, {}),
    ({**PRESET, "batch_size": 1}, {"batch_size": "1"}),
    ({**PRESET, "learning_rate": 5e-4, "eval_every_steps": 3},
     {"learning_rate": "0.0005", "eval_every_steps": "3"}),
    ({**PRESET, "target_modules": ["q_proj"]}, {"target_modules": "q_proj"}),
])
def test_draft_to_query_names_only_what_differs(values, expected):
    d = {"preset": "balanced", "values": values, "hardware": "cpu-local", "workers": 2}
    assert config_draft.to_query(d, PRESET) == {"preset": "balanced", **expected,
                                                 "hardware": "cpu-local", "workers": "2"}


@pytest.mark.parametrize("values", [
    {**PRESET, "batch_size": 1, "learning_rate": 5e-4},
    {**PRESET, "eval_every_steps": 7, "target_modules": ["q_proj", "o_proj"]},
    {**PRESET, "base_model": "/models/my model"},
])
def test_draft_round_trips_through_the_url(values):
    d = {"preset": "balanced", "values": values, "hardware": "A100-80GB", "workers": 4}
    back = config_draft.from_query(config_draft.to_query(d, PRESET), KINDS, lambda p: PRESET)
    assert back == d


@pytest.mark.parametrize("query, expected", [
    ({}, None),                                               # a plain ?dataset_id= link
    ({"dataset_id": "x"}, None),
    ({"preset": "balanced", "batch_size": "lots"}, PRESET),   # bad text: the preset's value
    ({"preset": "balanced", "eval_every_steps": "none"}, PRESET),
])
def test_draft_from_a_url_without_or_with_bad_values(query, expected):
    back = config_draft.from_query(query, KINDS, lambda p: PRESET)
    assert (back if back is None else back["values"]) == expected


def test_unknown_preset_in_the_url_is_ignored():
    def presets(p):
        raise KeyError(p)
    assert config_draft.from_query({"preset": "nope"}, KINDS, presets) is None


# ----- axes --------------------------------------------------------------------------------------
@pytest.mark.parametrize("values, low, high", [
    ([8.1350, 8.1360], 7.68, 8.59),     # a 2-step run: not a 0.001-tall axis
    ([2.0, 1.0], 0.94, 2.06),           # a real range: padded 6 % each side
    ([0.0, 0.0001], 0.0, 0.0002),       # never below 0 when nothing is negative
    ([-1.0, 1.0], -1.12, 1.12),
])
def test_value_domain_has_a_minimum_span_and_padding(values, low, high):
    lo, hi = job_charts.value_domain(values)
    assert lo == pytest.approx(low, abs=0.05) and hi == pytest.approx(high, abs=0.05)
    assert lo < min(values) or min(values) == 0 == lo
    assert hi > max(values)


def test_value_domain_of_nothing():
    assert job_charts.value_domain([None, float("nan")]) is None


@pytest.mark.parametrize("steps, low, high", [([8], 7.5, 8.5), ([1, 2], 0.5, 2.5),
                                              ([0, 1000], -30, 1030)])
def test_step_domain_keeps_the_last_point_inside(steps, low, high):
    assert job_charts.step_domain(steps) == pytest.approx([low, high])


def _points(n, val_at=()):
    return [{"step": i, "epoch": 0, "training_loss": 8.0 - 0.001 * i,
             "validation_loss": 8.1 if i in val_at else None, "learning_rate": 1e-4,
             "throughput": 3400.0} for i in range(1, n + 1)]


def test_loss_chart_draws_straight_segments_and_whole_points():
    spec = job_charts.loss_chart(_points(8, val_at=(8,))).to_dict()
    line = spec["layer"][0]
    assert line["mark"]["interpolate"] == "linear" and line["mark"]["point"] is True
    x = line["encoding"]["x"]["scale"]["domain"]
    assert x[1] > 8  # the lone validation point at the last step is not cut at the edge
    y = line["encoding"]["y"]["scale"]["domain"]
    assert y[1] - y[0] > 0.5  # 8 points within 0.008 of each other: a sensible axis
    assert "monotone" not in json.dumps(spec)


def test_series_chart_is_straight_too():
    spec = job_charts.series_chart(_points(3), "throughput", "tokens/s").to_dict()
    assert spec["mark"]["interpolate"] == "linear"
    lo, hi = spec["encoding"]["y"]["scale"]["domain"]
    assert lo < 3400 < hi and hi - lo >= 340


def test_single_length_histogram_is_one_labelled_bar():
    spec = charts.length_histogram([{"bin_start": 57, "bin_end": 58, "count": 40}],
                                   {"p10": 57, "p50": 57, "p90": 57, "max": 57}).to_dict()
    text = json.dumps(spec)
    assert "p10 = p50 = p90" not in text and "all 40 conversation(s): 57 tokens" in text
    bar = spec["layer"][0]
    lo, hi = bar["encoding"]["x"]["scale"]["domain"]
    assert lo < 57 - 10 and hi > 57 + 10  # a narrow bar on a padded axis, not the full width


def test_a_spread_histogram_keeps_its_bins_and_rules():
    bins = [{"bin_start": 10, "bin_end": 20, "count": 3}, {"bin_start": 20, "bin_end": 30,
                                                          "count": 5}]
    text = json.dumps(charts.length_histogram(bins, {"p10": 12, "p50": 22, "p90": 28}).to_dict())
    assert "p50" in text and "all " not in text


# ----- Monitor snapshot, text --------------------------------------------------------------------
@pytest.mark.parametrize("step, kept", [(106, [80, 100]), (80, [80]), (0, [80, 100, 120]),
                                        (None, [80, 100, 120])])
def test_snapshot_never_runs_ahead_of_the_header(step, kept):
    items = [SimpleNamespace(step=s) for s in (80, 100, 120)]
    assert [i.step for i in as_of(items, step)] == kept


@pytest.mark.parametrize("text, limit, out", [("short", 10, "short"),
                                              ("Customer support tickets from March", 20,
                                               "Customer support ti…")])
def test_short_label_says_it_was_cut(text, limit, out):
    assert short_label(text, limit) == out and len(short_label(text, limit)) <= limit


def test_relative_time_does_not_wrap():
    text = fmt_time(datetime.now(timezone.utc) - timedelta(minutes=15))
    assert text == "15\u00a0min\u00a0ago" and " " not in text
