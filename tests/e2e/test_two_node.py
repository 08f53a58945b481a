"""One adapter per job on a two-node Ray cluster in team mode (issue 12, acceptance 5).

PostgreSQL and SeaweedFS S3 (the session fixtures), a Ray head started here (no CPU for training)
and a second node joined with ``ray start --address``, started in a mount namespace of its own
(``unshare --mount``) where the head's files are covered by empty tmpfs mounts: the head's Ray
session and temp folders (the driver's temp folders included, via TMPDIR) and pytest's temp root
(the BRIGHTRUN_HOME with its tiny model and database files). It has its own temp dir, working
directory and HOME and only the secret BRIGHTRUN_* settings, as a team's worker nodes carry them
(the job hands its workers the other settings, as on a
real cluster). The training workers are placed on that node by a custom resource only it has
(``BRIGHTRUN_TEST_WORKER_RESOURCE``, read by ``ray_jobs.driver.recipe.worker_resources``). The job must
complete, its 2 workers must have run there, and exactly one ``models/…/`` prefix — the model
row's — must be in the bucket.

What both nodes read: the code and virtualenv, and the base model folder, copied to the same path
(as a cluster image would have them on every node).
"""
from __future__ import annotations

import io
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
import pytest
import requests
from sqlalchemy import select

from backend.accounts.users import ensure_local_user
from backend.cluster.gateway import free_ports, get_gateway, start_head, stop_head
from backend.core.config import reset_settings
from backend.datasets import service as datasets
from backend.db.models import ModelArtifact
from backend.db.session import session_scope
from backend.jobs import service as jobs
from backend.storage import get_object_store
from ray_jobs.driver.recipe import TEST_WORKER_RESOURCE_VAR
from tests.fixtures.paths import SAMPLE_DATA

pytestmark = [pytest.mark.ray, pytest.mark.s3, pytest.mark.postgres, pytest.mark.slow]
NODE_RESOURCE = "brightrun_test_node2"
FAST = ["num_epochs=2", "learning_rate=0.02", "batch_size=1", "max_seq_length=256",
        "warmup_steps=0", "lora_dropout=0", "validation_fraction=0.3", "checkpoint_every_steps=2"]


def _gcs_port(head_pid: int) -> int:
    cmd = psutil.Process(head_pid).cmdline()
    return int(cmd[cmd.index("--port") + 1])


def _copy_model(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst, symlinks=False)
    return dst


def _start_worker_node(gcs: str, base: Path, hidden: list[Path]) -> tuple[subprocess.Popen, Path]:
    """``ray start --address`` in a mount namespace of its own where each folder of ``hidden`` (the
    head's files) is covered by an empty tmpfs, with its own cwd, HOME and temp dir, and no
    BRIGHTRUN_* variables. Fails (exit 3) if a hidden folder still shows anything."""
    node = base / "node2"
    for sub in ("home", "tmp"):
        (node / sub).mkdir(parents=True)
    ports = free_ports(6)
    ray_cmd = [str(Path(sys.executable).with_name("ray")), "start", "--block",
               "--disable-usage-stats", "--address", gcs, "--node-ip-address", "127.0.0.1",
               "--temp-dir", str(node / "tmp"), "--num-cpus", "2",
               "--resources", json.dumps({NODE_RESOURCE: 2}),
               "--node-manager-port", str(ports[0]), "--object-manager-port", str(ports[1]),
               "--metrics-export-port", str(ports[2]),
               "--dashboard-agent-listen-port", str(ports[3]),
               "--dashboard-agent-grpc-port", str(ports[4]),
               "--runtime-env-agent-port", str(ports[5]), "--min-worker-port", "0",
               "--max-worker-port", "0", "--object-store-memory", str(256 << 20)]
    script = "".join(f"mount -t tmpfs tmpfs {shlex.quote(str(h))} && " for h in hidden)
    script += "".join(f'[ -z "$(ls -A {shlex.quote(str(h))})" ] && ' for h in hidden)
    script += "exec " + shlex.join(ray_cmd) + " || exit 3"
    from backend.core.config import get_settings

    # like a team deployment's worker nodes (docker/compose.yml), the node carries the secret
    # settings in its own environment: the head's secrets file is hidden from it
    env = {"PATH": os.environ["PATH"], "HOME": str(node / "home"), "RAY_AUTH_MODE": "disabled",
           "RAY_USAGE_STATS_ENABLED": "0", "LANG": "C.UTF-8", "TMPDIR": str(node / "tmp"),
           **get_settings().job_secrets()}
    log = open(node / "node.log", "wb")  # noqa: SIM115 - closed with the process
    proc = subprocess.Popen(["unshare", "--mount", "--propagation", "private", "sh", "-c",
                             script], cwd=str(node / "home"), env=env, stdout=log,
                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            start_new_session=True)
    return proc, node


def _stop_group(proc: subprocess.Popen) -> None:
    for sig, wait_s in ((signal.SIGTERM, 20), (signal.SIGKILL, 10)):
        if proc.poll() is not None:
            break
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            break
        try:
            proc.wait(timeout=wait_s)
        except subprocess.TimeoutExpired:
            continue
    # what the node's raylet started (its workers) lives in that process group too
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _state(dashboard: str, what: str) -> list[dict]:
    reply = requests.get(f"{dashboard}/api/v0/{what}", params={"limit": 1000}, timeout=10)
    reply.raise_for_status()
    return reply.json()["data"]["result"]["result"]


def _wait_for_node(dashboard: str, timeout_s: float = 180) -> str:
    """The node id of the second node once it is alive."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            for n in _state(dashboard, "nodes"):
                if n["state"] == "ALIVE" and NODE_RESOURCE in (n.get("resources_total") or {}):
                    return n["node_id"]
        except (requests.RequestException, KeyError, ValueError):
            pass  # not up yet
        time.sleep(1)
    raise AssertionError("the second node did not join")


def test_two_node_job_stores_one_adapter(pg_url, s3_env, tiny_model_dir, brightrun_home,
                                         tmp_path_factory, monkeypatch):
    base = Path(tempfile.mkdtemp(prefix="brt-2node-", dir="/tmp"))
    model = _copy_model(Path(tiny_model_dir), base / "base-model")
    head_tmp = Path(tempfile.mkdtemp(prefix="brt-2head-", dir="/tmp"))
    (head_tmp / "tmp").mkdir()
    monkeypatch.setenv("TMPDIR", str(head_tmp / "tmp"))  # the head's (and driver's) temp folders
    # a head another node can join (a loopback-only head refuses a second node)
    head = start_head(head_tmp / "ray", free_ports(1)[0], num_cpus=0,
                      object_store_memory=256 << 20, loopback_only=False)
    # hidden from the second node: the head's Ray and temp folders, and pytest's tmp root (the
    # BRIGHTRUN_HOME with its tiny model, the test's files)
    pytest_root = tmp_path_factory.getbasetemp().parent
    assert brightrun_home.is_relative_to(pytest_root)
    assert Path(tiny_model_dir).is_relative_to(pytest_root)
    hidden = [head_tmp, pytest_root]
    node = None
    try:
        node, node_dir = _start_worker_node(f"127.0.0.1:{_gcs_port(head.pid)}", base,
                                            hidden)
        try:
            node_id = _wait_for_node(head.address)
        except AssertionError:
            raise AssertionError((node_dir / "node.log").read_text(errors="replace")[-3000:])
        monkeypatch.setenv("RAY_ADDRESS", head.address)
        reset_settings()
        me = ensure_local_user()
        data = (SAMPLE_DATA / "sample-v4.jsonl").read_bytes()
        ds = datasets.upload_dataset(me, io.BytesIO(data), "d.jsonl", "two nodes", size=len(data),
                                     submit=False)
        datasets.run_validation(ds.id)
        job = jobs.create_job(me, ds.id, preset_id="conservative", workers=2, submit=False,
                              base_model=str(model), overrides=FAST)
        gateway = get_gateway()
        sub = gateway.submit("ray_jobs.train_lora", ["--job-id", job.id], kind="train",
                             object_id=job.id, extra_env={TEST_WORKER_RESOURCE_VAR: NODE_RESOURCE})
        state = gateway.wait(sub, timeout_s=900)
        logs = gateway.logs(sub)
        done = jobs.get_job(me, job.id)
        assert state == "SUCCEEDED" and done.status == "completed", (done.error_message,
                                                                      logs[-4000:])
        # the training workers ran on the second node, as nobody
        messages = [line.message for line in jobs.job_logs(me, job.id, limit=500)]
        assert any("uploaded once, by rank 0" in m for m in messages), messages
        workers = [a for a in _state(head.address, "actors")
                   if a.get("class_name") == "RayTrainWorker"]
        assert len(workers) == 2 and {a["node_id"] for a in workers} == {node_id}, workers
        store = get_object_store()
        prefixes = {"/".join(k.split("/")[:2]) + "/" for k in store.list("models/")}
        with session_scope() as s:
            rows = s.scalars(select(ModelArtifact)).all()
        assert len(rows) == 1 and prefixes == {rows[0].artifacts["prefix"]}, prefixes
        assert {k.rsplit("/", 1)[1] for k in store.list(rows[0].artifacts["prefix"])} >= {
            "adapter_model.safetensors", "adapter_config.json"}
        print("TWO-NODE prefixes", sorted(prefixes), "model rows", len(rows))
    finally:
        if node is not None:
            _stop_group(node)
        stop_head(head)
        shutil.rmtree(head_tmp, ignore_errors=True)
        shutil.rmtree(base, ignore_errors=True)
