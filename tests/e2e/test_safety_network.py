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

import ipaddress
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import requests

from backend.cluster.head import free_ports
from backend.config import reset_settings
from tests.fixtures.paths import REPO, SAMPLE_DATA

pytestmark = [pytest.mark.ray]


def _loopback(ip: str) -> bool:
    addr = ipaddress.ip_address(ip.split("%", 1)[0])
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    return addr.is_loopback


def _tree(*roots: int) -> list[psutil.Process]:
    """The root processes, their descendants, and every process in their sessions (the Ray head
    runs in its own session; processes it starts may be reparented)."""
    found: dict[int, psutil.Process] = {}
    for pid in roots:
        try:
            root = psutil.Process(pid)
        except psutil.NoSuchProcess:
            continue
        for proc in [root, *root.children(recursive=True)]:
            found[proc.pid] = proc
    sessions = {os.getsid(pid) for pid in roots if psutil.pid_exists(pid)}
    for proc in psutil.process_iter():
        try:
            if os.getsid(proc.pid) in sessions:
                found.setdefault(proc.pid, proc)
        except (ProcessLookupError, PermissionError):
            pass
    return list(found.values())


def listening(*roots: int) -> set[tuple[str, int, str]]:
    """``(ip, port, process name)`` of every listening TCP socket of those processes."""
    out = set()
    for proc in _tree(*roots):
        try:
            name = proc.name()
            for conn in proc.net_connections(kind="inet"):
                if conn.status == psutil.CONN_LISTEN:
                    out.add((conn.laddr.ip, conn.laddr.port, name))
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            pass
    return out


def _run_env(home: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("BRIGHTRUN_") and k not in ("RAY_ADDRESS", "RAY_AUTH_MODE")}
    env.update(BRIGHTRUN_HOME=str(home), BRIGHTRUN_SYSTEM_PACKAGES="0", **extra)
    return env


def _home(tmp_path: Path, tiny_model_dir: Path) -> Path:
    home = tmp_path / "home"
    (home / "models").mkdir(parents=True)
    os.symlink(tiny_model_dir, home / "models" / tiny_model_dir.name)
    return home


@pytest.mark.slow
def test_embedded_default_listens_on_loopback_only(tmp_path, tiny_model_dir, monkeypatch):
    home = _home(tmp_path, tiny_model_dir)
    port, ray_port = free_ports(2)
    log_path = tmp_path / "run.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(["bash", str(REPO / "scripts" / "run")], cwd=REPO,
                                env=_run_env(home, BRIGHTRUN_PORT=str(port),
                                             BRIGHTRUN_RAY_DASHBOARD_PORT=str(ray_port)),
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    head_pid = reconciler_pid = None
    try:
        deadline = time.monotonic() + 240
        while True:
            assert proc.poll() is None, log_path.read_text()[-3000:]
            assert time.monotonic() < deadline, log_path.read_text()[-3000:]
            try:
                if requests.get(f"http://127.0.0.1:{port}/_stcore/health", timeout=2).ok:
                    break
            except requests.RequestException:
                pass
            time.sleep(1)
        head = json.loads((home / "ray" / "head.json").read_text())
        head_pid = head["pid"]
        reconcilers = [p for p in _tree(proc.pid)
                       if "reconcile" in p.cmdline() and "--loop" in p.cmdline()]
        assert len(reconcilers) == 1, "scripts/run must start one reconciler beside the dashboard"
        reconciler_pid = reconcilers[0].pid

        # a job whose driver connects to the cluster and runs a task: drivers and workers too
        monkeypatch.setenv("BRIGHTRUN_HOME", str(home))
        monkeypatch.setenv("BRIGHTRUN_RAY_DASHBOARD_PORT", str(ray_port))
        monkeypatch.delenv("RAY_ADDRESS", raising=False)
        reset_settings()
        from backend.cluster.gateway import get_gateway

        gw = get_gateway()
        sid = gw.submit("ray_jobs.noop", ["--ray-task", "--sleep", "6"], kind="test",
                        object_id="sockets")
        seen: set[tuple[str, int, str]] = set()
        deadline = time.monotonic() + 120
        while gw.status(sid) not in ("SUCCEEDED", "FAILED", "STOPPED"):
            assert time.monotonic() < deadline, gw.info(sid)
            seen |= listening(proc.pid, head_pid)
            time.sleep(0.5)
        seen |= listening(proc.pid, head_pid)
        assert gw.status(sid) == "SUCCEEDED", gw.logs(sid)[-2000:]
        ports = {p for _, p, _ in seen}
        assert port in ports and ray_port in ports, seen  # the dashboard and Ray's Job API
        assert len({name for _, _, name in seen}) >= 5, seen  # gcs, raylet, agents, workers…
        exposed = sorted(s for s in seen if not _loopback(s[0]))
        print(f"listening sockets: {len(seen)}, on a non-loopback address: {len(exposed)}")
        assert not exposed, f"listening beyond loopback: {exposed}"
        output = log_path.read_text()
        assert "Network URL" not in output and "External URL" not in output, output[-2000:]
        assert f"http://localhost:{port}" in output
    finally:
        reset_settings()
        os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    deadline = time.monotonic() + 30
    for pid in (head_pid, reconciler_pid):
        while pid and psutil.pid_exists(pid) and psutil.Process(pid).status() != "zombie" \
                and time.monotonic() < deadline:
            time.sleep(0.5)
        assert not pid or not psutil.pid_exists(pid) or psutil.Process(pid).status() == "zombie", \
            f"scripts/run left pid {pid} running"


def _dashboard_address(**env: str) -> subprocess.CompletedProcess:
    """What scripts/run asks before it starts anything."""
    full = {k: v for k, v in os.environ.items() if not k.startswith("BRIGHTRUN_")}
    full.update(env)
    return subprocess.run([sys.executable, "-c", "import sys; from backend.config import "
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
    home = _home(tmp_path, tiny_model_dir)
    r = subprocess.run(["bash", str(REPO / "scripts" / "run")], cwd=REPO, capture_output=True,
                       text=True, timeout=300,
                       env=_run_env(home, BRIGHTRUN_DASHBOARD_ADDRESS="0.0.0.0",
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
    from backend.config import get_settings

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
