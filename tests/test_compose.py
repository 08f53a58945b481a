"""docker/: the compose file resolves with docker/.env.example and wires the product correctly.

Runs ``docker-compose -f docker/compose.yml --env-file docker/.env.example config`` (no Docker engine
needed) and checks the resolved YAML: the services, a healthcheck on each, the GPU worker, the
dashboard's settings (loaded with the product's own ``load_settings``), required secrets, and that
nothing in docker/ looks like a real secret. Skipped only when no compose client is installed
(CI installs Debian's docker-compose).
"""
from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest
import yaml

from backend.cluster.gateway import is_loopback_host, parse_dashboard_address
from backend.core.config import ENV_VARS, load_settings

ROOT = Path(__file__).resolve().parents[1]
DOCKER = ROOT / "docker"
COMPOSE = DOCKER / "compose.yml"
ENV_EXAMPLE = DOCKER / ".env.example"
OPERATIONS = ROOT / "docs" / "operations.md"

SERVICES = {"postgres", "minio", "minio-init", "ray-head", "ray-worker", "dashboard", "reconciler"}
RAY_WORKERS = ("ray-worker", "ray-worker-cpu")
PRODUCT_VARS = set(ENV_VARS.values()) | {"RAY_AUTH_MODE", "RAY_AUTH_TOKEN"}
# Variables compose.yml must refuse to start without (``${VAR:?…}``).
REQUIRED_SECRETS = ("POSTGRES_PASSWORD", "MINIO_ROOT_USER", "MINIO_ROOT_PASSWORD",
                    "BRIGHTRUN_DATABASE_URL", "BRIGHTRUN_S3_ACCESS_KEY", "BRIGHTRUN_S3_SECRET_KEY",
                    "BRIGHTRUN_SECRET_KEY")
SECRET_NAME = re.compile(r"(PASSWORD|SECRET|TOKEN)")
PLACEHOLDER = "change-me"


# ----- helpers ------------------------------------------------------------------------------------
def _compose_cmd() -> list[str] | None:
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    if shutil.which("docker"):
        probe = subprocess.run(["docker", "compose", "version"], capture_output=True, text=True)
        if probe.returncode == 0:
            return ["docker", "compose"]
    return None


def _run_config(env_file: Path) -> subprocess.CompletedProcess:
    cmd = _compose_cmd()
    if cmd is None:
        pytest.skip("no compose client: install docker-compose (Debian package `docker-compose`) "
                    "or the docker compose plugin to check docker/compose.yml")
    # A clean environment: variables in the shell would override the env file's values.
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(ROOT)}
    return subprocess.run([*cmd, "-f", str(COMPOSE), "--env-file", str(env_file),
                           "--profile", "cpu", "config"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)


def _env_file_values(path: Path) -> dict[str, str]:
    values = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        assert sep, f"{path.name}: line without '=': {line!r}"
        values[key.strip()] = value.strip()
    return values


def _environment(service: dict) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):  # KEY=VALUE list form
        env = dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {k: "" if v is None else str(v) for k, v in env.items()}


def _command(service: dict) -> str:
    cmd = service.get("command") or ""
    return " ".join(cmd) if isinstance(cmd, list) else str(cmd)


def _healthcheck_text(service: dict) -> str:
    test = (service.get("healthcheck") or {}).get("test") or ""
    return " ".join(test) if isinstance(test, list) else str(test)


def _looks_random(token: str) -> bool:
    """A run of 20+ base64/hex characters mixing letters and digits: a key, not a word or path."""
    return bool(re.search(r"\d", token) and re.search(r"[A-Za-z]", token))


@pytest.fixture(scope="module")
def config() -> dict:
    proc = _run_config(ENV_EXAMPLE)
    assert proc.returncode == 0, f"compose config failed:\n{proc.stderr}"
    return yaml.safe_load(proc.stdout)


@pytest.fixture(scope="module")
def services(config) -> dict[str, dict]:
    return config["services"]


# ----- the compose file ---------------------------------------------------------------------------
def test_all_services_exist(services):
    assert SERVICES <= set(services), f"missing: {SERVICES - set(services)}"


def test_every_service_has_a_healthcheck(services):
    for name, svc in services.items():
        hc = svc.get("healthcheck")
        assert hc and not hc.get("disable"), f"{name} has no healthcheck"
        text = _healthcheck_text(svc)
        assert text and text.upper() != "NONE", f"{name}: empty healthcheck test"


def test_ray_workers_are_scalable_and_the_gpu_worker_reserves_a_gpu(services):
    for name in RAY_WORKERS:
        svc = services[name]
        assert "container_name" not in svc, f"{name} must be scalable (no container_name)"
        assert not svc.get("ports"), f"{name} must publish no host ports (--scale)"
        cmd = _command(svc)
        assert "ray start" in cmd and "--address ray-head:6379" in cmd and "--block" in cmd, cmd
    devices = services["ray-worker"]["deploy"]["resources"]["reservations"]["devices"]
    gpu = [d for d in devices if d.get("driver") == "nvidia" and "gpu" in d.get("capabilities", [])]
    assert gpu, devices
    assert str(gpu[0].get("count")) in {"1", "all", "-1"} or int(gpu[0]["count"]) >= 1


def test_ray_head_runs_no_work_and_serves_the_job_api(services):
    head = services["ray-head"]
    cmd = _command(head)
    for flag in ("ray start --head", "--block", "--num-cpus 0", "--dashboard-host 0.0.0.0",
                 "--port 6379", "--node-manager-port", "--object-manager-port",
                 "--min-worker-port", "--max-worker-port"):
        assert flag in cmd, f"ray-head command lacks {flag!r}: {cmd}"
    assert ":8265/api/version" in _healthcheck_text(head)
    assert head["build"]["dockerfile"].endswith("Dockerfile.ray")
    assert head["build"].get("args", {}).get("VARIANT") == "cpu"
    assert services["ray-worker"]["build"].get("args", {}).get("VARIANT") == "gpu"


def test_ray_auth_is_disabled_on_every_ray_node_by_default(services):
    for name in ("ray-head", *RAY_WORKERS, "dashboard", "reconciler"):
        assert _environment(services[name]).get("RAY_AUTH_MODE") == "disabled", name


def test_dashboard_runs_migrations_then_streamlit_in_password_mode(services):
    dash = services["dashboard"]
    cmd = _command(dash)
    assert cmd.index("brightrun db upgrade") < cmd.index("python -m app.serve"), cmd
    assert "--server.port 8501" in cmd and "--server.address 0.0.0.0" in cmd
    assert "/_stcore/health" in _healthcheck_text(dash)
    assert dash["build"]["dockerfile"].endswith("docker/Dockerfile")
    deps = dash["depends_on"]
    assert deps["postgres"]["condition"] == "service_healthy"
    assert deps["minio-init"]["condition"] == "service_completed_successfully"
    assert deps["ray-head"]["condition"] == "service_healthy"


def test_dashboard_settings_are_the_team_setup(services):
    env = _environment(services["dashboard"])
    assert env["BRIGHTRUN_AUTH"] == "password"
    db = urlparse(env["BRIGHTRUN_DATABASE_URL"])
    assert db.scheme == "postgresql+psycopg" and db.hostname == "postgres" and db.port == 5432
    assert env["BRIGHTRUN_STORAGE_URL"].startswith("s3://")
    assert env["BRIGHTRUN_S3_ENDPOINT"] and env["BRIGHTRUN_S3_ACCESS_KEY"]
    assert env["BRIGHTRUN_S3_SECRET_KEY"] and env["BRIGHTRUN_SECRET_KEY"]
    url, host = parse_dashboard_address(env["RAY_ADDRESS"])
    assert url == "http://ray-head:8265" and not is_loopback_host(host)
    # The product's own loader accepts them, and they are the shared stores a remote cluster needs.
    settings = load_settings(env)
    assert settings.auth == "password"
    assert not settings.db_is_local and not settings.storage_is_local
    assert str(settings.home) == "/var/lib/brightrun"


def test_product_containers_are_configured_only_through_product_settings(services):
    for name in ("dashboard", "reconciler"):
        extra = set(_environment(services[name])) - PRODUCT_VARS
        assert not extra, f"{name} gets non-product variables {extra}"
    assert _environment(services["dashboard"]) == _environment(services["reconciler"])


def test_database_url_matches_the_postgres_service(services):
    pg = _environment(services["postgres"])
    db = urlparse(_environment(services["dashboard"])["BRIGHTRUN_DATABASE_URL"])
    assert unquote(db.username or "") == pg["POSTGRES_USER"]
    assert unquote(db.password or "") == pg["POSTGRES_PASSWORD"]
    assert db.path.lstrip("/") == pg["POSTGRES_DB"]


def test_minio_init_creates_the_products_bucket_and_user(services):
    init = services["minio-init"]
    env = _environment(init)
    dash = _environment(services["dashboard"])
    for var in ("BRIGHTRUN_STORAGE_URL", "BRIGHTRUN_S3_ACCESS_KEY", "BRIGHTRUN_S3_SECRET_KEY"):
        assert env[var] == dash[var], var
    assert init["depends_on"]["minio"]["condition"] == "service_healthy"
    assert any("minio-init.sh" in str(v) for v in init.get("volumes", [])), init.get("volumes")
    assert init.get("restart", "no") == "no"


def test_s3_endpoint_host_resolves_on_the_compose_network(services):
    """Presigned links carry the endpoint's host: it must be MinIO's name (or alias) in compose."""
    endpoint = urlparse(_environment(services["dashboard"])["BRIGHTRUN_S3_ENDPOINT"])
    networks = services["minio"].get("networks") or {}
    aliases = {a for net in networks.values() if isinstance(net, dict) for a in net.get("aliases") or []}
    assert endpoint.hostname in {"minio"} | aliases, (endpoint.hostname, aliases)
    assert endpoint.port in (None, 9000)


def test_minio_init_script_is_valid_sh():
    script = DOCKER / "minio-init.sh"
    assert "mc mb --ignore-existing" in script.read_text()
    proc = subprocess.run([shutil.which("sh") or "/bin/sh", "-n", str(script)],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_brightrun_home_is_on_a_volume(config, services):
    named = set(config.get("volumes") or {})
    for name in ("dashboard", "ray-head", "ray-worker"):
        mounts = [str(v) if not isinstance(v, dict) else f"{v.get('source')}:{v.get('target')}"
                  for v in services[name].get("volumes", [])]
        assert any(m.startswith("brightrun-home:/var/lib/brightrun") for m in mounts), (name, mounts)
    assert {"pgdata", "minio-data", "brightrun-home", "hf-cache"} <= named


@pytest.mark.parametrize("var", REQUIRED_SECRETS)
def test_missing_secret_is_refused_with_a_message(tmp_path, var):
    lines = [ln for ln in ENV_EXAMPLE.read_text().splitlines() if not ln.startswith(f"{var}=")]
    env_file = tmp_path / "partial.env"
    env_file.write_text("\n".join(lines) + "\n")
    proc = _run_config(env_file)
    assert proc.returncode != 0
    assert f"set {var} in docker/.env" in proc.stderr + proc.stdout


# ----- .env.example and secrets -------------------------------------------------------------------
def test_env_example_defines_every_variable_compose_uses():
    used = set(re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*)", COMPOSE.read_text()))
    defined = set(_env_file_values(ENV_EXAMPLE))
    assert used <= defined, f"compose.yml uses variables docker/.env.example lacks: {used - defined}"


def test_every_setting_is_in_env_example_or_operations_doc():
    example = ENV_EXAMPLE.read_text()
    ops = OPERATIONS.read_text() if OPERATIONS.exists() else ""
    missing = [var for var in ENV_VARS.values() if var not in example and var not in ops]
    assert not missing, f"undocumented settings: {missing}"


def test_env_example_secrets_are_placeholders():
    values = _env_file_values(ENV_EXAMPLE)
    for key, value in values.items():
        if SECRET_NAME.search(key) and value:
            assert PLACEHOLDER in value, f"{key} must be a change-me placeholder"
    password = urlparse(values["BRIGHTRUN_DATABASE_URL"]).password or ""
    assert PLACEHOLDER in password and password == values["POSTGRES_PASSWORD"]


def test_placeholders_can_be_replaced_one_by_one(tmp_path):
    """The loop in .env.example / docs replaces each distinct change-me-… token of the non-comment
    lines with one random value (sed, in sorted order); afterwards no placeholder is left and the
    two spellings of the PostgreSQL password still agree."""
    text = ENV_EXAMPLE.read_text()
    settings_lines = "\n".join(ln for ln in text.splitlines() if not ln.startswith("#"))
    tokens = sorted(set(re.findall(r"change-me-[a-z0-9-]*[a-z0-9]", settings_lines)))
    assert len(tokens) >= 4, tokens
    for i, token in enumerate(tokens):
        assert not any(other != token and other.startswith(token) for other in tokens), token
        text = text.replace(token, f"{i:02d}" + "x" * 30)
    env_file = tmp_path / ".env"
    env_file.write_text(text)
    values = _env_file_values(env_file)
    assert not [k for k, v in values.items() if PLACEHOLDER in v]
    assert urlparse(values["BRIGHTRUN_DATABASE_URL"]).password == values["POSTGRES_PASSWORD"]


def test_resolved_config_holds_no_real_secret(services):
    for name, svc in services.items():
        for key, value in _environment(svc).items():
            if SECRET_NAME.search(key) and value:
                assert PLACEHOLDER in value, f"{name}: {key} is not a placeholder"


def test_nothing_in_docker_looks_like_a_real_secret():
    for path in sorted(p for p in DOCKER.rglob("*") if p.is_file()):
        if path.name == ".env":  # the operator's own file (must stay untracked)
            continue
        text = path.read_text(errors="replace")
        assert "BEGIN" not in text or "PRIVATE KEY" not in text, path
        assert not re.search(r"\bAKIA[0-9A-Z]{16}\b", text), path
        for match in re.finditer(r"[A-Za-z0-9+/]{20,}={0,2}", text):
            token = match.group()
            assert not _looks_random(token), f"{path.relative_to(ROOT)}: {token[:6]}… looks like a key"


# ----- images -------------------------------------------------------------------------------------
def test_dockerfiles_install_the_requirements():
    dash = (DOCKER / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.11-slim", dash, re.M)
    assert "requirements.txt" in dash and "pip install --no-deps -e ." in dash
    ray = (DOCKER / "Dockerfile.ray").read_text()
    assert "ARG VARIANT" in ray and "FROM base-${VARIANT}" in ray
    assert "rayproject/ray:${RAY_VERSION}-${PYTHON_TAG}-gpu" in ray
    assert "download.pytorch.org/whl/cu" in ray and "requirements" in ray
    version = re.search(r"^ray\[[^\]]*\]==([\d.]+)", (ROOT / "requirements.txt").read_text(), re.M)
    assert version and f"ARG RAY_VERSION={version.group(1)}" in ray, "Ray image != pinned ray"
