"""The team setup without Docker: PostgreSQL, an S3 server and a Ray head run as separate processes,
wired the way docker/compose.yml wires them (BRIGHTRUN_DATABASE_URL=postgresql+psycopg://…,
BRIGHTRUN_STORAGE_URL=s3://BUCKET + BRIGHTRUN_S3_*, RAY_ADDRESS=http://…:PORT, BRIGHTRUN_AUTH=password).

The schema is migrated by the CLI run as a subprocess (as the dashboard container does), the users
are created by the CLI, the real dashboard is served by ``streamlit run app/main.py`` and driven by
headless Chromium. Alice runs the whole flow (upload → validate on Ray → train the tiny model on 2
Ray workers → download the adapter through presigned S3 URLs); Bob sees none of it, in the CLI and in
the dashboard.
"""
from __future__ import annotations

import json
import os
import secrets
import sys
import time
import uuid

import pytest
import requests

from backend.cli import main as cli_main
from backend.core.config import reset_settings
from backend.db.session import dispose_engines
from tests.e2e.team_helpers import (
    CHROMIUM,
    CHROMIUM_ARGS,
    CliUser,
    cli_subprocess,
    log_in,
    open_page,
    screenshot,
    served_dashboard,
    settle,
)
from tests.fixtures.paths import SAMPLE_DATA
from tests.fixtures.postgres import create_database

SHARED = SAMPLE_DATA
pytestmark = [pytest.mark.team, pytest.mark.ray, pytest.mark.postgres, pytest.mark.s3,
              pytest.mark.browser, pytest.mark.slow]

ALICE, ALICE_PW = "alice@example.com", "alice-correct-horse-1"
BOB, BOB_PW = "bob@example.com", "bob-battery-staple-2"
ALICE_BUDGET = 50.0
# distinctive names, searched for in every page Bob can open
DATASET_NAME = "Quokka Harbor Corpus"
JOB_NAME = "Marmalade Lantern"
MODEL_NAME = f"{JOB_NAME} adapter"
FAST = ["--set", "num_epochs=2", "--set", "learning_rate=0.02", "--set", "batch_size=1",
        "--set", "max_seq_length=512", "--set", "warmup_steps=0",
        "--set", "validation_fraction=0.3"]


def _mark(what: str) -> None:
    """A progress line on the real stderr (capsys holds sys.stdout); shown with ``pytest -s``."""
    sys.__stderr__.write(f"[team {time.strftime('%X')}] {what}\n")


@pytest.fixture
def team_env(pg_server, s3_server, ray_cluster, brightrun_home, monkeypatch):
    """The compose environment (x-brightrun-env) pointed at the session's servers: a fresh
    PostgreSQL database migrated by ``brightrun db upgrade`` (a subprocess), a fresh bucket made the
    way minio-init makes it, the session Ray head, password auth. Yields a dict of what was set."""
    from minio import Minio

    db_url = create_database(pg_server.url)
    bucket = f"team-{uuid.uuid4().hex[:12]}"
    client = Minio(s3_server.endpoint.split("://", 1)[1], access_key=s3_server.access_key,
                   secret_key=s3_server.secret_key, secure=False, region=s3_server.region)
    client.make_bucket(bucket)
    env = {
        "BRIGHTRUN_HOME": str(brightrun_home),
        "BRIGHTRUN_DATABASE_URL": db_url,
        "BRIGHTRUN_STORAGE_URL": f"s3://{bucket}",
        "BRIGHTRUN_S3_ENDPOINT": s3_server.endpoint,
        "BRIGHTRUN_S3_ACCESS_KEY": s3_server.access_key,
        "BRIGHTRUN_S3_SECRET_KEY": s3_server.secret_key,
        "BRIGHTRUN_S3_REGION": s3_server.region,
        "BRIGHTRUN_S3_CERT_CHECK": "true",
        "RAY_ADDRESS": ray_cluster,
        "BRIGHTRUN_AUTH": "password",
        "BRIGHTRUN_DEFAULT_BASE_MODEL": "brightrun/tiny-llama",
        "BRIGHTRUN_SECRET_KEY": secrets.token_hex(32),
        "RAY_AUTH_MODE": "disabled",
    }
    for var, value in env.items():
        monkeypatch.setenv(var, value)
    for var in ("BRIGHTRUN_S3_SECURE", "RAY_AUTH_TOKEN", "RAY_API_SERVER_ADDRESS", "BRIGHTRUN_USER",
                "BRIGHTRUN_PASSWORD", "BRIGHTRUN_NEW_PASSWORD"):
        monkeypatch.delenv(var, raising=False)
    reset_settings()
    dispose_engines()

    up = cli_subprocess("db", "upgrade")
    assert up.returncode == 0, up.stderr[-3000:]
    assert "database at revision" in up.stdout
    yield {**env, "bucket": bucket, "minio": client}
    dispose_engines()
    reset_settings()


def _create_users(monkeypatch, capsys) -> None:
    """`brightrun users create` for alice (with a monthly budget) and bob, as an operator would
    (password from BRIGHTRUN_NEW_PASSWORD, not the command line)."""
    for email, name, password, extra in ((ALICE, "Alice", ALICE_PW, ["--budget", str(ALICE_BUDGET)]),
                                         (BOB, "Bob", BOB_PW, [])):
        monkeypatch.setenv("BRIGHTRUN_NEW_PASSWORD", password)
        capsys.readouterr()
        rc = cli_main(["users", "create", email, "--name", name, "--role", "user", *extra])
        out = capsys.readouterr()
        assert rc == 0, out.err[-3000:]
        assert f"created user {email}" in out.out
    monkeypatch.delenv("BRIGHTRUN_NEW_PASSWORD")


def _alice_flow(alice: CliUser, env: dict) -> dict:
    """Upload → validate (Ray job reading the object from S3) → train on 2 Ray workers (checkpoints
    to S3) → model → presigned downloads. Returns the ids."""
    ds = alice.ok_json("datasets", "upload", str(SHARED / "sample-v4.jsonl"), "--name",
                       DATASET_NAME, "--description", "team-setup end-to-end test", "--wait",
                       "--timeout", "300")
    assert ds["status"] == "ready", (ds.get("error_message"), ds.get("validation_errors"))
    assert ds["total_conversations"] == 5
    assert ds["external_job_id"].startswith("brightrun-validate-")
    _mark("dataset ready")

    job = alice.ok_json("jobs", "create", "--dataset", ds["id"], "--name", JOB_NAME,
                        "--preset", "conservative", "--workers", "2", *FAST, "--wait",
                        "--timeout", "600")
    assert job["status"] == "completed", (job.get("error_message"), job)
    assert job["artifact_id"] and job["gpu_config"]["num_workers"] == 2, job
    assert job["external_job_id"].startswith("brightrun-train-"), job["external_job_id"]
    _mark("job completed")

    models = alice.ok_json("models", "list")
    assert [m["id"] for m in models] == [job["artifact_id"]]
    assert models[0]["name"] == MODEL_NAME
    model = alice.ok_json("models", "show", job["artifact_id"])
    assert model["quality_metrics"]["final_validation_loss"] is not None

    files = _download_through_presigned_urls(alice, job["artifact_id"])
    _check_bucket(env, ds, job, files)

    notes = alice.ok_json("notifications", "list")
    assert {n["type"] for n in notes} >= {"dataset_ready", "job_complete"}
    costs = alice.ok_json("costs", "summary")
    assert costs["budget"] == ALICE_BUDGET
    return {"dataset": ds["id"], "job": job["id"], "model": job["artifact_id"]}


def _download_through_presigned_urls(alice: CliUser, model_id: str) -> dict:
    """`models download ID --urls` → `name: URL` lines; each URL fetched with plain HTTP (no
    credentials) → the adapter files. Returns {name: bytes}."""
    res = alice("models", "download", model_id, "--urls")
    assert res.rc == 0, res.err[-2000:]
    urls = {}
    for line in res.out.splitlines():
        if line.strip():
            name, url = line.split(": ", 1)
            urls[name.strip()] = url.strip()
    assert {"adapter_model.safetensors", "adapter_config.json"} <= set(urls), res.out
    files = {}
    for name, url in urls.items():
        assert url.startswith(os.environ["BRIGHTRUN_S3_ENDPOINT"] + "/"), url
        assert "X-Amz-Signature=" in url and "X-Amz-Expires=" in url, url
        got = requests.get(url, timeout=30)
        assert got.status_code == 200, (name, got.status_code, got.text[:500])
        assert "attachment" in got.headers.get("Content-Disposition", ""), got.headers
        files[name] = got.content
    # the signature is what grants access: a tampered one is refused by the S3 server
    bad = urls["adapter_config.json"].replace("X-Amz-Signature=", "X-Amz-Signature=00")
    assert requests.get(bad, timeout=30).status_code == 403

    from safetensors.torch import load

    tensors = load(files["adapter_model.safetensors"])
    assert tensors and any("lora_A" in k for k in tensors) and any("lora_B" in k for k in tensors)
    config = json.loads(files["adapter_config.json"])
    assert config["peft_type"] == "LORA"
    return files


def _check_bucket(env: dict, ds: dict, job: dict, files: dict) -> None:
    """The objects really are in the S3 bucket, under the keys the spec names."""
    from backend.accounts.users import find_user

    client, bucket = env["minio"], env["bucket"]
    keys = {o.object_name for o in client.list_objects(bucket, recursive=True)}
    alice_id = find_user(ALICE).id
    assert f"datasets/{alice_id}/{ds['id']}/sample-v4.jsonl" in keys, sorted(keys)
    model_prefix = f"models/{job['artifact_id']}/"
    for name, data in files.items():
        assert model_prefix + name in keys, (name, sorted(keys))
        assert client.get_object(bucket, model_prefix + name).read() == data
    assert any(k.startswith(f"checkpoints/{job['id']}/") for k in keys), sorted(keys)


def _bob_sees_nothing(bob: CliUser, impostor: CliUser, ids: dict) -> None:
    for argv in (("datasets", "list"), ("jobs", "list"), ("models", "list"),
                 ("notifications", "list")):
        assert bob.ok_json(*argv) == [], argv
    costs = bob.ok_json("costs", "summary")
    assert costs["total"] == 0 and costs["by_job"] == [] and costs["budget"] is None, costs
    for argv in (("models", "show", ids["model"]), ("datasets", "show", ids["dataset"]),
                 ("jobs", "show", ids["job"]), ("models", "download", ids["model"], "--urls")):
        res = bob(*argv)
        assert res.rc == 1, (argv, res.rc, res.out[-1000:])
        assert "not found" in res.err and "Traceback" not in res.err, (argv, res.err)
        assert "X-Amz-Signature" not in res.out
    # and alice's e-mail with a wrong password gets nothing either
    wrong = impostor("datasets", "list", "--json")
    assert wrong.rc == 1 and "wrong e-mail or password" in wrong.err and not wrong.out


ALICE_NAMES = (DATASET_NAME, JOB_NAME, MODEL_NAME, ALICE)
BOB_PAGES = (  # sidebar title, text that shows the page rendered its (empty) content
    ("Datasets", "No datasets yet"),
    ("Jobs", "No training jobs yet"),
    ("Models", "No models yet"),
    ("Costs", "No costs recorded this month"),
    ("Notifications", "No notifications yet"),
)
ALICE_PAGES = (("Datasets", DATASET_NAME), ("Models", MODEL_NAME))


def _dashboard_checks(url: str) -> None:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            ctx = browser.new_context(viewport={"width": 1400, "height": 1000})
            page = ctx.new_page()
            log_in(page, url, BOB, BOB_PW, login_shot="login")
            for title, marker in BOB_PAGES:
                text = open_page(page, title, marker)
                screenshot(page, f"bob-{title.lower()}")
                for name in ALICE_NAMES:
                    assert name not in text, (title, name, text[:3000])
            ctx.close()

            ctx = browser.new_context(viewport={"width": 1400, "height": 1000})
            page = ctx.new_page()
            log_in(page, url, ALICE, ALICE_PW)
            for title, marker in ALICE_PAGES:
                text = open_page(page, title, marker)
                screenshot(page, f"alice-{title.lower()}")
                assert marker in text, (title, text[:3000])
                assert BOB not in text
            ctx.close()
        finally:
            browser.close()


def test_team_setup_two_users(team_env, monkeypatch, capsys, tmp_path):
    t0 = time.monotonic()
    _mark("environment ready, schema migrated")
    dashboard_env = {k: v for k, v in os.environ.items()
                     if k not in ("BRIGHTRUN_USER", "BRIGHTRUN_PASSWORD", "BRIGHTRUN_NEW_PASSWORD")}
    with served_dashboard(dashboard_env, tmp_path / "streamlit.log") as dashboard:
        _create_users(monkeypatch, capsys)
        url = dashboard.wait_ready()
        _mark(f"users created, dashboard up at {url}")
        alice = CliUser(ALICE, ALICE_PW, monkeypatch, capsys)
        bob = CliUser(BOB, BOB_PW, monkeypatch, capsys)
        ids = _alice_flow(alice, team_env)
        _mark("alice's flow done")
        _bob_sees_nothing(bob, CliUser(ALICE, "not-her-password", monkeypatch, capsys), ids)
        _mark("bob's CLI checks done")
        _dashboard_checks(url)
    _mark(f"dashboard checks done; the test took {time.monotonic() - t0:.0f}s")


def test_deep_link_survives_sign_in(team_env, monkeypatch, capsys, tmp_path):
    """Bob opens a link to a model that is not his (here: an id nobody has), signs in, and lands on
    that Models detail view saying "not found" — not on Home."""
    from playwright.sync_api import sync_playwright

    dashboard_env = {k: v for k, v in os.environ.items()
                     if k not in ("BRIGHTRUN_USER", "BRIGHTRUN_PASSWORD", "BRIGHTRUN_NEW_PASSWORD")}
    with served_dashboard(dashboard_env, tmp_path / "streamlit.log") as dashboard:
        _create_users(monkeypatch, capsys)
        url = dashboard.wait_ready()
        missing = str(uuid.uuid4())
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:
                page = browser.new_page(viewport={"width": 1400, "height": 1000})
                log_in(page, f"{url}/models?id={missing}", BOB, BOB_PW)
                main = page.locator('[data-testid="stMain"]')
                try:
                    main.get_by_text(f"{missing} not found").wait_for(timeout=10_000)
                finally:
                    settle(page)
                    screenshot(page, "bob-deep-link")
                assert page.url.startswith(f"{url}/models?"), page.url
            finally:
                browser.close()
