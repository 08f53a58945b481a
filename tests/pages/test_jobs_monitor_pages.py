"""Jobs (list, status filter, literal names, compare runs) and Monitor (job from the URL / session /
picker, metrics and logs written by the progress sink, level filter, stage indicator, cancel with
confirmation, failed job's error and stack, completed job's model link, same view on reload)."""
from __future__ import annotations

import json
from datetime import timedelta

from app.ui.job_widgets import RECONCILE_EVERY_S, maybe_reconcile
from app.ui.widgets import literal
from backend.db.models import TrainingJob, utcnow
from backend.db.session import session_scope
from backend.jobs import progress as jp
from backend.jobs import service as jobs
from tests.pages.conftest import TIMEOUT, make_dataset, open_app, texts
from tests.pages.job_helpers import finished_job, new_job, run_job

RUNNING_BADGE = ":orange-badge[:material/play_circle: running]"


def _links(at, page: str) -> list[tuple[str, str]]:
    return [(p.proto.label, p.proto.query_string) for p in at.get("page_link")
            if p.proto.page == page]


def _metrics(at) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


def _charts(at) -> list:
    return at.get("vega_lite_chart")


def _step_axes(spec) -> list[dict]:
    """The axis of every x encoding on the step field, anywhere in a (layered) Vega-Lite spec."""
    found = []
    if isinstance(spec, dict):
        x = (spec.get("encoding") or {}).get("x") or {}
        if x.get("field") == "step":
            found.append(x.get("axis") or {})
        for value in spec.values():
            found += _step_axes(value)
    elif isinstance(spec, list):
        for value in spec:
            found += _step_axes(value)
    return found


def _log_text(at) -> str:
    return "\n".join(c.value for c in at.code)


# ----- Jobs --------------------------------------------------------------------------------------
def test_jobs_list_shows_rows_literally_and_filters(actor):
    d = make_dataset(actor, "Support *stars* <b>")
    running = new_job(actor, d.id, name="<script>x</script> [link](http://e.x)")
    run_job(running.id, started_minutes_ago=5)
    new_job(actor, d.id, name="queued one", preset_id="aggressive")
    at = open_app("jobs")
    assert not at.exception, at.exception
    links = _links(at, "monitor")
    assert (literal("<script>x</script> [link](http://e.x)"), f"job_id={running.id}") in links
    assert len(links) == 2
    page = texts(at)
    assert literal("Support *stars* <b>") in page and "<b>" not in page
    assert RUNNING_BADGE in page and "aggressive" in page
    assert "50 %" in [p.proto.text for p in at.get("progress")]
    assert "5 min" in page  # duration of the running job
    at.selectbox(key="jobs_status").select("running").run(timeout=TIMEOUT)
    assert [q for _, q in _links(at, "monitor")] == [f"job_id={running.id}"]
    at.selectbox(key="jobs_status").select("failed").run(timeout=TIMEOUT)
    assert "No failed jobs." in texts(at)


def test_compare_runs_overlays_losses_and_diffs_configs(actor):
    d = make_dataset(actor, "d")
    a = new_job(actor, d.id, name="rank 8", preset_id="conservative")
    b = new_job(actor, d.id, name="rank 32", preset_id="aggressive")
    run_job(a.id)
    run_job(b.id)
    at = open_app("jobs")
    assert not _charts(at)
    at.multiselect(key="jobs_compare").select(a.id).select(b.id).run(timeout=TIMEOUT)
    assert not at.exception, at.exception
    assert len(_charts(at)) == 1
    diff = at.dataframe[0].value
    rows = dict(zip(diff["field"], diff.drop(columns="field").values.tolist()))
    assert rows["lora_rank"] == ["8", "32"] and rows["preset"] == ["conservative", "aggressive"]
    assert "seed" not in rows  # same in both: hidden until "Show every field"
    at.toggle(key="jobs_compare_all").set_value(True).run(timeout=TIMEOUT)
    assert "seed" in list(at.dataframe[0].value["field"])


# ----- Monitor -----------------------------------------------------------------------------------
def test_monitor_shows_live_metrics_logs_and_stage(actor):
    d = make_dataset(actor, "Orders <i>v2</i>")
    job = new_job(actor, d.id, name="Live **run**", hardware_id="A100-80GB")
    run_job(job.id, started_minutes_ago=3)
    at = open_app("monitor", {"job_id": job.id})
    assert not at.exception, at.exception
    page = texts(at)
    assert literal("Live **run**") in page and literal("Orders <i>v2</i>") in page
    assert RUNNING_BADGE in page and "1 × A100\\-80GB" in page
    assert ":blue[:material/pending: **Training**]" in page  # stage indicator
    m = _metrics(at)
    assert m["Training loss"] == "1.5000" and m["Validation loss"] == "1.6000"
    from backend.jobs.figures import get_figures  # the one definition every page shows
    fig = get_figures(actor, job.id)
    assert m["Avg throughput (tokens/s)"] == f"{fig.throughput:,.0f}"
    assert m["Cost so far"].startswith("$")
    assert m["ETA"].startswith(("1 min", "2 min")) and m["Running for"].startswith("3 min")
    assert len(_charts(at)) == 3  # loss, learning rate, throughput
    logs = _log_text(at)
    assert "loaded 12 conversations" in logs and "truncated at max_seq_length" in logs
    at.selectbox(key="monitor_log_level").select("WARNING").run(timeout=TIMEOUT)
    logs = _log_text(at)
    assert "truncated at max_seq_length" in logs and "loaded 12 conversations" not in logs
    # progress arrives: a fresh run (a reload, or a second tab) reads it from the database
    sink = run_job(job.id, steps=10, start=False)
    again = open_app("monitor", {"job_id": job.id})
    assert _metrics(again)["Training loss"] == "0.5000"
    other_tab = _metrics(open_app("monitor", {"job_id": job.id}))
    assert {k: v for k, v in _metrics(again).items() if k != "ETA"} == {
        k: v for k, v in other_tab.items() if k != "ETA"}  # the ETA counts down in between
    sink.failed("boom", "")


def _due_in(job_id: str, minutes: float) -> None:
    with session_scope() as s:
        s.get(TrainingJob, job_id).estimated_completion_at = utcnow() + timedelta(minutes=minutes)


def test_monitor_eta_fits_its_card_and_steps_are_whole_numbers(actor):
    d = make_dataset(actor, "d")
    job = new_job(actor, d.id, name="eta")
    run_job(job.id, steps=5)
    _due_in(job.id, 90.5)
    at = open_app("monitor", {"job_id": job.id})
    assert not at.exception, at.exception
    assert _metrics(at)["ETA"] == "1.5 h"  # short; the exact time is in the caption
    assert any(c.value.startswith("finishes at ") and "(in 1 h 30 min)" in c.value
               for c in at.caption)
    _due_in(job.id, -1)
    assert _metrics(open_app("monitor", {"job_id": job.id}))["ETA"] == "soon"
    specs = [json.loads(c.proto.spec) for c in _charts(at)]
    axes = [axis for spec in specs for axis in _step_axes(spec)]
    assert len(specs) == 3 and len(axes) >= 3  # loss, learning rate, throughput
    assert all(a.get("format") == "d" and a.get("tickMinStep") == 1 for a in axes)


def test_monitor_picks_job_from_session_or_latest_and_keeps_it_in_the_url(actor):
    d = make_dataset(actor, "d")
    old = new_job(actor, d.id, name="older")
    latest = new_job(actor, d.id, name="latest")
    at = open_app("monitor")
    assert not at.exception, at.exception
    assert at.query_params["job_id"] in (latest.id, [latest.id])
    assert literal("latest") in texts(at)
    at.selectbox(key="monitor_job").select(old.id).run(timeout=TIMEOUT)
    assert at.query_params["job_id"] in (old.id, [old.id])
    assert at.session_state["monitor_job_id"] == old.id
    assert literal("older") in [s.value for s in at.subheader]


def test_monitor_cancel_with_confirmation(actor):
    d = make_dataset(actor, "d")
    job = new_job(actor, d.id, name="to cancel")
    run_job(job.id)
    at = open_app("monitor", {"job_id": job.id})
    at.button(key="monitor_cancel").click().run(timeout=TIMEOUT)
    assert "Cancel this job?" in texts(at)
    at.button(key="monitor_cancel_keep").click().run(timeout=TIMEOUT)
    assert jobs.get_job(actor, job.id).status == "running"
    at.button(key="monitor_cancel").click().run(timeout=TIMEOUT)
    at.button(key="monitor_cancel_confirm").click().run(timeout=TIMEOUT)
    assert not at.exception, at.exception
    assert jobs.get_job(actor, job.id).status == "cancelled"
    page = texts(at)
    assert ":gray-badge[:material/cancel: cancelled]" in page and "Cancelled." in page
    assert not [b for b in at.button if b.key == "monitor_cancel"]


def test_monitor_failed_job_shows_error_and_stack(actor):
    d = make_dataset(actor, "d")
    job = new_job(actor, d.id, name="fails")
    run_job(job.id)
    jp.fail_job(job.id, "CUDA out of memory <b>tried 9 GiB</b>",
                "Traceback (most recent call last):\n  File \"train.py\", line 1\nRuntimeError")
    at = open_app("monitor", {"job": job.id})  # the link in a job-failed notification
    assert not at.exception, at.exception
    errors = [e.value for e in at.error]
    assert any(literal("CUDA out of memory <b>tried 9 GiB</b>") in e for e in errors)
    assert any("RuntimeError" in c.value for c in at.code)  # stack in the expander
    assert ":red[:material/error: **Training** (failed)]" in texts(at)
    assert not [b for b in at.button if b.key == "monitor_cancel"]
    assert not _links(at, "models")


def test_monitor_completed_job_links_to_its_model(actor, tmp_path):
    d = make_dataset(actor, "d")
    job_id, model_id = finished_job(actor, d.id, tmp_path, name="done")
    at = open_app("monitor", {"job_id": job_id})
    assert not at.exception, at.exception
    assert ("Open the trained model", f"id={model_id}") in _links(at, "models")
    assert ":green[:material/check_circle: Completed]" in texts(at)
    assert "Training time" in _metrics(at) and "Final cost" in _metrics(at)  # not "so far"


def test_monitor_unknown_job_is_an_error(actor):
    at = open_app("monitor", {"job_id": "no-such-job"})
    assert not at.exception, at.exception
    assert any("not found" in e.value for e in at.error)


def test_reconcile_runs_at_most_every_ten_seconds(actor):
    assert maybe_reconcile(now=1e9) is True
    assert maybe_reconcile(now=1e9 + 1) is False
    assert maybe_reconcile(now=1e9 + RECONCILE_EVERY_S + 0.1) is True


def _max_step_in(spec) -> float:
    """The right end of the step axis of every x encoding in a (layered) spec."""
    ends = []
    if isinstance(spec, dict):
        x = (spec.get("encoding") or {}).get("x") or {}
        if x.get("field") == "step" and (x.get("scale") or {}).get("domain"):
            ends.append(x["scale"]["domain"][1])
        for value in spec.values():
            ends.append(_max_step_in(value))
    elif isinstance(spec, list):
        ends += [_max_step_in(v) for v in spec]
    return max([e for e in ends if e is not None], default=0)


def test_monitor_header_charts_and_checkpoints_show_one_moment(actor):
    """Points and checkpoints past the header's step (written between the reads) are not drawn;
    charts that lag the header say so; log lines come oldest first, by timestamp then id."""
    d = make_dataset(actor, "d")
    job = new_job(actor, d.id, name="moment")
    sink = run_job(job.id, steps=6)  # progress: step 6
    jp.append_metrics(job.id, [{"epoch": 1, "step": s, "training_loss": 1.0} for s in (7, 8)])
    jp.add_checkpoint(job.id, step=8, epoch=1, loss=1.0, bucket="local", path="file:///x/8",
                      size_bytes=10)
    jp.add_checkpoint(job.id, step=3, epoch=0, loss=2.0, bucket="local", path="file:///x/3",
                      size_bytes=10)
    at = open_app("monitor", {"job_id": job.id})
    assert not at.exception, at.exception
    assert jobs.get_job(actor, job.id).current_step == 6  # what the header shows
    specs = [json.loads(c.proto.spec) for c in _charts(at)]
    assert all(6 <= _max_step_in(s) < 7 for s in specs)  # up to the header's step, padded
    (table,) = at.dataframe
    assert list(table.value["step"]) == [3]  # the checkpoint at step 8 is after this moment
    # the header moves on while the trainer's points lag: the charts say how far they go
    sink.progress(1, 9, 12, 75.0, {"training_loss": 1.0}, 30.0)
    at = open_app("monitor", {"job_id": job.id})
    assert any("Charts up to step 8 of 9" in c.value for c in at.caption)
    # a line written late but stamped when it happened sits where it happened; lines with one
    # timestamp keep one order on every read (timestamp, then id)
    jp.add_logs(job.id, [{"level": "INFO", "message": "early", "timestamp":
                          utcnow() - timedelta(hours=1)}])
    when = utcnow()
    jp.add_logs(job.id, [{"level": "INFO", "message": f"same moment {i}", "timestamp": when}
                         for i in range(3)])
    lines = jobs.job_logs(actor, job.id)
    assert [ln.timestamp for ln in lines] == sorted(ln.timestamp for ln in lines)
    assert lines[0].message == "early"
    assert [ln.message for ln in lines] == [ln.message for ln in jobs.job_logs(actor, job.id)]
    sink.failed("boom", "")


def test_monitor_shows_the_start_up_timeline_while_a_job_waits(actor):
    import time as _time

    from backend.jobs import progress as jp

    d = make_dataset(actor, "d")
    job = new_job(actor, d.id, name="waiting")
    now = _time.time()
    jp.add_logs(job.id, [{"level": "INFO", "message": "start-up: driver",
                          "metadata": {"phase": "driver", "at": now}},
                         {"level": "INFO", "message": "start-up: group",
                          "metadata": {"phase": "worker_group", "at": now + 1.5}}])
    at = open_app("monitor", {"job_id": job.id})
    assert not at.exception, at.exception
    [box] = [e for e in at.expander if e.label.startswith("Start-up timeline")]
    table = " ".join(m.value for m in box.markdown)
    assert "job driver started" in table and "worker group requested" in table
    assert "| 1.5 s |" in table  # the group phase took 1.5 s after the driver's
    assert any(c.value.startswith("Waiting ") for c in box.caption)
