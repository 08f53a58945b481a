"""Datasets page: upload, validation states, list filters/search/sort/pages, detail view, rename,
re-validate, delete (refused while a job uses the dataset), literal names, Start training."""
from __future__ import annotations

import time

import pytest

from app.ui.widgets import literal
from backend.datasets import service as datasets
from backend.db.models import Dataset, TrainingJob
from backend.db.session import session_scope
from tests.pages.conftest import TIMEOUT, jsonl, make_dataset, open_app, texts

READY_BADGE = ":green-badge[:material/check_circle: ready]"
VALIDATING_BADGE = ":blue-badge[:material/hourglass_top: validating]"
ERROR_BADGE = ":red-badge[:material/error: error]"


def _metrics(at) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


def _upload(at, name: str, content: bytes, file_name: str = "support.jsonl", fmt: str = None):
    at.file_uploader(key="datasets_upload_file").upload(file_name, content, "application/jsonl")
    at.text_input(key="datasets_upload_name").input(name)
    if fmt:
        at.selectbox(key="datasets_upload_format").select(fmt)
    at.button(key="datasets_upload_submit").click()
    return at.run(timeout=TIMEOUT)


def _rows(at) -> list[str]:
    """Dataset names in the list, in order (first line of each name cell)."""
    cells = [m.value for m in at.main.markdown
             if m.value.startswith("**") and "  \n" in m.value and "·" in m.value]
    return [c.split("  \n")[0].removeprefix("**").removesuffix("**") for c in cells]


def _names(actor) -> list[str]:
    return [d.name for d in datasets.list_datasets(actor, per_page=200).items]


def test_upload_shows_validating_then_ready(actor, no_ray):
    at = open_app("datasets")
    at = _upload(at, "Support A", jsonl(12))
    assert not at.exception, at.exception
    assert len(no_ray) == 1  # a validation job was submitted for the new dataset
    assert VALIDATING_BADGE in texts(at)
    assert _metrics(at)["Validating"] == "1"
    assert "Uploaded Support A" in texts(at)
    datasets.run_validation(no_ray[0])
    at.run(timeout=TIMEOUT)
    assert READY_BADGE in texts(at) and VALIDATING_BADGE not in texts(at)
    assert _metrics(at) == {"Datasets": "1", "Ready": "1", "Validating": "0", "Error": "0"}
    assert _rows(at) == ["Support A"]


def test_upload_with_explicit_format_and_default_name(actor, no_ray):
    at = open_app("datasets")
    at.file_uploader(key="datasets_upload_file").upload("my-chats.jsonl", jsonl(3), "text/plain")
    at.selectbox(key="datasets_upload_format").select("brightrun_lora_v4")
    at.button(key="datasets_upload_submit").click()
    at.run(timeout=TIMEOUT)
    assert not at.exception
    (d,) = datasets.list_datasets(actor).items
    assert (d.name, d.format, d.file_name) == ("my-chats", "brightrun_lora_v4", "my-chats.jsonl")


@pytest.mark.parametrize("content,file_name,message", [
    (None, None, "Choose a JSONL file to upload."),
    (b"", "empty.jsonl", "the file is empty"),
])
def test_bad_upload_is_an_error_and_changes_nothing(actor, no_ray, content, file_name, message):
    at = open_app("datasets")
    if content is not None:
        at.file_uploader(key="datasets_upload_file").upload(file_name, content, "text/plain")
    at.text_input(key="datasets_upload_name").input("Nope")
    at.button(key="datasets_upload_submit").click()
    at.run(timeout=TIMEOUT)
    assert not at.exception
    assert any(message in e.value for e in at.error), [e.value for e in at.error]
    assert _names(actor) == [] and no_ray == []
    assert "No datasets yet — upload one" in texts(at)


def test_search_filters_sort_and_pages(actor, no_ray):
    make_dataset(actor, "alpha support")
    make_dataset(actor, "beta sales")
    make_dataset(actor, "gamma broken", content=b"not json\n")
    at = open_app("datasets")
    assert sorted(_rows(at)) == ["alpha support", "beta sales", "gamma broken"]
    assert _metrics(at)["Error"] == "1" and _metrics(at)["Ready"] == "2"
    at.text_input(key="datasets_search").input("ALPHA").run(timeout=TIMEOUT)
    assert _rows(at) == ["alpha support"]
    at.text_input(key="datasets_search").input("zzz").run(timeout=TIMEOUT)
    assert "No datasets match these filters." in texts(at)
    at.text_input(key="datasets_search").input("").run(timeout=TIMEOUT)
    at.selectbox(key="datasets_status").select("error").run(timeout=TIMEOUT)
    assert _rows(at) == ["gamma broken"]
    at.selectbox(key="datasets_status").select("any")
    at.selectbox(key="datasets_ready").select("training-ready").run(timeout=TIMEOUT)
    assert sorted(_rows(at)) == ["alpha support", "beta sales"]
    at.selectbox(key="datasets_ready").select("any")
    at.selectbox(key="datasets_format").select("brightrun_lora_v4")
    at.selectbox(key="datasets_sort").select("name").run(timeout=TIMEOUT)
    assert _rows(at) == ["alpha support", "beta sales"]  # the broken file has no format


def test_pagination(actor, no_ray):
    for i in range(12):
        make_dataset(actor, f"set {i:02d}", validate=False)
    at = open_app("datasets")
    at.selectbox(key="datasets_sort").select("name").run(timeout=TIMEOUT)
    assert _rows(at) == [f"set {i:02d}" for i in range(10)]
    assert "Page 1 of 2 · 12 dataset(s)" in texts(at)
    assert at.button(key="datasets_prev").disabled
    at.button(key="datasets_next").click().run(timeout=TIMEOUT)
    assert _rows(at) == ["set 10", "set 11"]
    assert at.button(key="datasets_next").disabled
    at.button(key="datasets_prev").click().run(timeout=TIMEOUT)
    assert _rows(at)[0] == "set 00"


def test_detail_view_statistics_chart_preview(actor):
    d = make_dataset(actor, "Support A", n=20)
    at = open_app("datasets")
    at.button(key=f"datasets_open_{d.id}").click().run(timeout=TIMEOUT)
    assert not at.exception
    assert at.query_params["id"] == d.id
    m = _metrics(at)
    assert m["Conversations"] == "20" and m["Training pairs"] == "20"
    assert m["Total tokens"] == f"{d.total_tokens:,}" and m["Assistant tokens"] == \
        f"{d.assistant_tokens:,}"
    pct = d.statistics["length_percentiles"]
    assert m["Length p50"] == f"{pct['p50']:,}" and m["Length max"] == f"{pct['max']:,}"
    assert {"Validation pairs", "Avg turns / conversation", "Avg tokens / turn", "Length p10",
            "Length p90"} <= set(m)
    assert "Tokens counted with" in texts(at)
    assert at.get("vega_lite_chart"), "length distribution chart missing"
    assert len(at.chat_message) == 9  # 3 conversations × 3 turns
    assert literal("Question number 0: where is my order?") in texts(at)
    assert "No problems found." in texts(at)
    at.button(key="datasets_back").click().run(timeout=TIMEOUT)
    assert "id" not in at.query_params and _rows(at) == ["Support A"]


def test_detail_errors_table_shows_first_100_of_n(actor):
    bad = b"".join(b"{not json %d\n" % i for i in range(130)) + jsonl(2)
    d = make_dataset(actor, "Broken", content=bad)
    assert d.status == "error"
    at = open_app("datasets", {"id": d.id})
    assert not at.exception
    assert ERROR_BADGE in texts(at)
    assert f"Showing first 100 of {d.error_count + d.warning_count}." in texts(at)
    table = at.table[0].value  # a static table: suggestions wrap, never cut
    assert list(table.columns) == ["code", "severity", "error", "suggestion"]
    assert len(table) == 100 and str(table.index[0]) == "1"
    assert at.button(key="datasets_start_training").disabled


def test_rename_and_describe(actor):
    d = make_dataset(actor, "Old name")
    at = open_app("datasets", {"id": d.id})
    at.text_input(key="datasets_edit_name").input("New name")
    at.text_area(key="datasets_edit_description").input("Tickets from *March*")
    at.button(key="datasets_edit_save").click().run(timeout=TIMEOUT)
    assert not at.exception
    d2 = datasets.get_dataset(actor, d.id)
    assert (d2.name, d2.description) == ("New name", "Tickets from *March*")
    assert literal("Tickets from *March*") in texts(at)
    at.text_input(key="datasets_edit_name").input("   ")
    at.button(key="datasets_edit_save").click().run(timeout=TIMEOUT)
    assert any("1 to 200 characters" in e.value for e in at.error)
    assert datasets.get_dataset(actor, d.id).name == "New name"


def test_revalidate(actor, no_ray):
    d = make_dataset(actor, "Again")
    at = open_app("datasets", {"id": d.id})
    at.button(key="datasets_revalidate").click().run(timeout=TIMEOUT)
    assert not at.exception
    assert no_ray == [d.id]
    assert datasets.get_dataset(actor, d.id).status == "validating"
    assert VALIDATING_BADGE in texts(at) and "Validating… this page refreshes by itself." in \
        texts(at)
    assert at.button(key="datasets_revalidate").disabled


def _add_job(actor, dataset_id: str, status: str) -> str:
    with session_scope() as s:
        job = TrainingJob(user_id=actor.id, dataset_id=dataset_id, preset_id="balanced",
                          hyperparameters={}, gpu_config={}, total_epochs=1, status=status)
        s.add(job)
        s.flush()
        return job.id


def test_delete_refused_while_a_job_uses_it(actor):
    d = make_dataset(actor, "In use")
    job_id = _add_job(actor, d.id, "running")
    at = open_app("datasets", {"id": d.id})
    at.button(key="datasets_delete").click().run(timeout=TIMEOUT)
    assert "Delete the dataset" in texts(at)
    at.button(key="datasets_delete_confirm").click().run(timeout=TIMEOUT)
    assert not at.exception
    assert any("used by 1 active training job" in w.value for w in at.warning)
    assert not at.error
    assert _names(actor) == ["In use"]
    with session_scope() as s:
        s.get(TrainingJob, job_id).status = "completed"
    at.button(key="datasets_delete").click().run(timeout=TIMEOUT)
    at.button(key="datasets_delete_confirm").click().run(timeout=TIMEOUT)
    assert not at.exception
    assert _names(actor) == []
    assert "Deleted In use." in texts(at) and "id" not in at.query_params


def test_delete_cancel_keeps_dataset(actor):
    d = make_dataset(actor, "Keep me")
    at = open_app("datasets", {"id": d.id})
    at.button(key="datasets_delete").click().run(timeout=TIMEOUT)
    at.button(key="datasets_delete_cancel").click().run(timeout=TIMEOUT)
    assert "Delete the dataset" not in texts(at)
    assert _names(actor) == ["Keep me"]


def test_name_with_html_and_markdown_is_shown_literally(actor):
    name = "<b>bold</b> **x**"
    d = make_dataset(actor, name)
    at = open_app("datasets")
    assert _rows(at) == [literal(name)]
    assert r"\<b\>bold\<\/b\> \*\*x\*\*" in texts(at)
    assert "<b>bold</b>" not in texts(at) and "**x**" not in texts(at)
    at.button(key=f"datasets_open_{d.id}").click().run(timeout=TIMEOUT)
    assert at.subheader[0].value == r"\<b\>bold\<\/b\> \*\*x\*\*"
    assert "<b>" not in texts(at)


def test_start_training_goes_to_configure_with_the_dataset(actor):
    make_dataset(actor, "Other")
    d = make_dataset(actor, "Train me")
    at = open_app("datasets", {"id": d.id})
    at.button(key="datasets_start_training").click().run(timeout=TIMEOUT)
    assert not at.exception
    assert at.title[0].value == "Configure training"
    assert at.session_state["configure_dataset_id"] == d.id
    assert at.query_params["dataset_id"] == d.id
    assert at.selectbox(key="configure_dataset").value == d.id


def test_empty_state_loads_the_example(actor, no_ray, tmp_path, monkeypatch):
    import app.ui.widgets

    at = open_app("datasets")
    assert "No datasets yet — upload one" in texts(at)
    example = tmp_path / "root" / "examples" / "demo-support-v6.jsonl"
    example.parent.mkdir(parents=True)
    example.write_bytes(jsonl(5))
    monkeypatch.setattr(app.ui.widgets, "ROOT", tmp_path / "root")
    at.run(timeout=TIMEOUT)
    assert "an example: 5 short customer-support conversations" in texts(at)  # the file's count
    at.button(key="datasets_load_example").click().run(timeout=TIMEOUT)
    assert not at.exception
    (d,) = datasets.list_datasets(actor).items
    assert d.file_name == "demo-support-v6.jsonl" and no_ray == [d.id]
    assert "Loaded the example dataset" in texts(at)


def test_no_example_button_without_the_file(actor, tmp_path, monkeypatch):
    import app.ui.widgets

    monkeypatch.setattr(app.ui.widgets, "ROOT", tmp_path)
    at = open_app("datasets")
    assert "No datasets yet — upload one" in texts(at)
    assert not [b for b in at.button if b.key == "datasets_load_example"]


class _DeadGateway:
    def status(self, submission_id: str) -> str:
        return "FAILED"


def test_poll_turns_a_dead_validation_into_error(actor, monkeypatch):
    d = make_dataset(actor, "Orphan", validate=False)
    with session_scope() as s:
        s.get(Dataset, d.id).external_job_id = "raysubmit_dead"
    monkeypatch.setattr("backend.cluster.gateway.get_gateway", lambda: _DeadGateway())
    at = open_app("datasets", {"id": d.id})
    assert not at.exception
    info = datasets.get_dataset(actor, d.id)
    assert info.status == "error"
    assert "validation job ended (FAILED)" in info.error_message
    assert ERROR_BADGE in texts(at)


@pytest.mark.ray
@pytest.mark.slow
def test_upload_validates_on_ray(ray_env):
    from backend.accounts.users import ensure_local_user
    from backend.db.session import dispose_engines

    dispose_engines()
    actor = ensure_local_user()
    at = open_app("datasets")
    at = _upload(at, "On Ray", jsonl(15))
    assert not at.exception, at.exception
    (d,) = datasets.list_datasets(actor).items
    assert d.external_job_id, "no Ray submission recorded"
    deadline = time.monotonic() + 300
    while datasets.get_dataset(actor, d.id).status == "validating" and time.monotonic() < deadline:
        time.sleep(2)
    at.run(timeout=TIMEOUT)
    assert datasets.get_dataset(actor, d.id).status == "ready", \
        datasets.get_dataset(actor, d.id).error_message
    assert READY_BADGE in texts(at) and _metrics(at)["Ready"] == "1"
    dispose_engines()


def test_preference_set_detail_previews_pairs(actor):
    from tests.fixtures.paths import REPO

    d = make_dataset(actor, "Prefs", content=(REPO / "examples" / "preference-demo.jsonl").read_bytes())
    assert d.status == "ready" and d.format == "preference"
    at = open_app("datasets", {"id": d.id})
    assert not at.exception
    assert "#### Preview: first 5 preference pair(s)" in texts(at)
    shown = texts(at)
    assert literal("❌ rejected: Not my problem.") in shown
    assert literal("✅ chosen: Happy to help! To reset your password") in shown
