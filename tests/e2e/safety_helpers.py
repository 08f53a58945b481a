"""Helpers for the safe-by-default tests: run the product the way a user does (``scripts/run``, as a
subprocess in its own session), and list what the processes it started listen on."""
from __future__ import annotations

import ipaddress
import json
import os
import signal
import subprocess
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import psutil
import requests

from backend.cluster.head import free_ports
from tests.fixtures.paths import REPO

START_TIMEOUT_S = 240


def is_loopback_ip(ip: str) -> bool:
    """127.x, ::1 and IPv4-mapped loopback (::ffff:127.0.0.1)."""
    addr = ipaddress.ip_address(ip.split("%", 1)[0])
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    return addr.is_loopback


def process_tree(*roots: int) -> list[psutil.Process]:
    """The root processes, their descendants, and every process in their sessions (the Ray head
    runs in its own session; processes it starts may be reparented)."""
    found: dict[int, psutil.Process] = {}
    for pid in roots:
        try:
            root = psutil.Process(pid)
            for proc in [root, *root.children(recursive=True)]:
                found[proc.pid] = proc
        except psutil.NoSuchProcess:
            continue
    sessions = set()
    for pid in roots:
        try:
            sessions.add(os.getsid(pid))
        except (ProcessLookupError, PermissionError):
            pass
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
    for proc in process_tree(*roots):
        try:
            name = proc.name()
            for conn in proc.net_connections(kind="inet"):
                if conn.status == psutil.CONN_LISTEN:
                    out.add((conn.laddr.ip, conn.laddr.port, name))
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            pass
    return out


def run_env(home: Path, **extra: str) -> dict[str, str]:
    """The environment a user starts scripts/run with: no BrightRun or Ray address settings."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("BRIGHTRUN_") and k not in ("RAY_ADDRESS", "RAY_AUTH_MODE")}
    env.update(BRIGHTRUN_HOME=str(home), BRIGHTRUN_SYSTEM_PACKAGES="0", **extra)
    return env


def make_home(tmp_path: Path, tiny_model_dir: Path) -> Path:
    home = tmp_path / "home"
    (home / "models").mkdir(parents=True)
    os.symlink(tiny_model_dir, home / "models" / tiny_model_dir.name)
    return home


@dataclass
class Product:
    proc: subprocess.Popen
    home: Path
    port: int
    ray_port: int
    log_path: Path
    head_pid: int = 0

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def reconcilers(self) -> list[psutil.Process]:
        return [p for p in process_tree(self.proc.pid)
                if "reconcile" in p.cmdline() and "--loop" in p.cmdline()]


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


@contextmanager
def scripts_run(tmp_path: Path, home: Path, **env: str) -> Iterator[Product]:
    """``scripts/run`` started as a user does, up (dashboard healthy, head recorded); stopped with
    Ctrl-C (SIGINT to its process group) at exit, which must stop the head and the reconciler."""
    port, ray_port = free_ports(2)
    log_path = tmp_path / "run.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(["bash", str(REPO / "scripts" / "run")], cwd=REPO,
                                env=run_env(home, BRIGHTRUN_PORT=str(port),
                                            BRIGHTRUN_RAY_DASHBOARD_PORT=str(ray_port), **env),
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    product = Product(proc, home, port, ray_port, log_path)
    started: list[int] = []
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            assert proc.poll() is None, product.output()[-3000:]
            assert time.monotonic() < deadline, product.output()[-3000:]
            try:
                if requests.get(f"http://127.0.0.1:{port}/_stcore/health", timeout=2).ok:
                    break
            except requests.RequestException:
                pass
            time.sleep(1)
        product.head_pid = json.loads((home / "ray" / "head.json").read_text())["pid"]
        started = [product.head_pid, *(p.pid for p in product.reconcilers())]
        yield product
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    deadline = time.monotonic() + 30
    for pid in started:
        while not _gone(pid) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert _gone(pid), f"scripts/run left pid {pid} running"
