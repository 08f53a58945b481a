"""The whole product flow in a real browser, on the embedded default (SQLite + local objects)
with the session's real Ray head.

``streamlit run app/main.py`` is served as a subprocess and driven by headless Chromium:
Datasets → upload ``sample-v4.jsonl`` → the validation Ray job makes it *ready* (the page
refreshes itself) → "Start training" → Configure: the *conservative* preset, 2 workers, the fast
settings for the tiny model in "Advanced settings" → "Start training" → Monitor shows the stages
and reaches *completed* by itself (polling) → "Open the trained model" → Models: download the
archive (.zip) and check it holds the adapter. Then Home, Jobs, Costs, Notifications, Models and
Datasets. Every page visited is saved as ``tests/out/browser-<page>.png``; no page may show a
Streamlit exception.

Nothing is replaced: the dashboard, the services, the Ray jobs and the training are the product's.
"""
from __future__ import annotations

import io
import json
import os
import re
import sys
import time
import zipfile
from pathlib import Path

import pytest

from tests.e2e.team_helpers import CHROMIUM, CHROMIUM_ARGS, served_dashboard
from tests.fixtures.paths import REPO, SAMPLE_DATA

ROOT = REPO
OUT = ROOT / "tests" / "out"
SAMPLE = SAMPLE_DATA / "sample-v4.jsonl"
pytestmark = [pytest.mark.browser, pytest.mark.ray, pytest.mark.slow]

DATASET_NAME = "Elena browser sample"
JOB_NAME = "Browser flow run"
PAGE_TIMEOUT_MS = 30_000
# tall: Streamlit scrolls inside its main container, so a screenshot shows only the viewport
VIEWPORT = {"width": 1400, "height": 2200}
READY_TIMEOUT_MS = 180_000       # validation Ray job (the head is shared with other tests)
TRAIN_TIMEOUT_S = 300            # the tiny model, 2 epochs, 2 CPU workers
# fast settings for the tiny model (see tests/e2e/test_training_job.py), by the form's labels
ADVANCED = {"Learning rate": "0.02", "Batch size": "1", "Epochs": "2", "Warmup steps": "0",
            "LoRA dropout": "0", "Max sequence length": "512"}


def _mark(what: str) -> None:
    """A progress line on the real stderr (shown with ``pytest -s``)."""
    sys.__stderr__.write(f"[browser {time.strftime('%X')}] {what}\n")


# ----- page helpers -------------------------------------------------------------------------------
def _settle(page) -> None:
    """Until Streamlit has finished the current script run and drawn it: the app says its script
    is not running, no element is stale (greyed, about to be replaced) or a skeleton (a chart or
    code block still loading), and the main area's text stopped changing — three checks in a
    row, 250 ms apart."""
    page.wait_for_timeout(300)
    page.wait_for_function(
        """() => {
            const app = document.querySelector('[data-testid="stApp"]');
            const main = document.querySelector('[data-testid="stMain"]');
            const text = main ? main.innerText : '';
            const busy = !app || app.getAttribute('data-test-script-state') === 'running'
                || document.querySelector('[data-stale="true"], [data-testid="stSkeleton"]')
                   !== null
                || text !== window.__brtText;
            window.__brtText = text;
            window.__brtCalm = busy ? 0 : (window.__brtCalm || 0) + 1;
            return window.__brtCalm >= 3;
        }""", polling=250, timeout=PAGE_TIMEOUT_MS)


def _main(page):
    return page.locator('[data-testid="stMain"]')


def _no_exception(page, where: str) -> None:
    errors = page.locator('[data-testid="stException"]')
    assert errors.count() == 0, f"{where}: {errors.first.inner_text()[:2000]}"


def _shot(page, name: str) -> Path:
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / f"browser-{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def _open_nav(page, title: str, wait_text: str) -> str:
    """Click ``title`` in the sidebar navigation, wait for ``wait_text``; returns the main text."""
    page.locator('[data-testid="stSidebarNav"] a').filter(has_text=title).first.click()
    _main(page).get_by_text(wait_text, exact=False).first.wait_for(timeout=PAGE_TIMEOUT_MS)
    _settle(page)
    _no_exception(page, title)
    return _main(page).inner_text()


def _button(page, label: str):
    """The visible Streamlit button whose text contains ``label`` (not a selectbox's "Open"
    toggle; while a fragment reruns, the element it replaces can linger hidden)."""
    return (_main(page).locator('button[data-testid^="stBaseButton"]')
            .filter(has_text=label).filter(visible=True).first)


def _set_number(page, label: str, value: str) -> None:
    """Type into a number input and commit it (Enter), then wait for the rerun."""
    box = _main(page).get_by_label(label, exact=True)
    box.fill(value)
    box.press("Enter")
    _settle(page)


# ----- the flow -----------------------------------------------------------------------------------
def _upload_and_wait_ready(page, url: str) -> None:
    page.goto(url, wait_until="domcontentloaded")
    _main(page).get_by_text("BrightRun LoRA Studio").first.wait_for(timeout=PAGE_TIMEOUT_MS)
    _settle(page)
    _no_exception(page, "Home")
    _shot(page, "home-empty")

    _open_nav(page, "Datasets", "Upload a dataset")
    if not _main(page).get_by_text("JSONL file").first.is_visible():
        _main(page).get_by_text("Upload a dataset").first.click()  # expanded only when empty
    _main(page).locator('[data-testid="stFileUploaderDropzoneInput"]').set_input_files(str(SAMPLE))
    _main(page).get_by_text("sample-v4.jsonl").first.wait_for(timeout=PAGE_TIMEOUT_MS)
    _main(page).get_by_label("Name", exact=True).fill(DATASET_NAME)
    _button(page, "Upload").click()
    _main(page).get_by_text("validation is running").first.wait_for(timeout=PAGE_TIMEOUT_MS)
    _settle(page)
    _shot(page, "datasets-validating")
    _button(page, "Open").click()
    _main(page).get_by_role("heading", name=DATASET_NAME).wait_for(timeout=PAGE_TIMEOUT_MS)
    # the validation is a Ray job; the detail view re-reads the dataset every few seconds by itself
    start = _button(page, "Start training")
    deadline = time.monotonic() + READY_TIMEOUT_MS / 1000
    while not start.is_enabled():
        failed = _main(page).locator('[data-testid="stAlertContentError"]')
        assert failed.count() == 0, f"validation failed: {failed.first.inner_text()[:2000]}"
        assert time.monotonic() < deadline, \
            f"dataset not ready in time:\n{_main(page).inner_text()[:3000]}"
        page.wait_for_timeout(1000)
    _main(page).get_by_text("Statistics").first.wait_for(timeout=PAGE_TIMEOUT_MS)
    _settle(page)
    _no_exception(page, "Datasets detail")
    body = _main(page).inner_text()
    assert "ready" in body and "Conversations" in body, body[:3000]
    _shot(page, "datasets-ready")


def _configure_and_start(page) -> dict:
    _button(page, "Start training").click()
    _main(page).get_by_text("Configure training").first.wait_for(timeout=PAGE_TIMEOUT_MS)
    _settle(page)
    _no_exception(page, "Configure")
    chosen = _main(page).get_by_label("Dataset", exact=True).input_value()
    assert chosen == DATASET_NAME, chosen  # preselected by the Datasets page
    _button(page, "Conservative").click()
    _settle(page)
    caption = _main(page).get_by_text("Preset conservative").first
    caption.wait_for(timeout=PAGE_TIMEOUT_MS)
    assert "(modified)" not in caption.inner_text()

    workers = _main(page).get_by_label("Workers", exact=True)
    assert workers.count() == 1, "the Configure page offers no worker count"
    _set_number(page, "Workers", "2")
    _main(page).get_by_text("Advanced settings").first.click()
    _main(page).get_by_label("Learning rate", exact=True).wait_for(timeout=PAGE_TIMEOUT_MS)
    for label, value in ADVANCED.items():
        _set_number(page, label, value)
    _no_exception(page, "Configure (advanced settings)")
    summary = _main(page).get_by_text("Preset conservative").first.inner_text()
    assert "2.0e-02" in summary and "batch 1" in summary and "2 epoch(s)" in summary, summary
    _main(page).get_by_label("Job name", exact=True).fill(JOB_NAME)
    _main(page).get_by_label("Job name", exact=True).press("Tab")
    _settle(page)
    _shot(page, "configure")
    values = {label: _main(page).get_by_label(label, exact=True).input_value()
              for label in (*ADVANCED, "Workers")}
    launch = _button(page, "Start training")
    assert launch.is_enabled(), _main(page).inner_text()[-3000:]
    launch.click()
    return values


def _monitor_until_completed(page) -> None:
    _main(page).get_by_role("heading", name="Monitor").wait_for(timeout=PAGE_TIMEOUT_MS)
    _main(page).get_by_text(JOB_NAME).first.wait_for(timeout=PAGE_TIMEOUT_MS)
    _settle(page)
    _no_exception(page, "Monitor")
    body = _main(page).inner_text()
    for stage in ("Queued", "Initializing", "Training", "Validating", "Saving", "Completed"):
        assert stage in body, (stage, body[:3000])
    seen_training = False
    deadline = time.monotonic() + TRAIN_TIMEOUT_S
    done = _main(page).get_by_text("Training completed")
    while done.count() == 0:  # the page polls the database by itself: no reloads here
        body = _main(page).inner_text()
        assert "Training failed" not in body and "Cancelled." not in body, body[:5000]
        assert time.monotonic() < deadline, \
            f"job not completed in {TRAIN_TIMEOUT_S}s:\n{body[:5000]}"
        if not seen_training and "running" in body and "No metrics yet" not in body:
            seen_training = True  # one shot while it trains, the loss curve growing
            _settle(page)
            _shot(page, "monitor-running")
        page.wait_for_timeout(2000)
    _settle(page)
    _no_exception(page, "Monitor (completed)")
    body = _main(page).inner_text()
    assert "completed" in body and "Loss" in body, body[:3000]
    assert "2 × cpu-local" in body, body[:3000]  # the 2 workers chosen on Configure
    assert "Logs" in body, body[:3000]
    _shot(page, "monitor-completed")


def _open_model_and_download(page, tmp_path: Path) -> zipfile.ZipFile:
    _main(page).get_by_role("link", name=re.compile("Open the trained model")).click()
    _main(page).get_by_role("heading", name=re.compile(re.escape(JOB_NAME))).first.wait_for(
        timeout=PAGE_TIMEOUT_MS)
    _main(page).get_by_text("Final validation loss").first.wait_for(timeout=PAGE_TIMEOUT_MS)
    _settle(page)
    _no_exception(page, "Models detail")
    _shot(page, "models-detail")
    _main(page).get_by_role("tab", name=re.compile("Files & downloads")).click()
    button = _main(page).get_by_role("button", name=re.compile(r"Download all \(\.zip"))
    button.wait_for(timeout=PAGE_TIMEOUT_MS)
    _settle(page)
    _shot(page, "models-files")
    with page.expect_download(timeout=PAGE_TIMEOUT_MS) as info:
        button.click()
    download = info.value
    assert download.suggested_filename.endswith(".zip"), download.suggested_filename
    target = tmp_path / download.suggested_filename
    download.save_as(str(target))
    return zipfile.ZipFile(io.BytesIO(target.read_bytes()))


def _other_pages(page) -> dict[str, str]:
    seen = {}
    for title, marker, shot in (("Home", "BrightRun LoRA Studio", "home"),
                                ("Jobs", "Training jobs", "jobs"),
                                ("Costs", "Costs", "costs"),
                                ("Notifications", "Notifications", "notifications"),
                                ("Models", "Models", "models-list"),
                                ("Datasets", "Datasets", "datasets-list")):
        seen[title] = _open_nav(page, title, marker)
        _shot(page, shot)
    return seen


def test_whole_flow_in_the_browser(ray_env, tmp_path):
    from playwright.sync_api import sync_playwright

    t0 = time.monotonic()
    env = {k: v for k, v in os.environ.items()
           if k not in ("BRIGHTRUN_USER", "BRIGHTRUN_PASSWORD", "BRIGHTRUN_AUTH")}
    env["RAY_AUTH_MODE"] = "disabled"
    assert env["RAY_ADDRESS"] and env["BRIGHTRUN_HOME"]
    with served_dashboard(env, tmp_path / "streamlit.log") as dashboard:
        url = dashboard.wait_ready()
        _mark(f"dashboard up at {url} (pid {dashboard.proc.pid})")
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:
                ctx = browser.new_context(viewport=VIEWPORT,
                                          accept_downloads=True)
                ctx.set_default_timeout(PAGE_TIMEOUT_MS)
                page = ctx.new_page()
                _upload_and_wait_ready(page, url)
                _mark("dataset ready")
                values = _configure_and_start(page)
                _mark(f"job started with {values}")
                _monitor_until_completed(page)
                _mark("job completed")
                archive = _open_model_and_download(page, tmp_path)
                _mark(f"archive downloaded: {archive.namelist()}")
                seen = _other_pages(page)
            finally:
                browser.close()
    names = {Path(n).name for n in archive.namelist()}
    assert {"adapter_model.safetensors", "adapter_config.json"} <= names, names
    config_name = next(n for n in archive.namelist() if n.endswith("adapter_config.json"))
    config = json.loads(archive.read(config_name))
    assert config["peft_type"] == "LORA" and config["r"] == 8, config   # conservative: rank 8
    assert values["Workers"] == "2"
    assert JOB_NAME in seen["Jobs"] and "completed" in seen["Jobs"], seen["Jobs"][:3000]
    assert DATASET_NAME in seen["Datasets"], seen["Datasets"][:3000]
    assert JOB_NAME in seen["Models"], seen["Models"][:3000]
    notes = seen["Notifications"]
    assert "ready" in notes.lower() and "complete" in notes.lower(), notes[:3000]
    _mark(f"whole flow took {time.monotonic() - t0:.0f}s")
