"""The local Ray head: start it (own process group, free ports, every port bound to 127.0.0.1, token
auth disabled only because nothing is reachable from the network), find it again, and stop it by
process id — never by name, so other Ray processes on the machine are left alone. Used by
backend.cluster.gateway and the test fixtures.

Loopback only: ``--node-ip-address 127.0.0.1`` alone is not enough — ``ray start`` replaces a
loopback node address by the machine's external one (``resolve_ip_for_localhost``) unless
``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`` (:data:`LOOPBACK_ENV`), and Ray's gRPC servers (GCS, raylet,
object manager, workers), the dashboard agent, the runtime-env agent, the metrics exporter and the
Ray Client proxy bind to 127.0.0.1 only when the node address really is 127.0.0.1."""
from __future__ import annotations

import fcntl
import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import requests

from backend.core.errors import RayError

HEAD_START_TIMEOUT_S = 90.0
# Keeps the node address 127.0.0.1 (no multi-node cluster: other machines cannot join this head).
LOOPBACK_ENV = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}


def auth_headers() -> dict[str, str]:
    """Authorization header for a cluster with token auth (RAY_AUTH_TOKEN), else nothing."""
    from backend.core.config import get_settings

    token = get_settings().ray_auth_token
    return {"Authorization": f"Bearer {token}"} if token else {}
MAX_TEMP_DIR_LEN = 40  # Ray puts unix sockets under TEMP/session_<date>_<pid>/sockets (limit ~107)


def free_ports(count: int, exclude: set[int] | frozenset[int] = frozenset()) -> list[int]:
    """``count`` distinct TCP ports that are free right now (bound together, then released)."""
    with ExitStack() as stack:
        ports: list[int] = []
        while len(ports) < count:
            sock = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            sock.bind(("127.0.0.1", 0))
            if sock.getsockname()[1] not in exclude:
                ports.append(sock.getsockname()[1])
        return ports


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    """True if ``host:port`` cannot be bound (something listens there)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return True
    return False


def short_temp_dir(home: Path) -> Path:
    """Ray's temp dir for a home: ``$HOME/ray/t`` when short enough, else ``/tmp/brt-ray-<hash>``."""
    candidate = home / "ray" / "t"
    if len(str(candidate)) <= MAX_TEMP_DIR_LEN:
        return candidate
    digest = hashlib.sha1(str(home).encode()).hexdigest()[:10]
    base = Path("/tmp") if Path("/tmp").is_dir() else Path(os.path.realpath(os.sep))
    return base / f"brt-ray-{digest}"


def dashboard_answers(address: str, timeout_s: float = 2.0) -> bool:
    """True if the Job API at ``address`` answers ``/api/version`` and ``/api/jobs/``."""
    try:
        for path in ("/api/version", "/api/jobs/"):
            resp = requests.get(address + path, headers=auth_headers(), timeout=timeout_s)
            if resp.status_code != 200:
                return False
    except requests.RequestException:
        return False
    return True


# ----- local head processes -----------------------------------------------------------------------
@dataclass(frozen=True)
class HeadProcess:
    """A ``ray start --head --block`` process we started (leader of its own process group)."""

    pid: int
    address: str  # dashboard / Job API, http://127.0.0.1:PORT
    temp_dir: str
    dashboard_port: int
    log_path: str

    def alive(self) -> bool:
        """True while the recorded pid runs and is still this head (not a reused pid)."""
        if not _pid_alive(self.pid):
            return False
        try:
            cmdline = Path(f"/proc/{self.pid}/cmdline").read_bytes().replace(b"\0", b" ")
        except OSError:
            return True  # no /proc (macOS): trust the pid
        return b"ray" in cmdline and self.temp_dir.encode() in cmdline


_children: dict[int, subprocess.Popen] = {}  # heads this process started (reaped via poll)


def _pid_alive(pid: int) -> bool:
    if pid in _children:
        return _children[pid].poll() is None
    try:
        os.kill(pid, 0)
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0]
    except ProcessLookupError:
        return False
    except (OSError, IndexError):  # PermissionError, or no /proc: it exists
        return True
    return state != "Z"


def _group_alive(pgid: int) -> bool:
    _pid_alive(pgid)  # reaps our own leader
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _head_command(temp_dir: Path, dashboard_port: int, num_cpus: int | None,
                  object_store_memory: int | None) -> list[str]:
    ray_exe = Path(sys.executable).with_name("ray")
    if not ray_exe.exists():
        raise RayError(f"the ray command is missing next to {sys.executable}; "
                       "install the requirements (pip install -r requirements.txt)")
    gcs, node_mgr, obj_mgr, client, metrics, agent_http, agent_grpc, rt_env = free_ports(
        8, exclude={dashboard_port})
    cmd = [str(ray_exe), "start", "--head", "--block", "--disable-usage-stats",
           "--temp-dir", str(temp_dir), "--node-ip-address", "127.0.0.1",
           "--include-dashboard", "true", "--dashboard-host", "127.0.0.1",
           "--dashboard-port", str(dashboard_port), "--port", str(gcs),
           "--node-manager-port", str(node_mgr), "--object-manager-port", str(obj_mgr),
           "--ray-client-server-port", str(client), "--metrics-export-port", str(metrics),
           "--dashboard-agent-listen-port", str(agent_http),
           "--dashboard-agent-grpc-port", str(agent_grpc), "--runtime-env-agent-port", str(rt_env),
           "--min-worker-port", "0", "--max-worker-port", "0"]  # 0/0: workers take any free port
    if num_cpus is not None:
        cmd += ["--num-cpus", str(num_cpus)]
    if object_store_memory:
        cmd += ["--object-store-memory", str(object_store_memory)]
    return cmd


def start_head(temp_dir: Path, dashboard_port: int, *, num_cpus: int | None = None,
               log_path: Path | None = None, object_store_memory: int | None = None,
               timeout_s: float = HEAD_START_TIMEOUT_S, loopback_only: bool = True) -> HeadProcess:
    """Start a local Ray head (every port on 127.0.0.1, token auth disabled, free ports) and wait
    until its Job API answers. ``loopback_only=False`` (tests that join a second node) lets Ray
    bind its cluster ports to the machine's address; token auth is then left to the environment's
    ``RAY_AUTH_MODE`` (Ray's default: on).

    Raises RayError when the dashboard port is taken, the ``ray`` command is missing, or the head
    exits or does not answer within ``timeout_s`` (a half-started head is stopped)."""
    if port_in_use(dashboard_port):
        raise RayError(f"port {dashboard_port} for the local Ray dashboard is already used by "
                       "another program", hint="set BRIGHTRUN_RAY_DASHBOARD_PORT to a free port, "
                                               "or RAY_ADDRESS to a running Ray dashboard")
    temp_dir.mkdir(parents=True, exist_ok=True)
    log = Path(log_path or temp_dir / "head.log")
    log.parent.mkdir(parents=True, exist_ok=True)
    cmd = _head_command(temp_dir, dashboard_port, num_cpus, object_store_memory)
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("BRIGHTRUN_") and k not in ("RAY_ADDRESS", "RAY_API_SERVER_ADDRESS")}
    env.update(RAY_USAGE_STATS_ENABLED="0",
               RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S="0")  # no Serve to drain: stop fast
    if loopback_only:  # nothing listens beyond this machine, so no token is needed
        env.update(LOOPBACK_ENV, RAY_AUTH_MODE="disabled")
    # processes the head starts (Ray Train's helper actors call ray.init) join this cluster, not
    # "auto" — which fails with "multiple active Ray instances" when several heads share a machine
    env["RAY_ADDRESS"] = f"127.0.0.1:{cmd[cmd.index('--port') + 1]}"
    with open(log, "ab") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, env=env, cwd=str(temp_dir),
                                start_new_session=True)
    _children[proc.pid] = proc
    head = HeadProcess(pid=proc.pid, address=f"http://127.0.0.1:{dashboard_port}",
                       temp_dir=str(temp_dir), dashboard_port=dashboard_port, log_path=str(log))
    deadline = time.monotonic() + timeout_s
    while not dashboard_answers(head.address, timeout_s=2.0):
        if proc.poll() is not None or time.monotonic() > deadline:
            why = (f"exited with status {proc.returncode}" if proc.returncode is not None
                   else f"did not answer within {timeout_s:g}s")
            stop_head(head)
            with suppress(ProcessLookupError, PermissionError):  # a crashed leader's leftovers
                os.killpg(proc.pid, signal.SIGKILL)
            tail = "".join(log.read_text(errors="replace").splitlines(True)[-15:])
            raise RayError(f"local Ray head {why}; log {log}:\n{tail}")
        time.sleep(0.5)
    return head


def stop_head(head: HeadProcess, timeout_s: float = 20.0) -> bool:
    """Stop a head we started: SIGTERM to the ``ray start`` leader (it shuts its processes down),
    then SIGKILL to its process group (ours: started with a new session) for what is left.

    Returns False when it was not running. Never signals a pid that is not this head. Raises
    nothing."""
    if not head.alive():
        return False
    try:
        own_group = os.getpgid(head.pid) == head.pid
        os.kill(head.pid, signal.SIGTERM)
    except ProcessLookupError:
        return True  # it ended just now
    _wait_gone(lambda: _pid_alive(head.pid), timeout_s)
    alive = (lambda: _group_alive(head.pid)) if own_group else (lambda: _pid_alive(head.pid))
    _wait_gone(alive, 3.0)  # stragglers get a moment, then SIGKILL
    with suppress(ProcessLookupError, PermissionError):
        os.killpg(head.pid, signal.SIGKILL) if own_group else os.kill(head.pid, signal.SIGKILL)
    _wait_gone(alive, 5.0)
    _children.pop(head.pid, None)
    return True


def _wait_gone(alive: Callable[[], bool], wait_s: float) -> None:
    deadline = time.monotonic() + wait_s
    while alive() and time.monotonic() < deadline:
        time.sleep(0.2)


@contextmanager
def file_lock(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def read_head_record(path: Path) -> HeadProcess | None:
    try:
        return HeadProcess(**json.loads(path.read_text()))
    except (OSError, ValueError, TypeError):
        return None


# ----- the gateway --------------------------------------------------------------------------------
