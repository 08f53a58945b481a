"""Safe by default, the pure rules: where the dashboard may listen, which settings are secrets and how
they reach Ray jobs (never in the runtime env), what a job needs from the cluster, and the
reconciler loop outliving a failing pass."""
from __future__ import annotations

import json
import os
import stat

import pytest

from backend import reconciler
from backend.cluster.gateway import job_spec, secrets_file_path, write_secrets_file
from backend.core.config import dashboard_bind, is_loopback_address, load_settings
from backend.core.errors import ConfigError
from backend.jobs.capacity import job_needs, missing_resources

SECRETS = {"BRIGHTRUN_S3_SECRET_KEY": "s3-secret-value", "BRIGHTRUN_SECRET_KEY": "signing-key-value",
           "RAY_AUTH_TOKEN": "ray-token-value"}
DB_URL = "postgresql+psycopg://brightrun:db-password-value@db.example:5432/brightrun"


# ----- where the dashboard listens ----------------------------------------------------------------
@pytest.mark.parametrize("address, auth, allow, served, warns", [
    ("127.0.0.1", "none", False, "127.0.0.1", False),
    ("localhost", "none", False, "localhost", False),
    ("::1", "none", False, "::1", False),
    ("127.0.0.2", "none", False, "127.0.0.2", False),
    ("127.0.0.1", "password", False, "127.0.0.1", False),
    ("0.0.0.0", "password", False, "0.0.0.0", False),
    ("192.0.2.7", "password", False, "192.0.2.7", False),
    ("0.0.0.0", "none", True, "0.0.0.0", True),
    ("::", "none", True, "::", True),
    ("studio.example", "none", True, "studio.example", True),
    (" 0.0.0.0 ", "none", True, "0.0.0.0", True),
])
def test_dashboard_bind_allowed(address, auth, allow, served, warns):
    got, warning = dashboard_bind(address, auth, allow)
    assert got == served
    assert (warning is not None) is warns
    if warns:
        assert "WARNING" in warning and "admin" in warning


@pytest.mark.parametrize("address", ["0.0.0.0", "::", "192.0.2.7", "studio.example", "[::]", ""])
def test_dashboard_bind_refuses_network_without_login(address):
    with pytest.raises(ConfigError) as err:
        dashboard_bind(address, "none", False)
    text = str(err.value)
    assert "BRIGHTRUN_DASHBOARD_ADDRESS" in text
    if address:
        assert "BRIGHTRUN_AUTH=password" in text and "BRIGHTRUN_ALLOW_NETWORK_WITHOUT_AUTH" in text


@pytest.mark.parametrize("host, loopback", [
    ("127.0.0.1", True), ("localhost", True), ("::1", True), ("[::1]", True), ("127.9.9.9", True),
    ("0.0.0.0", False), ("::", False), ("10.0.0.1", False), ("::ffff:192.0.2.2", False),
    ("myhost", False),
])
def test_loopback_addresses(host, loopback):
    assert is_loopback_address(host) is loopback


def test_dashboard_settings_defaults_and_bad_values(tmp_path):
    s = load_settings({"BRIGHTRUN_HOME": str(tmp_path)})
    assert s.dashboard_address == "127.0.0.1" and s.allow_network_without_auth is False
    assert s.reconcile_interval_s > 0 and s.missing_resource_wait_s > 0
    for var, raw in (("BRIGHTRUN_ALLOW_NETWORK_WITHOUT_AUTH", "perhaps"),
                     ("BRIGHTRUN_RECONCILE_INTERVAL_S", "-1"),
                     ("BRIGHTRUN_MISSING_RESOURCE_WAIT_S", "soon")):
        with pytest.raises(ConfigError, match=var):
            load_settings({"BRIGHTRUN_HOME": str(tmp_path), var: raw})


# ----- secrets never in a job's runtime env -------------------------------------------------------
def _team_settings(tmp_path, **extra):
    return load_settings({"BRIGHTRUN_HOME": str(tmp_path), "BRIGHTRUN_DATABASE_URL": DB_URL,
                          "BRIGHTRUN_STORAGE_URL": "s3://bucket",
                          "BRIGHTRUN_S3_ENDPOINT": "http://s3.example:9000",
                          "BRIGHTRUN_S3_ACCESS_KEY": "access", **SECRETS, **extra})


def test_job_secrets_are_the_secret_settings_and_a_db_url_with_password(tmp_path):
    s = _team_settings(tmp_path)
    assert s.job_secrets() == {**SECRETS, "BRIGHTRUN_DATABASE_URL": DB_URL}
    plain = load_settings({"BRIGHTRUN_HOME": str(tmp_path)})
    assert plain.job_secrets() == {}  # SQLite URL without password, nothing secret set


@pytest.mark.parametrize("remote", [False, True])
def test_job_spec_carries_no_secret(tmp_path, remote):
    s = _team_settings(tmp_path)
    path = tmp_path / "secrets.json"
    _, renv = job_spec(s, "ray_jobs.noop", [], remote=remote, secrets_file=path)
    text = json.dumps(renv)
    for value in [*SECRETS.values(), "db-password-value"]:
        assert value not in text
    env = renv["env_vars"]
    assert env["BRIGHTRUN_S3_ACCESS_KEY"] == "access" and env["BRIGHTRUN_HOME"] == str(s.home)
    assert "BRIGHTRUN_DATABASE_URL" not in env
    assert env.get("BRIGHTRUN_SECRETS_FILE") == (None if remote else str(path))


def test_secrets_file_is_private_and_restores_the_settings(tmp_path):
    s = _team_settings(tmp_path)
    path = write_secrets_file(s)
    assert path == secrets_file_path(s) and path.parent == tmp_path / "secrets"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(path.parent).st_mode) == 0o700
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temp file left
    _, renv = job_spec(s, "ray_jobs.noop", [], remote=False, secrets_file=path)
    in_job = load_settings(renv["env_vars"])  # what the job's driver reads
    assert in_job == s.model_copy(update={"secrets_file": path})
    assert write_secrets_file(load_settings({"BRIGHTRUN_HOME": str(tmp_path / "h2")})) is None


@pytest.mark.parametrize("content, words", [
    (None, "cannot read"), ("not json", "cannot read"), ('["a"]', "JSON object"),
    ('{"PATH": "/bin"}', "JSON object"), ('{"BRIGHTRUN_SECRET_KEY": 3}', "JSON object"),
])
def test_bad_secrets_file_names_the_setting(tmp_path, content, words):
    path = tmp_path / "s.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(ConfigError) as err:
        load_settings({"BRIGHTRUN_HOME": str(tmp_path), "BRIGHTRUN_SECRETS_FILE": str(path)})
    assert "BRIGHTRUN_SECRETS_FILE" in str(err.value) and words in str(err.value)


# ----- what a job needs from the cluster -----------------------------------------------------------
@pytest.mark.parametrize("use_gpu, workers, totals, missing", [
    (True, 1, {"CPU": 2.0}, "needs 1 GPU; it has no GPU"),
    (True, 4, {"CPU": 8.0, "GPU": 2.0}, "needs 4 GPU (it has 2)"),
    (True, 2, {"CPU": 0.0, "GPU": 2.0}, None),
    (False, 1, {"CPU": 2.0}, None),
    (False, 2, {"CPU": 2.0}, None),
    (False, 3, {"CPU": 2.0}, "needs 3 CPU (it has 2)"),
    (False, 1, {"GPU": 1.0}, "needs 1 CPU; it has no CPU"),
])
def test_missing_resources(use_gpu, workers, totals, missing):
    why = missing_resources(job_needs(use_gpu, workers), totals)
    if missing is None:
        assert why is None
    else:
        assert why.startswith("the Ray cluster can never run this job") and missing in why


# ----- the reconciler loop ------------------------------------------------------------------------
def test_reconciler_loop_survives_a_failing_pass(monkeypatch):
    results = iter([RuntimeError("database is locked"), 2, 0])

    def fake_pass():
        value = next(results)
        if isinstance(value, Exception):
            raise value
        return value

    monkeypatch.setattr(reconciler, "reconcile_all", fake_pass)
    lines, sleeps = [], []
    assert reconciler.run_loop(5, report=lines.append, passes=3, sleep=sleeps.append) == 0
    assert lines == ["reconcile pass failed: RuntimeError: database is locked",
                     "reconciled 2 item(s)"]
    assert len(sleeps) == 2 and all(0 <= s <= 5 for s in sleeps)


def test_reconciler_loop_stops_with_its_parent():
    import subprocess

    gone = subprocess.Popen(["true"])
    gone.wait()
    assert reconciler.run_loop(0.01, stop_with_pid=gone.pid, report=print, passes=None) == 0
