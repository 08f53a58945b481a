"""Ray gateway: pure address/compatibility/id rules, and real jobs on the session Ray head."""
from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest

from backend import ROOT
from backend.cluster.gateway import (
    MISSING,
    RayGateway,
    free_ports,
    get_gateway,
    is_loopback_host,
    job_spec,
    make_submission_id,
    parse_dashboard_address,
    short_temp_dir,
)
from backend.core.config import get_settings, reset_settings
from backend.core.errors import ConfigError, InvalidInput, NotFound, RayError

ID_RE = re.compile(r"^brightrun-[a-z0-9-]+-[A-Za-z0-9]{1,8}-\d{8}-\d{6}-[0-9a-f]{4}$")


def _gateway(monkeypatch, **env: str) -> RayGateway:
    for var, value in env.items():
        monkeypatch.setenv(var, value)
    reset_settings()
    return get_gateway()


# ----- pure: no cluster, no network --------------------------------------------------------------
def test_submission_ids_are_readable():
    now = datetime(2025, 3, 4, 5, 6, 7, tzinfo=timezone.utc)
    sid = make_submission_id("train", "3f2a9c1e-7b44-4d1a-9f00-123456789abc", now=now)
    assert sid.startswith("brightrun-train-3f2a9c1e-20250304-050607-")
    assert ID_RE.match(sid)
    assert make_submission_id("Validate Dataset", "ab-cd").startswith("brightrun-validatedataset-abcd-")
    assert make_submission_id("train", "x", now=now) != make_submission_id("train", "x", now=now)


def test_kind_without_letters_is_refused():
    with pytest.raises(InvalidInput):
        make_submission_id("--", "abc")


@pytest.mark.parametrize("address, url, host", [
    ("http://127.0.0.1:8265", "http://127.0.0.1:8265", "127.0.0.1"),
    ("http://ray-head:8265/", "http://ray-head:8265", "ray-head"),
    ("https://[::1]:8443", "https://[::1]:8443", "::1"),
])
def test_dashboard_addresses_parse(address, url, host):
    assert parse_dashboard_address(address) == (url, host)


@pytest.mark.parametrize("address, words", [
    ("ray://ray-head:10001", "Ray Client address"),
    ("10.0.0.5:6379", "not a Ray dashboard address"),
    ("auto", "not a Ray dashboard address"),
])
def test_non_dashboard_addresses_are_refused(address, words):
    with pytest.raises(ConfigError, match=words) as err:
        parse_dashboard_address(address)
    assert "http://HEAD_HOST:8265" in str(err.value)


@pytest.mark.parametrize("host, loopback", [
    ("127.0.0.1", True), ("localhost", True), ("::1", True), ("127.0.1.1", True),
    ("10.1.2.3", False), ("ray-head", False),
])
def test_loopback_hosts(host, loopback):
    assert is_loopback_host(host) is loopback


def test_remote_cluster_with_sqlite_and_files_is_refused_before_any_network(brightrun_home,
                                                                           monkeypatch):
    gw = _gateway(monkeypatch, RAY_ADDRESS="http://10.1.2.3:8265")
    started = time.monotonic()
    with pytest.raises(ConfigError) as err:
        gw.submit("ray_jobs.noop", [], kind="test", object_id="abc")
    assert time.monotonic() - started < 1.0  # 10.1.2.3 would hang a connect attempt
    text = str(err.value)
    for needle in ("RAY_ADDRESS=http://10.1.2.3:8265", "BRIGHTRUN_DATABASE_URL=postgresql+psycopg://",
                   "BRIGHTRUN_STORAGE_URL=s3://", "BRIGHTRUN_S3_ENDPOINT"):
        assert needle in text
    assert err.value.code == "config_error"


def test_remote_cluster_with_only_local_storage_names_only_storage(brightrun_home, monkeypatch):
    gw = _gateway(monkeypatch, RAY_ADDRESS="http://10.1.2.3:8265",
                  BRIGHTRUN_DATABASE_URL="postgresql+psycopg://u:p@db:5432/brightrun")
    with pytest.raises(ConfigError) as err:
        gw.check_compatible()
    assert "BRIGHTRUN_STORAGE_URL=s3://" in str(err.value)
    assert "BRIGHTRUN_DATABASE_URL=" not in str(err.value)


def test_remote_cluster_with_shared_stores_is_allowed(brightrun_home, monkeypatch):
    gw = _gateway(monkeypatch, RAY_ADDRESS="http://10.1.2.3:8265",
                  BRIGHTRUN_DATABASE_URL="postgresql+psycopg://u:p@db:5432/brightrun",
                  BRIGHTRUN_STORAGE_URL="s3://brightrun", BRIGHTRUN_S3_ENDPOINT="http://minio:9000")
    gw.check_compatible()
    assert gw.is_remote


@pytest.mark.parametrize("address", ["http://127.0.0.1:8265", "http://localhost:1", "http://[::1]:2"])
def test_loopback_cluster_with_sqlite_is_allowed(brightrun_home, monkeypatch, address):
    gw = _gateway(monkeypatch, RAY_ADDRESS=address)
    gw.check_compatible()
    assert not gw.is_remote


def test_ray_client_address_is_refused_on_submit(brightrun_home, monkeypatch):
    gw = _gateway(monkeypatch, RAY_ADDRESS="ray://ray-head:10001")
    with pytest.raises(ConfigError, match="dashboard"):
        gw.submit("ray_jobs.noop", [], kind="test", object_id="abc")


def test_local_job_spec_uses_this_interpreter_and_settings(brightrun_home, monkeypatch):
    settings = _gateway(monkeypatch, RAY_ADDRESS="http://127.0.0.1:8265").settings
    entrypoint, renv = job_spec(settings, "ray_jobs.noop", ["--message", "two words"],
                                remote=False, extra_env={"EXTRA": 1})
    assert entrypoint == f"{sys.executable} -m ray_jobs.noop --message 'two words'"
    env = renv["env_vars"]
    assert env["PYTHONPATH"] == str(ROOT) and env["RAY_AUTH_MODE"] == "disabled"
    assert env["BRIGHTRUN_HOME"] == str(settings.home) and env["EXTRA"] == "1"
    assert "RAY_ADDRESS" not in env and "working_dir" not in renv


def test_remote_job_spec_ships_the_repo(brightrun_home, monkeypatch):
    settings = _gateway(monkeypatch).settings
    entrypoint, renv = job_spec(settings, "ray_jobs.train_lora", ["--job-id", "j1"], remote=True)
    assert entrypoint == "python -m ray_jobs.train_lora --job-id j1"
    assert renv["working_dir"] == str(ROOT)
    assert {".venv", ".git", "tests", "*.db"} <= set(renv["excludes"])
    assert "PYTHONPATH" not in renv["env_vars"]
    with pytest.raises(InvalidInput):
        job_spec(settings, "ray_jobs.noop; rm -rf /", [], remote=False)


def test_short_temp_dir(tmp_path):
    assert short_temp_dir(tmp_path / ("x" * 80)).name.startswith("brt-ray-")
    assert len(str(short_temp_dir(tmp_path / ("x" * 80)))) <= 40
    assert short_temp_dir(Path("/h")) == Path("/h/ray/t")


def test_get_gateway_follows_settings(brightrun_home, monkeypatch):
    first = _gateway(monkeypatch, RAY_ADDRESS="http://127.0.0.1:1")
    assert get_gateway() is first
    second = _gateway(monkeypatch, RAY_ADDRESS="http://127.0.0.1:2")
    assert second is not first and second.settings.ray_address == "http://127.0.0.1:2"


def test_unreachable_dashboard_is_a_clear_ray_error(brightrun_home, monkeypatch):
    port = free_ports(1)[0]
    gw = _gateway(monkeypatch, RAY_ADDRESS=f"http://127.0.0.1:{port}")
    with pytest.raises(RayError) as err:
        gw.status("brightrun-test-x")
    assert err.value.code == "ray_unreachable"
    assert "not reachable" in str(err.value) and f"RAY_ADDRESS=http://127.0.0.1:{port}" in str(err.value)


def test_no_local_head_means_missing_without_starting_one(brightrun_home, monkeypatch):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    gw = _gateway(monkeypatch)
    assert gw.status("brightrun-test-gone") == MISSING
    dead = subprocess.Popen(["true"])
    dead.wait()
    (brightrun_home / "ray").mkdir(parents=True)
    (brightrun_home / "ray" / "head.json").write_text(json.dumps(
        {"pid": dead.pid, "address": "http://127.0.0.1:1", "temp_dir": "/tmp/brt-ray-gone",
         "dashboard_port": 1, "log_path": "/tmp/brt-ray-gone/head.log"}))  # a stale record
    assert gw.status("brightrun-test-gone") == MISSING
    assert gw.stop("brightrun-test-gone") is False
    assert gw.list_jobs() == []
    assert gw.stop_local_head() is False
    assert not (brightrun_home / "ray" / "head.json").exists()


def test_no_local_head_when_ray_address_is_set(brightrun_home, monkeypatch):
    gw = _gateway(monkeypatch, RAY_ADDRESS="http://127.0.0.1:8265")
    with pytest.raises(ConfigError, match="RAY_ADDRESS"):
        gw.ensure_local_head()


def test_taken_dashboard_port_names_the_setting(brightrun_home, monkeypatch):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        gw = _gateway(monkeypatch, BRIGHTRUN_RAY_DASHBOARD_PORT=str(port))
        with pytest.raises(RayError, match="BRIGHTRUN_RAY_DASHBOARD_PORT"):
            gw.ensure_local_head()
    assert not (brightrun_home / "ray" / "head.json").exists()


# ----- real jobs on the session head -------------------------------------------------------------
@pytest.mark.ray
def test_noop_job_succeeds_with_settings_in_its_environment(ray_env):
    gw = ray_env
    sid = gw.submit("ray_jobs.noop", ["--message", "hello ray", "--ray-task"], kind="test",
                    object_id="0123456789abcdef", extra_env={"BRIGHTRUN_TEST_MARK": "mark-42"},
                    metadata={"note": "gateway test"})
    assert ID_RE.match(sid) and sid.startswith("brightrun-test-01234567-")
    assert gw.wait(sid, timeout_s=120) == "SUCCEEDED", gw.logs(sid)
    logs = gw.logs(sid)
    assert "noop: hello ray" in logs
    assert f"noop: env BRIGHTRUN_HOME={get_settings().home}" in logs
    assert f"noop: env BRIGHTRUN_DATABASE_URL={get_settings().database_url}" in logs
    assert "noop: env BRIGHTRUN_TEST_MARK=mark-42" in logs
    assert "noop: ray task result 49" in logs  # the job's driver reached the cluster
    assert gw.logs(sid, tail_lines=1) == "noop: done\n"
    info = gw.info(sid)
    assert info["entrypoint"].startswith(f"{sys.executable} -m ray_jobs.noop")
    assert info["metadata"]["brightrun_kind"] == "test" and info["metadata"]["note"] == "gateway test"
    assert info["start_time"] <= info["end_time"]
    assert sid in {job["submission_id"] for job in gw.list_jobs()}


@pytest.mark.ray
def test_failing_job_is_failed_with_its_message(ray_env):
    sid = ray_env.submit("ray_jobs.noop", ["--fail"], kind="test", object_id="failing")
    assert ray_env.wait(sid, timeout_s=60) == "FAILED"
    info = ray_env.info(sid)
    assert info["status"] == "FAILED" and "exit code 3" in info["message"]
    assert "failing on purpose" in ray_env.logs(sid)


@pytest.mark.ray
def test_long_job_is_stopped(ray_env):
    sid = ray_env.submit("ray_jobs.noop", ["--sleep", "120"], kind="test", object_id="sleeper")
    deadline = time.monotonic() + 60
    while ray_env.status(sid) != "RUNNING":
        assert time.monotonic() < deadline, ray_env.info(sid)
        time.sleep(0.3)
    started = time.monotonic()
    assert ray_env.stop(sid) is True
    assert ray_env.wait(sid, timeout_s=15) == "STOPPED"
    assert time.monotonic() - started < 15
    assert ray_env.stop(sid) is False


@pytest.mark.ray
def test_unknown_job_is_missing(ray_env):
    assert ray_env.status("brightrun-test-nothere-20250101-000000-abcd") == MISSING
    assert ray_env.wait("brightrun-test-nothere-20250101-000000-abcd", timeout_s=1) == MISSING
    assert ray_env.stop("brightrun-test-nothere-20250101-000000-abcd") is False
    with pytest.raises(NotFound):
        ray_env.logs("brightrun-test-nothere-20250101-000000-abcd")


@pytest.mark.ray
def test_wait_times_out_with_ray_error(ray_env):
    sid = ray_env.submit("ray_jobs.noop", ["--sleep", "60"], kind="test", object_id="slowpoke")
    try:
        with pytest.raises(RayError) as err:
            ray_env.wait(sid, timeout_s=1, poll_s=0.2)
        assert err.value.code == "ray_timeout"
    finally:
        ray_env.stop(sid)


# ----- the on-demand local head ------------------------------------------------------------------
@pytest.mark.ray
@pytest.mark.slow
def test_local_head_is_started_reused_and_stopped(brightrun_home, monkeypatch):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    port = free_ports(1)[0]
    gw = _gateway(monkeypatch, BRIGHTRUN_RAY_DASHBOARD_PORT=str(port))
    try:
        head = gw.ensure_local_head()
        assert head.address == f"http://127.0.0.1:{port}" and head.alive()
        record = json.loads((brightrun_home / "ray" / "head.json").read_text())
        assert record["pid"] == head.pid
        again = RayGateway(get_settings()).ensure_local_head()  # a fresh gateway reads head.json
        assert again.pid == head.pid
        sid = gw.submit("ray_jobs.noop", ["--message", "on demand"], kind="test", object_id="local")
        assert gw.wait(sid, timeout_s=120) == "SUCCEEDED"
        assert "noop: on demand" in gw.logs(sid)
    finally:
        stopped = gw.stop_local_head()
        shutil.rmtree(short_temp_dir(gw.settings.home), ignore_errors=True)
    assert stopped is True
    with pytest.raises(ProcessLookupError):
        os.kill(head.pid, 0)
    with pytest.raises(ProcessLookupError):
        os.killpg(head.pid, 0)  # nothing of its process group is left
    assert not (brightrun_home / "ray" / "head.json").exists()
    assert gw.status(sid) == MISSING
    assert gw.stop_local_head() is False
