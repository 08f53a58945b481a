"""Configure page: dataset picker (preselected), presets fill the form, the estimate follows the
settings, assistant-mask preview, bad input creates nothing, over-budget confirmation, Start
training creates the job (Ray submission recorded; one test submits to the real Ray head)."""
from __future__ import annotations

import re

import pytest

from app.ui.widgets import literal
from backend.accounts.users import set_budget
from backend.jobs import service as jobs
from tests.pages.conftest import TIMEOUT, jsonl, make_dataset, open_app, texts


@pytest.fixture
def submitted(monkeypatch):
    """Record the Ray submissions create_job makes (the one boundary page tests replace)."""
    calls: list[str] = []
    monkeypatch.setattr(jobs, "submit_job", lambda job_id: calls.append(job_id) or "raysub-1")
    return calls


def _metrics(at) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


def _num(at, field: str):
    return at.number_input(key=f"configure_{field}")


def _money(text: str) -> float:
    return float(text.replace("$", "").replace(",", ""))


def test_empty_state_without_ready_datasets(actor):
    make_dataset(actor, "still validating", validate=False)
    at = open_app("configure")
    assert not at.exception, at.exception
    assert "No ready datasets yet" in texts(at)
    assert not [b for b in at.button if b.key == "configure_start"]


def test_preselected_dataset_summary_and_estimate(actor):
    make_dataset(actor, "first")
    second = make_dataset(actor, "Second <b>set</b>", n=20)
    at = open_app("configure", {"dataset_id": second.id})
    assert not at.exception, at.exception
    assert at.selectbox(key="configure_dataset").value == second.id
    m = _metrics(at)
    assert m["Conversations"] == "20"
    assert m["Estimated cost"] == "$0.00"  # local CPU by default
    assert int(m["Tokens to train"].replace(",", "")) > 0
    page = texts(at)
    assert "Fits:" in page and "calibrated from 0 finished jobs" in page
    assert "No monthly budget set" in page
    assert at.session_state["configure_dataset_id"] == second.id
    assert at.button(key="configure_start").disabled is False


def test_presets_fill_the_form(actor):
    make_dataset(actor, "d")
    at = open_app("configure")
    assert _num(at, "num_epochs").value == 5 and _num(at, "lora_rank").value == 16  # balanced
    assert _num(at, "warmup_ratio").value == pytest.approx(0.1)
    at.button(key="configure_preset_aggressive").click().run(timeout=TIMEOUT)
    assert not at.exception, at.exception
    assert (_num(at, "num_epochs").value, _num(at, "lora_rank").value,
            _num(at, "batch_size").value) == (8, 32, 8)
    assert _num(at, "learning_rate").value == pytest.approx(1e-3)
    assert "Preset **aggressive** ·" in texts(at)
    at.button(key="configure_preset_conservative").click().run(timeout=TIMEOUT)
    assert (_num(at, "num_epochs").value, _num(at, "lora_rank").value,
            _num(at, "warmup_steps").value) == (3, 8, 0)
    _num(at, "lora_rank").set_value(12).run(timeout=TIMEOUT)
    assert "Preset **conservative** (modified)" in texts(at)
    # every field has its description as tooltip
    assert "Passes over the training split" in _num(at, "num_epochs").help


def test_changing_epochs_changes_the_estimate(actor):
    make_dataset(actor, "d", n=40)
    at = open_app("configure")
    at.selectbox(key="configure_base_model").select("mistralai/Mistral-7B-v0.1")  # catalog size
    at.selectbox(key="configure_hardware").select("A100-80GB").run(timeout=TIMEOUT)
    before = _metrics(at)
    _num(at, "num_epochs").set_value(10).run(timeout=TIMEOUT)  # balanced: 5
    assert not at.exception, at.exception
    after = _metrics(at)
    tokens = [int(x["Tokens to train"].replace(",", "")) for x in (before, after)]
    assert tokens[1] == pytest.approx(2 * tokens[0], abs=2)
    assert _money(after["Estimated cost"]) > _money(before["Estimated cost"]) > 0
    assert "GPU memory per worker" in texts(at)
    _num(at, "workers").set_value(4).run(timeout=TIMEOUT)
    assert _metrics(at)["GPU-hours"] != after["GPU-hours"]
    assert _num(at, "workers").max == 8  # the hardware's max_workers


def test_assistant_mask_preview_highlights_trained_tokens_escaped(actor):
    rows = jsonl(5, text="<script>alert(1)</script> **bold**")
    make_dataset(actor, "html inside", content=rows)
    at = open_app("configure")
    assert not at.get("html")  # off until asked: its tokenizer never slows the page's first open
    at.toggle(key="configure_preview_on").set_value(True).run(timeout=TIMEOUT)
    (preview,) = at.get("html")
    body = preview.proto.body
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in body and "<script>" not in body
    assert body.count("background:#c8f0d0") >= 1  # the assistant turn is highlighted
    assert "Answer 0: it ships tomorrow." in body
    caption = next(c.value for c in at.caption if "trained** (highlighted" in c.value)
    assert "tokens, **" in caption


def test_start_training_creates_the_job_and_opens_monitor(actor, submitted):
    d = make_dataset(actor, "support")
    at = open_app("configure")
    at.button(key="configure_preset_conservative").click().run(timeout=TIMEOUT)
    _num(at, "num_epochs").set_value(4)
    at.text_input(key="configure_name").input("First <i>run</i>").run(timeout=TIMEOUT)
    at.button(key="configure_start").click().run(timeout=TIMEOUT)
    assert not at.exception, at.exception
    (job,) = jobs.list_jobs(actor).items
    assert submitted == [job.id]
    assert (job.name, job.dataset_id, job.preset_id, job.total_epochs) == (
        "First <i>run</i>", d.id, "custom", 4)
    assert job.hyperparameters["lora_rank"] == 8 and job.gpu_config["gpu_type"] == "cpu-local"
    assert at.session_state["monitor_job_id"] == job.id
    assert at.query_params.get("job_id") in (job.id, [job.id])
    assert literal("First <i>run</i>") in texts(at)  # Monitor shows it, literally


def test_validation_eval_and_checkpoint_settings_reach_the_job(actor, submitted):
    make_dataset(actor, "d", n=40)
    at = open_app("configure")
    assert not at.exception, at.exception
    fraction, every_eval, every_ckpt = (_num(at, f) for f in (
        "validation_fraction", "eval_every_steps", "checkpoint_every_steps"))
    assert (fraction.value, every_eval.value, every_ckpt.value) == (pytest.approx(0.1), None, None)
    assert "Fraction of conversations held out" in fraction.help  # the field's help as tooltip
    assert "Compute validation loss every N optimizer steps" in every_eval.help
    assert "Save a checkpoint" in every_ckpt.help
    assert (every_eval.min, fraction.max) == (1, 0.5)  # the field's bounds
    fraction.set_value(0.2)
    every_eval.set_value(5)
    every_ckpt.set_value(10).run(timeout=TIMEOUT)
    assert not at.exception, at.exception
    assert "(modified)" in texts(at)
    assert not at.error  # the estimate was built from these values
    at.button(key="configure_start").click().run(timeout=TIMEOUT)
    assert not at.exception, at.exception
    (job,) = jobs.list_jobs(actor).items
    assert submitted == [job.id] and job.preset_id == "custom"
    hyper = job.hyperparameters
    assert (hyper["validation_fraction"], hyper["eval_every_steps"],
            hyper["checkpoint_every_steps"]) == (pytest.approx(0.2), 5, 10)


def test_eval_interval_without_validation_is_refused(actor, submitted):
    make_dataset(actor, "d")
    at = open_app("configure")
    _num(at, "validation_fraction").set_value(0.0)
    _num(at, "eval_every_steps").set_value(3).run(timeout=TIMEOUT)
    assert not at.exception, at.exception
    assert any("nothing to evaluate" in e.value for e in at.error)
    assert at.button(key="configure_start").disabled
    _num(at, "eval_every_steps").set_value(None).run(timeout=TIMEOUT)  # back to every epoch
    assert not at.error and not at.button(key="configure_start").disabled
    assert any("overfitting cannot be seen" in w.value for w in at.warning)  # legal, risky
    assert jobs.list_jobs(actor).total == 0 and submitted == []


def test_bad_input_is_an_error_and_creates_nothing(actor, submitted):
    make_dataset(actor, "d")
    at = open_app("configure")
    _num(at, "batch_size").set_value(512)
    _num(at, "gradient_accumulation_steps").set_value(32).run(timeout=TIMEOUT)
    assert not at.exception, at.exception
    errors = " ".join(e.value for e in at.error)
    assert "invalid training configuration" in errors and "8192" in errors
    assert at.button(key="configure_start").disabled  # AppTest refuses clicks on it, as a browser
    assert jobs.list_jobs(actor).total == 0 and submitted == []


def test_base_model_not_on_this_machine_is_explained(actor, submitted):
    make_dataset(actor, "d")
    at = open_app("configure")
    at.selectbox(key="configure_base_model").select("mistralai/Mistral-7B-v0.1")
    at.toggle(key="configure_preview_on").set_value(True)
    at.run(timeout=TIMEOUT)
    assert not at.exception, at.exception
    assert _money(_metrics(at)["Estimated cost"]) >= 0  # the catalog sizes it for the estimate
    assert any("is not on this machine" in e.value for e in at.error)  # no tokenizer to preview
    at.button(key="configure_start").click().run(timeout=TIMEOUT)
    assert not at.exception, at.exception
    assert any("BrightRun never downloads" in e.value for e in at.error)
    assert jobs.list_jobs(actor).total == 0 and submitted == []


def test_over_budget_needs_confirmation(actor, submitted):
    make_dataset(actor, "d", n=40)
    set_budget(actor, actor.id, 0.01)
    at = open_app("configure")
    at.selectbox(key="configure_hardware").select("H100-80GB").run(timeout=TIMEOUT)
    assert not at.exception, at.exception
    assert any("Over budget" in e.value for e in at.error)
    assert at.button(key="configure_start").disabled
    at.checkbox(key="configure_confirm_over_budget").check().run(timeout=TIMEOUT)
    assert not at.button(key="configure_start").disabled
    at.button(key="configure_start").click().run(timeout=TIMEOUT)
    assert not at.exception, at.exception
    (job,) = jobs.list_jobs(actor).items
    assert job.budget_decision["confirmed_over_budget"] and submitted == [job.id]


def _split_caption(at) -> str:
    return next(c for c in at.caption if "held out" in c.value or "no validation split" in c.value)


def test_split_caption_follows_the_validation_fraction(actor, monkeypatch):
    import io

    from backend.datasets import service as datasets
    from backend.datasets.formats import load_split

    reads = []
    real_open = datasets.open_dataset
    monkeypatch.setattr(datasets, "open_dataset",
                        lambda dataset_id: reads.append(dataset_id) or real_open(dataset_id))
    data = jsonl(40)
    d = make_dataset(actor, "d", content=data)
    at = open_app("configure")
    assert not at.exception, at.exception
    for fraction in (0.1, 0.3, 0.45, 0.1):
        _num(at, "validation_fraction").set_value(fraction).run(timeout=TIMEOUT)
        assert not at.exception, at.exception
        _, val = load_split(io.BytesIO(data), fraction, 0)  # the trainer's split (seed 0)
        caption = _split_caption(at)
        assert (f"{len(val)} of 40 conversation(s) ({len(val)} validation pair(s)) held out at "
                f"validation fraction {fraction:.2f}") in caption.value, caption.value
        assert "trainer's split" in caption.help
    assert reads == [d.id]  # one read of the file; every fraction after it from the cache
    assert len(load_split(io.BytesIO(data), 0.45, 0)[1]) != len(load_split(io.BytesIO(data), 0.1,
                                                                           0)[1])
    _num(at, "validation_fraction").set_value(0.0).run(timeout=TIMEOUT)
    assert "no validation split (validation fraction 0)" in _split_caption(at).value


def test_split_caption_of_a_large_file_is_an_approximation(actor, monkeypatch):
    from app.configure import form as config_form
    monkeypatch.setattr(config_form, "EXACT_SPLIT_MAX_BYTES", 10)
    make_dataset(actor, "big", n=40)
    at = open_app("configure")
    _num(at, "validation_fraction").set_value(0.3).run(timeout=TIMEOUT)
    assert not at.exception, at.exception
    caption = _split_caption(at)
    assert "12 of 40 conversation(s) held out at validation fraction 0.30" in caption.value
    assert "too large" in caption.help and "round(fraction × conversations)" in caption.help


def test_memory_bar_is_markdown_not_a_lazy_widget(actor):
    make_dataset(actor, "d")
    at = open_app("configure")
    assert not at.exception, at.exception
    assert not at.get("progress")  # st.progress showed as an empty grey box until loaded
    (bar,) = [m for m in at.markdown if "per worker:**" in m.value]
    assert "1.0 of 8 GB (12%)" in bar.value or "1.0 of 8 GB (13%)" in bar.value
    assert 'role="meter"' in bar.value and re.search(r"width:1[23]\.\d%", bar.value)


def test_hardware_labels_fit_and_details_follow_in_a_caption(actor):
    from types import SimpleNamespace as NS

    from app.configure.form import HARDWARE_LABEL_CHARS, hardware_labels

    make_dataset(actor, "d")
    at = open_app("configure")
    select = at.selectbox(key="configure_hardware")
    assert select.value == "cpu-local" and "Local CPU" in select.options
    assert max(map(len, select.options)) <= HARDWARE_LABEL_CHARS  # no cut-off at 1200 px
    page = texts(at)
    assert literal("Local CPU (Ray workers on this machine) · 8 GB memory per worker") in page
    assert "up to 4 workers" in page
    select.select("H100-80GB").run(timeout=TIMEOUT)
    h100 = "NVIDIA H100 80GB (SXM) · 80 GB GPU memory per worker · $5.00 per worker-hour"
    assert literal(h100) in texts(at)
    # a short name that would become ambiguous keeps the full names
    twins = [NS(id="a", name="Some very long GPU name 80GB (PCIe)"),
             NS(id="b", name="Some very long GPU name 80GB (SXM)")]
    assert hardware_labels(twins) == {"a": twins[0].name, "b": twins[1].name}


@pytest.mark.ray
def test_start_training_submits_to_ray(ray_env):
    from backend.accounts.users import ensure_local_user

    actor = ensure_local_user()
    make_dataset(actor, "ray run")
    at = open_app("configure")
    _num(at, "num_epochs").set_value(1)
    at.button(key="configure_start").click().run(timeout=TIMEOUT)
    assert not at.exception, at.exception
    (job,) = jobs.list_jobs(actor).items
    assert job.external_job_id, job.error_message  # submitted through the Ray Job API
    assert ray_env.info(job.external_job_id)["status"] in ("PENDING", "RUNNING", "SUCCEEDED",
                                                           "FAILED")
    if job.status in ("queued", "initializing", "running"):
        assert jobs.cancel_job(actor, job.id).status == "cancelled"


# ----- the draft: settings survive leaving the page, and the job is what the page showed ---------
ADVANCED = {"batch_size": 1, "warmup_steps": 10, "num_epochs": 3, "lora_rank": 4,
            "learning_rate": 5e-4, "max_seq_length": 512, "eval_every_steps": 3}


def _set_advanced(at) -> None:
    for field, value in ADVANCED.items():
        _num(at, field).set_value(value)
    at.selectbox(key="configure_hardware").select("cpu-local")
    at.run(timeout=TIMEOUT)
    assert not at.exception, at.exception


def _shown(at) -> dict:
    return {f: _num(at, f).value for f in ADVANCED}


def test_settings_survive_leaving_and_returning(actor, submitted):
    make_dataset(actor, "d", n=40)
    at = open_app("configure")
    _set_advanced(at)
    assert _shown(at) == ADVANCED
    for page in ("jobs", "home", "datasets"):  # away (widgets unmounted) and back
        at.switch_page(f"../pages/{page}.py").run(timeout=TIMEOUT)
        assert not at.exception, at.exception
        at.switch_page("../pages/configure.py").run(timeout=TIMEOUT)
        assert not at.exception, at.exception
        assert _shown(at) == ADVANCED, page
    at.button(key="configure_start").click().run(timeout=TIMEOUT)
    assert not at.exception, at.exception
    (job,) = jobs.list_jobs(actor).items
    hyper = job.hyperparameters
    assert {f: hyper[f] for f in ADVANCED} == pytest.approx(ADVANCED)  # exactly what was shown


def test_settings_survive_a_reload_through_the_url(actor):
    """A reload is a new session: the draft comes back from the query parameters."""
    d = make_dataset(actor, "d", n=40)
    at = open_app("configure")
    _set_advanced(at)
    at.selectbox(key="configure_gradient_checkpointing").select("on").run(timeout=TIMEOUT)
    query = {k: v for k, v in at.query_params.items()}
    assert "gradient_checkpointing" in query and "num_epochs" in query and "seed" not in query
    assert query["dataset_id"] in (d.id, [d.id])
    fresh = open_app("configure", {k: (v[0] if isinstance(v, list) else v)
                                   for k, v in query.items()})
    assert not fresh.exception, fresh.exception
    assert _shown(fresh) == ADVANCED
    assert fresh.selectbox(key="configure_gradient_checkpointing").value == "on"


def test_default_job_name_is_the_placeholder(actor, submitted):
    make_dataset(actor, "Demo support v4")
    at = open_app("configure")
    placeholder = at.text_input(key="configure_name").placeholder
    assert placeholder == "Demo support v4 · balanced"
    at.button(key="configure_start").click().run(timeout=TIMEOUT)
    (job,) = jobs.list_jobs(actor).items
    assert job.name == placeholder


def _install_fake_smollm(home, tiny_model_dir) -> None:
    """A SmolLM2 install marker pointing at the tiny model's folder: the page logic without the
    real 538 MB model (tests marked real_model use the real one)."""
    import json

    folder = home / "base-models" / "smollm2-135m-instruct"
    folder.mkdir(parents=True)
    (folder / "brightrun-base-model.json").write_text(json.dumps(
        {"id": "smollm2-135m-instruct", "path": str(tiny_model_dir), "params": 134515008,
         "source": "test", "chat_template": "chatml"}))


def test_installed_smollm_is_preselected_with_its_size(actor, app_env, tiny_model_dir):
    make_dataset(actor, "d")
    _install_fake_smollm(app_env, tiny_model_dir)
    at = open_app("configure")
    assert not at.exception, at.exception
    box = at.selectbox(key="configure_base_model")
    assert box.value == "smollm2-135m-instruct"
    assert "smollm2-135m-instruct · 134.5 M params" in box.format_func("smollm2-135m-instruct")
    assert "estimate only" in box.format_func("mistralai/Mistral-7B-v0.1")
    assert box.options[0].startswith("smollm2-135m-instruct · 134.5 M params")  # installed first


def test_install_progress_is_shown_while_it_runs(actor, app_env):
    import json
    import time

    make_dataset(actor, "d")
    root = app_env / "base-models"
    root.mkdir()
    progress = {"state": "running", "fraction": 0.4, "message": "dequantizing <b>weights</b>",
                "updated": time.time()}
    (root / ".install-smollm2-135m-instruct.json").write_text(json.dumps(progress))
    at = open_app("configure")
    assert not at.exception, at.exception
    bars = [str(b.proto.text) for b in at.get("progress")]
    assert any("Installing base model smollm2-135m-instruct" in b and "&lt;b&gt;" not in b
               for b in bars), bars
    assert at.selectbox(key="configure_base_model").value == "brightrun/tiny-llama"
    (root / ".install-smollm2-135m-instruct.json").write_text(json.dumps(
        {**progress, "state": "failed", "message": "NotFound: package missing"}))
    at.run(timeout=TIMEOUT)
    assert "Installing smollm2-135m-instruct failed" in texts(at)
