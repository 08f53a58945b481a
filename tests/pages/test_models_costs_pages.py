"""Models (list, sort, filter, detail with quality / lineage / loss curve, zip and per-file
downloads, presigned links on S3, edit, delete, train again, playground) and Costs (totals, by
type / day / job, budget setting and its 80 % / 100 % alert states, all users for admins)."""
from __future__ import annotations

import io
import zipfile

import pytest

from app.ui.widgets import literal
from backend import adapters as models
from backend.accounts.users import create_user, get_user, set_budget
from backend.costs import add_cost
from backend.db.session import session_scope
from backend.jobs import progress as jp
from backend.jobs import service as jobs
from tests.pages.conftest import TIMEOUT, make_dataset, open_app, texts
from tests.pages.job_helpers import finished_job, new_job, run_job


def _metrics(at) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


def _links(at, page: str) -> list[tuple[str, str]]:
    return [(p.proto.label, p.proto.query_string) for p in at.get("page_link")
            if p.proto.page == page]


def _model_names(at) -> list[str]:
    return [m.value for m in at.main.markdown if m.value.startswith("**")
            and m.value.endswith(("v1", "v2", "v3"))]


# ----- Models ------------------------------------------------------------------------------------
def test_model_of_a_failed_job_is_absent(actor):
    d = make_dataset(actor, "d")
    job = new_job(actor, d.id, name="broken")
    run_job(job.id)
    jp.fail_job(job.id, "loss became NaN")
    at = open_app("models")
    assert not at.exception, at.exception
    assert "No models yet" in texts(at)
    at = open_app("models", {"id": "no-such-model"})
    assert not at.exception, at.exception
    assert any("not found" in e.value.lower() for e in at.error)


def test_models_list_sort_filter_and_literal_names(actor, tmp_path):
    d = make_dataset(actor, "d")
    _, first = finished_job(actor, d.id, tmp_path, name="first")
    _, second = finished_job(actor, d.id, tmp_path, name="second")
    models.update_model(actor, first, name="<b>Bold</b> *adapter*")
    with session_scope() as s:  # the second model is better (lower validation loss)
        from backend.db.models import ModelArtifact
        row = s.get(ModelArtifact, second)
        row.quality_metrics = {**row.quality_metrics, "final_validation_loss": 0.9}
    at = open_app("models")
    assert not at.exception, at.exception
    assert _model_names(at) == [f"**{literal('second adapter')}** v2",
                                f"**{literal('<b>Bold</b> *adapter*')}** v1"]
    assert ":green-badge[:material/verified: excellent]" in texts(at)
    at.selectbox(key="models_sort").select("name").run(timeout=TIMEOUT)
    assert _model_names(at)[0].startswith(f"**{literal('<b>Bold</b>')}")
    models.update_model(actor, first, status="deployed")
    at.selectbox(key="models_status").select("deployed").run(timeout=TIMEOUT)
    assert len(_model_names(at)) == 1
    at.text_input(key="models_search").input("zzz").run(timeout=TIMEOUT)
    assert "No models match these filters." in texts(at)


def test_model_detail_metrics_lineage_curve_and_downloads(actor, tmp_path, media):
    d = make_dataset(actor, "Support <v4>")
    job_id, model_id = finished_job(actor, d.id, tmp_path, name="detail")
    at = open_app("models")
    at.button(key=f"models_open_{model_id}").click().run(timeout=TIMEOUT)
    assert not at.exception, at.exception
    assert at.query_params["id"] in (model_id, [model_id])
    m = _metrics(at)
    assert (m["Final training loss"], m["Final validation loss"], m["Best epoch"]) == (
        "1.4000", "1.5000", "1")
    assert m["Perplexity"] == "4.48" and m["Tokens processed"] == "3,000"
    assert (literal("Support <v4>"), f"id={d.id}") in _links(at, "datasets")
    assert any(q == f"job_id={job_id}" for _, q in _links(at, "monitor"))
    assert at.get("vega_lite_chart")  # the loss curve from the job's metrics
    config = at.dataframe[0].value
    values = dict(zip(config["field"], config["value"]))
    assert values["lora_rank"] == "16" and values["eval_every_steps"] == "—"  # unset: no "None"
    assert "None" not in values.values()
    assert at.button(key="models_train_again").label == "Train again"  # short: never cut off
    labels = {b.proto.label for b in at.get("download_button")}
    assert any(label.startswith("Download all (.zip") for label in labels)
    archive = zipfile.ZipFile(io.BytesIO(media["detail-adapter-v1.zip"]))
    assert "adapter_model.safetensors" in archive.namelist()
    assert archive.read("adapter_model.safetensors") == b"x" * 100
    assert media["adapter_config.json"] == b"{}"  # each file has its own button


def test_edit_and_delete_model(actor, tmp_path):
    d = make_dataset(actor, "d")
    _, model_id = finished_job(actor, d.id, tmp_path, name="edit me")
    at = open_app("models", {"id": model_id})
    at.text_input(key="models_edit_name").input("Renamed <i>x</i>")
    at.text_area(key="models_edit_description").input("Use for **support** <script>")
    at.selectbox(key="models_edit_status").select("deployed")
    at.button(key="models_edit_save").click().run(timeout=TIMEOUT)
    assert not at.exception, at.exception
    m = models.get_model(actor, model_id)
    assert (m.name, m.status) == ("Renamed <i>x</i>", "deployed")
    page = texts(at)
    assert "Saved." in page and literal("Use for **support** <script>") in page
    assert ":green-badge[:material/rocket_launch: deployed]" in page
    at.selectbox(key="models_edit_status").select("archived")
    at.button(key="models_edit_save").click().run(timeout=TIMEOUT)
    assert models.get_model(actor, model_id).status == "archived"
    at.button(key="models_delete").click().run(timeout=TIMEOUT)
    at.button(key="models_delete_confirm").click().run(timeout=TIMEOUT)
    assert not at.exception, at.exception
    assert models.list_models(actor).total == 0
    assert f"Deleted {literal('Renamed <i>x</i>')} v1." in texts(at)
    assert "No models yet" in texts(at)


def test_train_again_from_this_adapter(actor, tmp_path, monkeypatch):
    calls: list[str] = []
    monkeypatch.setattr(jobs, "submit_job", lambda job_id: calls.append(job_id))
    d = make_dataset(actor, "d")
    make_dataset(actor, "another")
    _, parent = finished_job(actor, d.id, tmp_path, name="parent", preset_id="conservative")
    at = open_app("models", {"id": parent})
    at.button(key="models_train_again").click().run(timeout=TIMEOUT)
    assert not at.exception, at.exception
    assert "Training again from the adapter" in texts(at)
    assert at.selectbox(key="configure_dataset").value == d.id
    assert at.number_input(key="configure_lora_rank").value == 8  # the parent's settings
    at.switch_page("../pages/configure.py")  # AppTest would rerun the page it was switched to last
    at.button(key="configure_start").click().run(timeout=TIMEOUT)
    assert not at.exception, at.exception
    assert calls, [e.value for e in at.error]
    child = jobs.get_job(actor, calls[0])
    assert child.parent_model_id == parent and child.preset_id == "conservative"


def test_playground_answers_with_base_and_adapter(actor, tmp_path, tiny_model_dir):
    d = make_dataset(actor, "d")
    _, model_id = finished_job(actor, d.id, tmp_path, name="play", real=True,
                               base_dir=tiny_model_dir)
    at = open_app("models", {"id": model_id})
    at.text_area(key="models_play_prompt").input("Where is my order?")
    at.button(key="models_play_run").click().run(timeout=120)
    assert not at.exception, at.exception
    result = at.session_state["models_play_result"]
    assert result["model_id"] == model_id and isinstance(result["base"], str)
    assert result["adapter"] and result["base"] != result["adapter"]  # a random LoRA changes it
    page = texts(at)
    assert "**Base model** ·" in page and "**Base + adapter** · play adapter" in page


def test_a_held_out_prompt_is_asked_in_its_conversation(tiny_model_dir):
    """The Playground gives the model what the training samples gave it: the rendered
    conversation (system prompt, earlier turns, generation prompt), token for token."""
    from transformers import AutoTokenizer

    from app.models.playground import prompt_ids
    from ray_jobs.worker.samples import choose_prompts, render

    tok = AutoTokenizer.from_pretrained(str(tiny_model_dir))
    turns = [{"role": "system", "content": "You are Nora."},
             {"role": "user", "content": "I lost my card."},
             {"role": "assistant", "content": "Freeze it in the app."},
             {"role": "user", "content": "Done. Now what?"},
             {"role": "assistant", "content": "Order a new one."}]
    [sample] = render(tok, choose_prompts([turns]))
    got = prompt_ids(tok, sample.question, sample.text)["input_ids"][0].tolist()
    assert got == tok(sample.text, add_special_tokens=False)["input_ids"]
    alone = prompt_ids(tok, sample.question)["input_ids"][0].tolist()
    assert len(alone) < len(got)  # on its own: one user turn, no system prompt or history
    assert tok.decode(got).count("Nora") == 1 and "Nora" not in tok.decode(alone)


@pytest.mark.s3
def test_presigned_links_on_s3(s3_env, tmp_path):
    from backend.accounts.users import ensure_local_user

    actor = ensure_local_user()
    d = make_dataset(actor, "d")
    _, model_id = finished_job(actor, d.id, tmp_path, name="remote")
    at = open_app("models", {"id": model_id})
    assert not at.exception, at.exception
    urls = [b.proto.url for b in at.get("link_button")]
    assert len(urls) == len(models.model_files(actor, model_id)) >= 3
    assert all("X-Amz-Expires=3600" in u for u in urls)
    assert "Presigned links, valid for 60 min" in texts(at)


# ----- Costs -------------------------------------------------------------------------------------
def _record(actor, d, name: str, amount: float, kind: str = "compute") -> str:
    job = new_job(actor, d.id, name=name)
    with session_scope() as s:
        add_cost(s, actor.id, kind, amount, job_id=job.id)
    return job.id


def test_costs_totals_by_type_day_and_job(actor):
    d = make_dataset(actor, "d")
    _record(actor, d, "<b>Big</b> run", 12.5)
    _record(actor, d, "small", 0.5, "data_transfer")
    with session_scope() as s:
        add_cost(s, actor.id, "storage", 0.25)
    at = open_app("costs")
    assert not at.exception, at.exception
    m = _metrics(at)
    assert (m["Total"], m["Compute"], m["Storage"], m["Data transfer"]) == (
        "$13.25", "$12.50", "$0.25", "$0.50")
    by_job = at.dataframe[0].value
    assert list(by_job["job"]) == ["<b>Big</b> run", "small", "storage / other"]
    assert list(by_job["amount"]) == ["$12.50", "$0.50", "$0.25"]
    assert [round(x, 4) for x in by_job["share"]] == [round(12.5 / 13.25, 4),
                                                     round(0.5 / 13.25, 4), round(0.25 / 13.25, 4)]
    assert at.get("vega_lite_chart")  # by day
    assert "No monthly budget set" in texts(at)


def test_tiny_costs_are_not_shown_as_zero(actor):
    import json

    d = make_dataset(actor, "d")
    _record(actor, d, "cpu run", 0.0004)
    _record(actor, d, "another", 0.0012)
    at = open_app("costs")
    assert not at.exception, at.exception
    m = _metrics(at)
    # one rule on every page: to the cent, "< $0.01" under a cent, no share beside such a row
    assert (m["Total"], m["Compute"], m["Storage"]) == ("< $0.01", "< $0.01", "$0.00")
    by_job = at.dataframe[0].value
    assert list(by_job["amount"]) == ["< $0.01", "< $0.01"]
    assert by_job["share"].isna().all()
    home = open_app("home")
    assert _metrics(home)["Spend this month"] == "< $0.01"
    (chart,) = at.get("vega_lite_chart")
    y = json.loads(chart.proto.spec)["encoding"]["y"]
    assert y["axis"]["format"] == "$,.4f"  # distinct ticks ($0.0005, $0.0010…), not "$0.00"


def test_one_day_of_spend_is_one_day_wide(actor):
    import json
    from datetime import datetime, timezone

    from app.ui.charts import spend_by_day_chart

    d = make_dataset(actor, "d")
    _record(actor, d, "run", 1.5)
    with session_scope() as s:
        add_cost(s, actor.id, "storage", 0.25)
    at = open_app("costs")
    assert not at.exception, at.exception
    (chart,) = at.get("vega_lite_chart")
    spec = json.loads(chart.proto.spec)
    x = spec["encoding"]["x"]
    assert x["type"] == "temporal" and spec["encoding"]["x2"]["field"] == "end"
    now = datetime.now(timezone.utc)
    first, after = x["scale"]["domain"]  # the whole calendar month, whatever the spend
    assert (first["year"], first["month"], first["date"]) == (now.year, now.month, 1)
    assert (after["month"], after["date"]) == (now.month % 12 + 1, 1)
    assert spec["encoding"]["y"]["axis"]["format"] == "$,.2f"
    # bars run from 03:00 to 21:00 of their day, stacked compute under storage
    df = spend_by_day_chart([{"day": "2026-02-03", "cost_type": "storage", "amount": 0.25},
                             {"day": "2026-02-03", "cost_type": "compute", "amount": 1.5},
                             {"day": "2026-02-10", "cost_type": "compute", "amount": 2.0}],
                            "2026-02").data
    assert list(df["bottom"]) == [0.0, 1.5, 0.0] and list(df["top"]) == [1.5, 1.75, 2.0]
    assert (df["end"] - df["start"]).dt.total_seconds().tolist() == [18 * 3600] * 3
    assert spend_by_day_chart([], "2026-02") is None


def test_budget_setting_and_alert_states(actor):
    d = make_dataset(actor, "d")
    _record(actor, d, "run", 85.0)
    at = open_app("costs")
    at.number_input(key="costs_budget").set_value(0.0)
    at.button(key="costs_budget_save").click().run(timeout=TIMEOUT)
    assert any("positive" in e.value for e in at.error)
    assert get_user(actor.id).monthly_budget is None
    at.number_input(key="costs_budget").set_value(100.0)
    at.button(key="costs_budget_save").click().run(timeout=TIMEOUT)
    assert not at.exception, at.exception
    assert get_user(actor.id).monthly_budget == 100.0
    page = texts(at)
    assert "Monthly budget set to $100.00." in page
    assert any("80 % of the budget reached (high)" in w.value for w in at.warning)
    assert at.number_input(key="costs_budget").value == 100.0
    at.number_input(key="costs_budget").set_value(80.0)
    at.button(key="costs_budget_save").click().run(timeout=TIMEOUT)
    assert any("Over budget (critical)" in e.value for e in at.error)
    at.button(key="costs_budget_remove").click().run(timeout=TIMEOUT)
    assert get_user(actor.id).monthly_budget is None and "Budget removed." in texts(at)


def test_admin_sees_all_users(actor):
    d = make_dataset(actor, "d")
    _record(actor, d, "mine", 2.0)
    other = create_user("bea@example.com", "Bea", "password-bea")
    with session_scope() as s:
        add_cost(s, other.id, "compute", 3.0)
    at = open_app("costs")
    assert _metrics(at)["Total"] == "$2.00"
    at.toggle(key="costs_everyone").set_value(True).run(timeout=TIMEOUT)
    assert not at.exception, at.exception
    assert _metrics(at)["Total"] == "$5.00"
    by_user = at.dataframe[1].value
    assert dict(zip(by_user["user"], by_user["amount"])) == {"bea@example.com": "$3.00",
                                                             "local@brightrun.local": "$2.00"}
    set_budget(actor, actor.id, 10.0)
    at.run(timeout=TIMEOUT)
    assert any("Within budget" in s.value for s in at.success)  # the budget stays your own
