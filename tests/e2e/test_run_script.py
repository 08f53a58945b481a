"""README command one: scripts/run starts the product on its embedded default — dashboard answering
on its port, a local Ray head up — and Ctrl-C (SIGINT) stops both."""
import json
import os
import signal
import subprocess
import time

import pytest
import requests

from backend.cluster.head import free_ports
from tests.fixtures.paths import REPO

ROOT = REPO
pytestmark = [pytest.mark.ray, pytest.mark.slow]


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_scripts_run_serves_dashboard_with_local_ray(tmp_path, tiny_model_dir):
    home = tmp_path / "home"
    (home / "models").mkdir(parents=True)
    os.symlink(tiny_model_dir, home / "models" / tiny_model_dir.name)
    port, ray_port = free_ports(2)
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("BRIGHTRUN_") and k != "RAY_ADDRESS"}
    env.update(BRIGHTRUN_HOME=str(home), BRIGHTRUN_PORT=str(port),
               BRIGHTRUN_RAY_DASHBOARD_PORT=str(ray_port), BRIGHTRUN_SYSTEM_PACKAGES="0",
               BRIGHTRUN_INSTALL_SMOLLM="0")  # the install itself: tests/backend/training
    log = open(tmp_path / "run.log", "wb")
    proc = subprocess.Popen(["bash", str(ROOT / "scripts" / "run")], cwd=ROOT, env=env,
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    head_pid = None
    try:
        deadline = time.monotonic() + 240
        while True:
            assert proc.poll() is None, (tmp_path / "run.log").read_text()[-3000:]
            assert time.monotonic() < deadline, (tmp_path / "run.log").read_text()[-3000:]
            try:
                if requests.get(f"http://127.0.0.1:{port}/_stcore/health", timeout=2).ok:
                    break
            except requests.RequestException:
                pass
            time.sleep(1)
        head = json.loads((home / "ray" / "head.json").read_text())
        head_pid = head["pid"]
        assert requests.get(f"{head['address']}/api/version", timeout=5).ok
        assert (home / "brightrun.db").exists()
        html = requests.get(f"http://127.0.0.1:{port}/", timeout=5).text
        assert "<html" in html.lower()
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()
    deadline = time.monotonic() + 30
    while head_pid and _pid_alive(head_pid) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert head_pid is None or not _pid_alive(head_pid), "scripts/run left its Ray head running"
