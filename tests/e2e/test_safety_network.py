"""Safe by default, end to end: what the embedded default exposes and what a Ray job's metadata
shows.

- ``scripts/run`` as a user runs it: every listening socket of the processes it started (dashboard,
  reconciler, the local Ray head and everything the head started, including a job's driver and a
  Ray task's worker) is on a loopback address; Streamlit prints no network URL; the reconciler runs
  beside the dashboard and all of it stops with Ctrl-C.
- A network address for the dashboard is refused with auth none, allowed with a warning only
  through the explicit override.
- Secrets (database password, S3 secret key, BRIGHTRUN_SECRET_KEY) appear nowhere in the Ray
  dashboard's ``GET /api/jobs/`` while the job still reaches PostgreSQL and S3 with them.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest
import requests

from backend.cluster.head import free_ports
from backend.core.config import reset_settings
from tests.e2e.safety_helpers import is_loopback_ip, listening, make_home, run_env, scripts_run
from tests.fixtures.paths import REPO, SAMPLE_DATA

pytestmark = [pytest.mark.ray]


@pytest.mark.slow
def test_embedded_default_listens_on_loopback_only(tmp_path, tiny_model_dir, monkeypatch):
    home = make_home(tmp_path, tiny_model_dir)
    with scripts_run(tmp_path, home) as product:
        assert len(product.reconcilers()) == 1, "scripts/run starts one reconciler beside it"
        # a job whose driver connects to the cluster and runs a task: drivers and workers too
        monkeypatch.setenv("BRIGHTRUN_HOME", str(home))
        monkeypatch.setenv("BRIGHTRUN_RAY_DASHBOARD_PORT", str(product.ray_port))
        monkeypatch.delenv("RAY_ADDRESS", raising=False)
        reset_settings()
        from backend.cluster.gateway import get_gateway

        try:
            gw = get_gateway()
            sid = gw.submit("ray_jobs.noop", ["--ray-task", "--sleep", "6"], kind="test",
                            object_id="sockets")
            roots = (product.proc.pid, product.head_pid)
            seen: set[tuple[str, int, str]] = set()
            deadline = time.monotonic() + 120
            while gw.status(sid) not in ("SUCCEEDED", "FAILED", "STOPPED"):
                assert time.monotonic() < deadline, gw.info(sid)
                seen |= listening(*roots)
                time.sleep(0.5)
            seen |= listening(*roots)
            assert gw.status(sid) == "SUCCEEDED", gw.logs(sid)[-2000:]
        finally:
            reset_settings()
        ports = {p for _, p, _ in seen}
        assert product.port in ports and product.ray_port in ports, seen  # dashboard, Job API
        assert len({name for _, _, name in seen}) >= 5, seen  # gcs, raylet, agents, workers…
        exposed = sorted(s for s in seen if not is_loopback_ip(s[0]))
        print(f"listening sockets: {len(seen)}, on a non-loopback address: {len(exposed)}")
        assert not exposed, f"listening beyond loopback: {exposed}"
        output = product.output()
        assert "Network URL" not in output and "External URL" not in output, output[-2000:]
        assert f"http://localhost:{product.port}" in output


def _dashboard_address(**env: str) -> subprocess.CompletedProcess:
    """What scripts/run asks before it starts anything."""
    full = {k: v for k, v in os.environ.items() if not k.startswith("BRIGHTRUN_")}
    full.update(env)
    return subprocess.run([sys.executable, "-c", "import sys; from backend.core.config import "
                           "print_dashboard_address as p; sys.exit(p())"], cwd=REPO, env=full,
                          capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("env, rc, address, stderr", [
    ({}, 0, "127.0.0.1", ""),
    ({"BRIGHTRUN_DASHBOARD_ADDRESS": "0.0.0.0"}, 2, "", "BRIGHTRUN_AUTH=password"),
    ({"BRIGHTRUN_DASHBOARD_ADDRESS": "0.0.0.0", "BRIGHTRUN_AUTH": "password"}, 0, "0.0.0.0", ""),
    ({"BRIGHTRUN_DASHBOARD_ADDRESS": "0.0.0.0", "BRIGHTRUN_ALLOW_NETWORK_WITHOUT_AUTH": "true"}, 0,
     "0.0.0.0", "WARNING"),
])
def test_dashboard_address_decision_as_scripts_run_asks(tmp_path, env, rc, address, stderr):
    r = _dashboard_address(BRIGHTRUN_HOME=str(tmp_path), **env)
    assert r.returncode == rc, r.stderr
    assert r.stdout.strip() == address
    assert stderr in r.stderr and ("Traceback" not in r.stderr)


def test_scripts_run_refuses_network_without_login_before_starting(tmp_path, tiny_model_dir):
    home = make_home(tmp_path, tiny_model_dir)
    r = subprocess.run(["bash", str(REPO / "scripts" / "run")], cwd=REPO, capture_output=True,
                       text=True, timeout=300,
                       env=run_env(home, BRIGHTRUN_DASHBOARD_ADDRESS="0.0.0.0",
                                    BRIGHTRUN_PORT=str(free_ports(1)[0])))
    assert r.returncode == 2, r.stdout + r.stderr
    assert "BRIGHTRUN_DASHBOARD_ADDRESS=0.0.0.0" in r.stderr
    assert not (home / "ray" / "head.json").exists() and not (home / "brightrun.db").exists()


# ----- secrets ------------------------------------------------------------------------------------
@pytest.mark.postgres
@pytest.mark.s3
def test_no_secret_in_ray_job_metadata(ray_env, ray_cluster, pg_url, s3_env, monkeypatch, capsys):
    from sqlalchemy.engine import make_url

    from backend.cli import main
    from backend.db.session import dispose_engines

    db_password, signing_key = "pg-pass-5f1e0c9b7a", "signing-key-3a8d6e2f41"
    url = make_url(pg_url).set(password=db_password).render_as_string(hide_password=False)
    monkeypatch.setenv("BRIGHTRUN_DATABASE_URL", url)
    monkeypatch.setenv("BRIGHTRUN_SECRET_KEY", signing_key)
    reset_settings()
    dispose_engines()
    from backend.core.config import get_settings

    s3_secret = get_settings().s3_secret_key
    assert s3_secret and db_password in get_settings().database_url
    # the validation job reads the file from S3 and writes its report to PostgreSQL
    rc = main(["datasets", "upload", str(SAMPLE_DATA / "sample-v4.jsonl"), "--name", "secret-test",
               "--wait", "--timeout", "300", "--json"])
    info = json.loads(capsys.readouterr().out)
    assert rc == 0 and info["status"] == "ready", info
    ours = [j for j in ray_env.list_jobs() if j["metadata"].get("brightrun_object_id") == info["id"]]
    assert len(ours) == 1 and ray_env.wait(ours[0]["submission_id"], timeout_s=60) == "SUCCEEDED"
    jobs = requests.get(f"{ray_cluster}/api/jobs/", timeout=10)
    assert jobs.ok
    ours = [j for j in jobs.json() if j["submission_id"] == ours[0]["submission_id"]]
    env = ours[0]["runtime_env"]["env_vars"]
    assert env["BRIGHTRUN_SECRETS_FILE"].startswith(str(get_settings().home))
    detail = requests.get(f"{ray_cluster}/api/jobs/{ours[0]['submission_id']}", timeout=10).text
    for secret in (db_password, s3_secret, signing_key):
        assert secret not in jobs.text and secret not in detail, "a secret is in Ray job metadata"
