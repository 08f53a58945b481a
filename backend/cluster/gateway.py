"""Ray gateway: the only code that talks to Ray's Job API (see docs/ray.md).

``RAY_ADDRESS`` set: the dashboard HTTP address of a cluster (``http://HOST:8265``). Unset: a local
head is started on demand (``ray start --head --block``, own process group, free ports, every port
on 127.0.0.1, token auth disabled, dashboard on 127.0.0.1:``BRIGHTRUN_RAY_DASHBOARD_PORT``),
recorded in ``$BRIGHTRUN_HOME/ray/head.json`` and reused while alive. ``RAY_AUTH_TOKEN``: token for
a cluster with token authentication.

Secrets never travel in a job's runtime environment (which the Ray dashboard shows to anyone who
can reach it, ``GET /api/jobs/``): a job on this machine gets ``BRIGHTRUN_SECRETS_FILE``, the path
of a file only this user can read (:func:`write_secrets_file`); a remote cluster's nodes carry the
secret settings in their own environment (docs/operations.md, "Secrets").
"""
from __future__ import annotations

import json
import os
import re
import secrets
import shlex
import sys
import threading
import time
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import requests

from backend import ROOT
from backend.cluster.head import (  # noqa: F401
    HEAD_START_TIMEOUT_S,
    HeadProcess,
    auth_headers,
    dashboard_answers,
    file_lock,
    free_ports,
    port_in_use,
    read_head_record,
    short_temp_dir,
    start_head,
    stop_head,
)
from backend.core.config import ENV_VARS, Settings, get_settings
from backend.core.errors import ConfigError, InvalidInput, NotFound, RayError

JOB_STATUSES = ("PENDING", "RUNNING", "SUCCEEDED", "FAILED", "STOPPED")
TERMINAL_STATUSES = frozenset({"SUCCEEDED", "FAILED", "STOPPED"})
MISSING = "MISSING"  # Ray does not know the submission id (job vanished, cluster restarted)
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
REMOTE_EXCLUDES = [".venv", ".git", "tests", "bench", "*.db", "node_modules", "__pycache__",
                   ".pytest_cache"]
SUBMIT_AGENT_WAIT_S = 90.0  # how long submit retries while the head's job agent is not up yet
_MODULE_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")


# ----- small helpers ------------------------------------------------------------------------------
def ray_auth_token() -> str | None:
    """The token for a Ray cluster with token authentication (``RAY_AUTH_TOKEN``), or None."""
    return get_settings().ray_auth_token


def _auth_headers() -> dict[str, str]:
    return auth_headers()


def parse_dashboard_address(address: str) -> tuple[str, str]:
    """``(url, host)`` of a Job API address such as ``http://ray-head:8265``.

    Raises ConfigError for a Ray Client (``ray://``) or GCS (``host:6379``) address."""
    url = address.strip().rstrip("/")
    parsed = urlparse(url)
    if parsed.scheme == "ray":
        raise ConfigError(f"RAY_ADDRESS={address!r} is a Ray Client address; the Job API needs the "
                          "dashboard's HTTP address, e.g. RAY_ADDRESS=http://HEAD_HOST:8265")
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise ConfigError(f"RAY_ADDRESS={address!r} is not a Ray dashboard address; the Job API "
                          "needs it as http://HEAD_HOST:8265")
    return url, parsed.hostname


def is_loopback_host(host: str) -> bool:
    """True for 127.x.x.x, localhost and ::1 (a cluster on this machine)."""
    return host.lower() in LOOPBACK_HOSTS or host.startswith("127.")


def make_submission_id(kind: str, object_id: str, now: datetime | None = None) -> str:
    """``brightrun-{kind}-{object_id[:8]}-{YYYYmmdd-HHMMSS UTC}-{4 hex}``.

    Raises InvalidInput when ``kind`` has no letters or digits."""
    kind_slug = re.sub(r"[^a-z0-9-]+", "", kind.lower()).strip("-")
    if not kind_slug:
        raise InvalidInput(f"job kind {kind!r} must contain letters or digits")
    obj = re.sub(r"[^A-Za-z0-9]+", "", object_id)[:8] or "none"
    stamp = (now or datetime.now(timezone.utc)).strftime("%Y%m%d-%H%M%S")
    return f"brightrun-{kind_slug}-{obj}-{stamp}-{secrets.token_hex(2)}"


def secrets_file_path(settings: Settings) -> Path:
    """Where the secret settings for local Ray jobs are written: ``$BRIGHTRUN_HOME/secrets``."""
    return settings.home / "secrets" / "ray-jobs.json"


def write_secrets_file(settings: Settings) -> Path | None:
    """Write :meth:`Settings.job_secrets` to :func:`secrets_file_path` (folder 0700, file 0600,
    replaced atomically); None (and no file) when there is no secret. Raises OSError."""
    secrets_ = settings.job_secrets()
    path = secrets_file_path(settings)
    if not secrets_:
        return None
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(path.parent, 0o700)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as out:
            json.dump(secrets_, out)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def job_spec(settings: Settings, module: str, args: list[str], *, remote: bool,
             extra_env: dict[str, str] | None = None,
             secrets_file: Path | None = None) -> tuple[str, dict[str, Any]]:
    """``(entrypoint, runtime_env)`` for ``python -m module args``. Local: this interpreter,
    PYTHONPATH=repo, auth disabled, ``BRIGHTRUN_SECRETS_FILE=secrets_file``. Remote: ``python`` of
    the cluster image, the repo shipped as ``working_dir``, secrets from the nodes' environment.
    env_vars: the settings (not RAY_ADDRESS, no secret) + ``extra_env``.

    Raises InvalidInput for a bad module name."""
    if not _MODULE_RE.match(module):
        raise InvalidInput(f"{module!r} is not a Python module name")
    python = "python" if remote else shlex.quote(sys.executable)
    entrypoint = f"{python} -m {module} {shlex.join(args)}".rstrip()
    env = settings.env()
    env.pop("RAY_ADDRESS", None)  # Ray points the job's driver at its own cluster
    env.pop(ENV_VARS["secrets_file"], None)
    for var in settings.job_secrets():
        env.pop(var, None)  # shown by the Ray dashboard: the job reads them from elsewhere
    if not remote:
        env["PYTHONPATH"] = str(ROOT)
        if not ray_auth_token():
            env["RAY_AUTH_MODE"] = "disabled"
        if secrets_file is not None:
            env[ENV_VARS["secrets_file"]] = str(secrets_file)
    env.update({str(k): str(v) for k, v in (extra_env or {}).items()})
    runtime_env: dict[str, Any] = {"env_vars": env}
    if remote:  # ship the code; packages come from the cluster's image
        runtime_env.update(working_dir=str(ROOT), excludes=list(REMOTE_EXCLUDES))
    return entrypoint, runtime_env


class RayGateway:
    """Submit, query, stop and read logs of Ray jobs for one :class:`Settings`."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self._client_obj: Any = None
        self._client_address: str | None = None

    # --- where jobs go ---
    @property
    def ray_dir(self) -> Path:
        return self.settings.home / "ray"

    @property
    def is_remote(self) -> bool:
        """True when RAY_ADDRESS names a cluster on another machine. Raises ConfigError (bad
        RAY_ADDRESS)."""
        if not self.settings.ray_address:
            return False
        return not is_loopback_host(parse_dashboard_address(self.settings.ray_address)[1])

    @property
    def address(self) -> str:
        """The Job API address; starts the local head when RAY_ADDRESS is unset. Raises
        ConfigError (bad RAY_ADDRESS) or RayError (local head cannot start)."""
        if self.settings.ray_address:
            return parse_dashboard_address(self.settings.ray_address)[0]
        return self.ensure_local_head().address

    def check_compatible(self) -> None:
        """Refuse a remote cluster with stores only this machine can reach.

        Raises ConfigError naming what to configure (no network is touched)."""
        if not self.is_remote:
            return
        wrong, fixes = [], []
        if self.settings.db_is_local:
            wrong.append(f"the database is SQLite ({self.settings.database_url})")
            fixes.append("BRIGHTRUN_DATABASE_URL=postgresql+psycopg://USER:PASS@HOST:5432/DB")
        if self.settings.storage_is_local:
            wrong.append(f"the object store is a local folder ({self.settings.storage_url})")
            fixes.append("BRIGHTRUN_STORAGE_URL=s3://BUCKET with "
                         "BRIGHTRUN_S3_ENDPOINT=http://HOST:9000")
        if wrong:
            raise ConfigError(
                f"RAY_ADDRESS={self.settings.ray_address} is a remote Ray cluster, but "
                f"{' and '.join(wrong)}: its workers cannot reach them. Set {'; '.join(fixes)} "
                "(see docs/ray.md), or unset RAY_ADDRESS to run on a local Ray head.")

    # --- local head ---
    def ensure_local_head(self) -> HeadProcess:
        """Reuse the head recorded in ``$BRIGHTRUN_HOME/ray/head.json`` if alive and answering,
        else start one. Raises ConfigError when RAY_ADDRESS is set, RayError when the head cannot
        start (e.g. BRIGHTRUN_RAY_DASHBOARD_PORT taken by another program)."""
        if self.settings.ray_address:
            raise ConfigError(f"RAY_ADDRESS={self.settings.ray_address} is set; no local Ray head "
                              "is started (unset RAY_ADDRESS to use one)")
        record = self.ray_dir / "head.json"
        with file_lock(self.ray_dir / "head.lock"):
            head = read_head_record(record)
            if head is not None and head.alive():  # never kill a live head: it may run jobs
                deadline = time.monotonic() + HEAD_START_TIMEOUT_S
                while not dashboard_answers(head.address, timeout_s=5.0):
                    if time.monotonic() > deadline:
                        raise RayError(f"the local Ray head (pid {head.pid}) runs but its "
                                       f"dashboard at {head.address} does not answer",
                                       hint=f"see {head.log_path}; stop it with stop_local_head()")
                    time.sleep(1.0)
                return head
            record.unlink(missing_ok=True)
            head = start_head(short_temp_dir(self.settings.home), self.settings.ray_dashboard_port,
                              log_path=self.ray_dir / "head.log")
            record.write_text(json.dumps(asdict(head), indent=2))
            return head

    def stop_local_head(self) -> bool:
        """Stop the recorded local head and forget it; False when none was running. Raises
        nothing."""
        self._client_obj = None
        with file_lock(self.ray_dir / "head.lock"):
            head = read_head_record(self.ray_dir / "head.json")
            stopped = stop_head(head) if head is not None else False
            (self.ray_dir / "head.json").unlink(missing_ok=True)
            return stopped

    def _live_local_head(self) -> HeadProcess | None:
        head = read_head_record(self.ray_dir / "head.json")
        return head if head is not None and head.alive() else None

    # --- the Job API client ---
    def _client(self, start: bool = True) -> Any:
        """The JobSubmissionClient; None when ``start`` is False and no local head runs."""
        if self.settings.ray_address:
            address = self.address
        elif start:
            address = self.ensure_local_head().address
        else:
            head = self._live_local_head()
            if head is None:
                return None
            address = head.address
        if self._client_obj is None or self._client_address != address:
            from ray.job_submission import JobSubmissionClient

            try:
                self._client_obj = JobSubmissionClient(address, headers=_auth_headers() or None)
            except Exception as exc:  # noqa: BLE001 - every failure becomes a RayError
                raise self._translate(exc, address) from None
            self._client_address = address
        return self._client_obj

    def _translate(self, exc: Exception, address: str | None = None) -> RayError:
        where = address or self._client_address or "?"
        configured = self.settings.ray_address or "unset (local head)"
        if type(exc).__name__ == "AuthenticationError":
            return RayError(f"Ray dashboard at {where} requires authentication",
                            hint="set RAY_AUTH_TOKEN to the cluster's token (`ray get-auth-token`)")
        if isinstance(exc, (ConnectionError, requests.ConnectionError, requests.Timeout)):
            return RayError(f"Ray dashboard at {where} is not reachable; is the cluster up? "
                            f"RAY_ADDRESS={configured}", code="ray_unreachable")
        return RayError(f"Ray Job API at {where} failed: {exc}")

    def _call(self, method: str, *args: Any, start: bool = False, **kwargs: Any) -> Any:
        """Call a client method; returns ``_MISSING_JOB`` when Ray does not know the job (or the
        local head is gone)."""
        client = self._client(start=start)
        if client is None:
            return _MISSING_JOB
        try:
            return getattr(client, method)(*args, **kwargs)
        except Exception as exc:  # noqa: BLE001
            if isinstance(exc, RuntimeError) and "status code 404" in str(exc):
                return _MISSING_JOB
            error = self._translate(exc)
            if error.code == "ray_unreachable" and not self.settings.ray_address:
                self._client_obj = None
                if self._live_local_head() is None:
                    return _MISSING_JOB
            raise error from None

    # --- jobs ---
    def submit(self, module: str, args: list[str], *, kind: str, object_id: str,
               entrypoint_num_cpus: float = 0, extra_env: dict[str, str] | None = None,
               metadata: dict[str, str] | None = None) -> str:
        """Run ``python -m module args`` as a Ray job; returns its readable submission id.

        Raises ConfigError (bad RAY_ADDRESS, remote cluster with local stores), InvalidInput (bad
        module or kind), RayError (cluster unreachable or refuses the job)."""
        self.check_compatible()
        remote = self.is_remote
        try:
            secrets_file = None if remote else write_secrets_file(self.settings)
        except OSError as exc:
            raise ConfigError(f"cannot write the secrets file for Ray jobs under "
                              f"{self.settings.home}: {exc}") from None
        entrypoint, runtime_env = job_spec(self.settings, module, args, remote=remote,
                                           extra_env=extra_env, secrets_file=secrets_file)
        submission_id = make_submission_id(kind, object_id)
        meta = {"brightrun_kind": kind, "brightrun_object_id": str(object_id)}
        meta.update({str(k): str(v) for k, v in (metadata or {}).items()})
        client = self._client(start=True)
        deadline = time.monotonic() + SUBMIT_AGENT_WAIT_S
        while True:
            try:
                return client.submit_job(entrypoint=entrypoint, submission_id=submission_id,
                                         runtime_env=runtime_env, metadata=meta,
                                         entrypoint_num_cpus=entrypoint_num_cpus)
            except Exception as exc:  # noqa: BLE001
                # a fresh or busy head answers 500 until its job agent has registered
                if "No available agent" not in str(exc) or time.monotonic() > deadline:
                    raise self._translate(exc) from None
            time.sleep(1.0)

    def info(self, submission_id: str) -> dict[str, Any]:
        """``status`` (PENDING/RUNNING/SUCCEEDED/FAILED/STOPPED or MISSING), ``message``,
        ``start_time``/``end_time`` (epoch seconds or None), ``entrypoint``, ``metadata``.

        Raises ConfigError (bad RAY_ADDRESS), RayError (cluster unreachable)."""
        details = self._call("get_job_info", submission_id)
        if details is _MISSING_JOB:
            return {"submission_id": submission_id, "status": MISSING,
                    "message": "Ray does not know this job (the cluster may have restarted)",
                    "start_time": None, "end_time": None, "entrypoint": None, "metadata": {}}
        return _details_dict(details)

    def status(self, submission_id: str) -> str:
        """One of JOB_STATUSES, or MISSING. Raises ConfigError, RayError (cluster unreachable)."""
        return self.info(submission_id)["status"]

    def stop(self, submission_id: str) -> bool:
        """Ask Ray to stop the job; True if it was running. Raises ConfigError, RayError."""
        result = self._call("stop_job", submission_id)
        return False if result is _MISSING_JOB else bool(result)

    def logs(self, submission_id: str, tail_lines: int | None = None) -> str:
        """The job's stdout/stderr (last ``tail_lines`` lines if given).

        Raises NotFound (Ray does not know the job), ConfigError, RayError."""
        text = self._call("get_job_logs", submission_id)
        if text is _MISSING_JOB:
            raise NotFound(f"Ray has no job {submission_id} (the cluster may have restarted)")
        if tail_lines is not None:
            text = "".join(text.splitlines(True)[-tail_lines:]) if tail_lines > 0 else ""
        return text

    def wait(self, submission_id: str, timeout_s: float, poll_s: float = 0.5) -> str:
        """Poll until the job is terminal (or MISSING) and return that status.

        Raises RayError (code ray_timeout) after ``timeout_s``; ConfigError, RayError."""
        deadline = time.monotonic() + timeout_s
        while True:
            status = self.status(submission_id)
            if status in TERMINAL_STATUSES or status == MISSING:
                return status
            if time.monotonic() > deadline:
                raise RayError(f"Ray job {submission_id} is still {status} after {timeout_s:g}s",
                               code="ray_timeout")
            time.sleep(poll_s)

    def cluster_resources(self) -> dict[str, float] | None:
        """Total resources (``CPU``, ``GPU``, …) of the cluster's alive nodes, or None when not
        known (no local head running, cluster unreachable, no node registered yet). Never starts a
        head; raises nothing."""
        try:
            if self.settings.ray_address:
                address = parse_dashboard_address(self.settings.ray_address)[0]
            else:
                head = self._live_local_head()
                if head is None:
                    return None
                address = head.address
            resp = requests.get(f"{address}/api/v0/nodes", params={"detail": "1", "limit": "10000"},
                                headers=_auth_headers(), timeout=5)
            nodes = resp.json()["data"]["result"]["result"] if resp.status_code == 200 else []
        except (requests.RequestException, ValueError, KeyError, TypeError, ConfigError):
            return None
        totals: dict[str, float] = {}
        for node in nodes:
            if node.get("state") == "ALIVE":
                for name, amount in (node.get("resources_total") or {}).items():
                    totals[name] = totals.get(name, 0.0) + float(amount)
        return totals or None

    def list_jobs(self, prefix: str | None = "brightrun-") -> list[dict[str, Any]]:
        """Jobs Ray knows (submission ids starting with ``prefix``; None: all), as :meth:`info`
        dicts. Raises ConfigError, RayError."""
        jobs = self._call("list_jobs")
        if jobs is _MISSING_JOB:
            return []
        return [_details_dict(job) for job in jobs
                if job.submission_id and (prefix is None or job.submission_id.startswith(prefix))]


_MISSING_JOB = object()


def _details_dict(details: Any) -> dict[str, Any]:
    def seconds(ms: int | None) -> float | None:
        return ms / 1000.0 if ms else None

    status = getattr(details.status, "value", details.status)
    return {"submission_id": details.submission_id, "status": str(status),
            "message": details.message or "", "start_time": seconds(details.start_time),
            "end_time": seconds(details.end_time), "entrypoint": details.entrypoint,
            "metadata": dict(details.metadata or {})}


_gateway_lock = threading.Lock()
_gateway: RayGateway | None = None


def get_gateway() -> RayGateway:
    """The gateway for the current settings (cached until the settings change). Raises
    ConfigError (bad settings)."""
    global _gateway
    settings = get_settings()
    with _gateway_lock:
        if _gateway is None or _gateway.settings != settings:
            _gateway = RayGateway(settings)
        return _gateway
