"""Settings: the one place the environment is read.

Every setting has an environment variable and help text (``brightrun config`` prints them, the README
table is generated from the same fields). A bad value raises :class:`~backend.core.errors.ConfigError` naming
the variable.
"""
from __future__ import annotations

import ipaddress
import json
import os
import re
import sys
from functools import lru_cache
from pathlib import Path
from typing import Literal
from urllib.parse import urlparse

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from backend.core.errors import ConfigError

SUPPORTED_DB_SCHEMES = ("sqlite", "postgresql", "postgresql+psycopg")
SUPPORTED_STORAGE_SCHEMES = ("file", "s3")
TINY_MODEL_ID = "brightrun/tiny-llama"

# field name -> environment variable
ENV_VARS: dict[str, str] = {
    "home": "BRIGHTRUN_HOME",
    "database_url": "BRIGHTRUN_DATABASE_URL",
    "storage_url": "BRIGHTRUN_STORAGE_URL",
    "s3_endpoint": "BRIGHTRUN_S3_ENDPOINT",
    "s3_access_key": "BRIGHTRUN_S3_ACCESS_KEY",
    "s3_secret_key": "BRIGHTRUN_S3_SECRET_KEY",
    "s3_region": "BRIGHTRUN_S3_REGION",
    "s3_secure": "BRIGHTRUN_S3_SECURE",
    "s3_cert_check": "BRIGHTRUN_S3_CERT_CHECK",
    "ray_address": "RAY_ADDRESS",
    "ray_dashboard_port": "BRIGHTRUN_RAY_DASHBOARD_PORT",
    "ray_auth_token": "RAY_AUTH_TOKEN",
    "auth": "BRIGHTRUN_AUTH",
    "default_base_model": "BRIGHTRUN_DEFAULT_BASE_MODEL",
    "secret_key": "BRIGHTRUN_SECRET_KEY",
    "user": "BRIGHTRUN_USER",
    "password": "BRIGHTRUN_PASSWORD",
    "dashboard_address": "BRIGHTRUN_DASHBOARD_ADDRESS",
    "allow_network_without_auth": "BRIGHTRUN_ALLOW_NETWORK_WITHOUT_AUTH",
    "reconcile_interval_s": "BRIGHTRUN_RECONCILE_INTERVAL_S",
    "missing_resource_wait_s": "BRIGHTRUN_MISSING_RESOURCE_WAIT_S",
    "secrets_file": "BRIGHTRUN_SECRETS_FILE",
}
SECRET_FIELDS = {"s3_secret_key", "secret_key", "password", "ray_auth_token"}
BOOL_FIELDS = ("s3_secure", "s3_cert_check", "allow_network_without_auth")
SECONDS_FIELDS = ("reconcile_interval_s", "missing_resource_wait_s")


class Settings(BaseModel):
    """Effective settings of the product (frozen)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    home: Path = Field(description="Folder for the embedded database, local objects, the local Ray "
                                   "head and the tiny base model. Default ~/.brightrun.")
    database_url: str = Field(description="SQLAlchemy URL of the metadata database: sqlite:///PATH "
                                          "(default $BRIGHTRUN_HOME/brightrun.db) or "
                                          "postgresql+psycopg://USER:PASS@HOST:PORT/DB.")
    storage_url: str = Field(description="Object store for datasets, checkpoints and adapters: "
                                         "file:///PATH (default $BRIGHTRUN_HOME/objects) or s3://BUCKET "
                                         "(MinIO or any S3 server; see the BRIGHTRUN_S3_* settings).")
    s3_endpoint: str | None = Field(None, description="S3 endpoint for s3:// storage, e.g. "
                                                      "http://minio:9000 (scheme decides TLS).")
    s3_access_key: str | None = Field(None, description="S3 access key.")
    s3_secret_key: str | None = Field(None, description="S3 secret key (masked in `brightrun config`).")
    s3_region: str = Field("us-east-1", description="S3 region name used for signing.")
    s3_secure: bool | None = Field(None, description="Use TLS to reach the S3 endpoint; default: "
                                                     "from the endpoint's scheme (https → true).")
    s3_cert_check: bool = Field(True, description="Verify the S3 server's TLS certificate.")
    ray_address: str | None = Field(None, description="Ray cluster to run jobs on (e.g. "
                                                      "http://ray-head:8265). Unset: a local Ray head "
                                                      "is started on demand under $BRIGHTRUN_HOME/ray.")
    ray_dashboard_port: int = Field(8265, description="Dashboard (Job API) port of the local Ray head "
                                                      "started when RAY_ADDRESS is unset.")
    ray_auth_token: str | None = Field(None, description="Token for a Ray cluster with token "
                                                         "authentication (sent to its Job API); "
                                                         "unset for clusters with auth disabled.")
    auth: Literal["none", "password"] = Field("none", description="none: one local user, no login. "
                                                                 "password: users with passwords "
                                                                 "and roles (team mode).")
    default_base_model: str | None = Field(None, description="Base model preselected for new jobs: an "
                                                             "installed base model id, a Hugging Face "
                                                             "id or local path present on the machine. "
                                                             "Unset: smollm2-135m-instruct when "
                                                             "installed (`brightrun base-models "
                                                             "install`), else brightrun/tiny-llama "
                                                             "(built offline).")
    secret_key: str | None = Field(None, description="Secret used to sign local download links and "
                                                     "dashboard sessions; generated into "
                                                     "$BRIGHTRUN_HOME when unset.")
    user: str | None = Field(None, description="Password mode, CLI: e-mail of the user the command "
                                               "acts as (or pass --user).")
    password: str | None = Field(None, description="Password mode, CLI: that user's password "
                                                   "(asked for when unset and a terminal is attached).")
    dashboard_address: str = Field("127.0.0.1", description="Address `scripts/run` serves the "
                                   "dashboard on. Default 127.0.0.1: this machine only. Any other "
                                   "address (e.g. 0.0.0.0) needs BRIGHTRUN_AUTH=password, or "
                                   "BRIGHTRUN_ALLOW_NETWORK_WITHOUT_AUTH=true.")
    allow_network_without_auth: bool = Field(False, description="Serve the dashboard on a network "
                                             "address with BRIGHTRUN_AUTH=none (everyone who can "
                                             "reach it is the admin). Prints a warning at start.")
    reconcile_interval_s: float = Field(5.0, description="Seconds between two runs of the "
                                        "reconciler that `scripts/run` starts beside the dashboard "
                                        "(it fails jobs whose Ray job died).")
    missing_resource_wait_s: float = Field(120.0, description="Seconds a job may wait for resources "
                                           "the Ray cluster does not have at all (e.g. a GPU job on "
                                           "a CPU-only cluster) before the reconciler fails it with "
                                           "that reason; `jobs create` and Configure refuse such "
                                           "hardware up front when the cluster's resources are "
                                           "known. 0 turns both checks off (clusters that add nodes "
                                           "on demand).")
    secrets_file: Path | None = Field(None, description="JSON file with secret settings (database "
                                      "URL with password, S3 secret key, secret key, Ray token), "
                                      "read at start and taking precedence; the product writes "
                                      "one (mode 0600) under $BRIGHTRUN_HOME/secrets for the Ray "
                                      "jobs it submits, so no secret is in a job's metadata.")

    # ----- derived -------------------------------------------------------------------------------
    @property
    def db_is_local(self) -> bool:
        return self.database_url.startswith("sqlite")

    @property
    def storage_is_local(self) -> bool:
        return self.storage_url.startswith("file:")

    def env(self) -> dict[str, str]:
        """The settings as environment variables (handed to Ray jobs so they use the same stores)."""
        out: dict[str, str] = {}
        for name, var in ENV_VARS.items():
            value = getattr(self, name)
            if value is None or name in ("user", "password"):
                continue
            if isinstance(value, bool):
                value = "true" if value else "false"
            out[var] = str(value)
        return out

    def job_secrets(self) -> dict[str, str]:
        """The part of :meth:`env` that must not appear in a Ray job's metadata: the secret
        settings and a database URL with a password (docs/operations.md, "Secrets")."""
        env = self.env()
        out = {ENV_VARS[name]: env[ENV_VARS[name]] for name in sorted(SECRET_FIELDS)
               if ENV_VARS[name] in env}
        if urlparse(self.database_url).password:
            out[ENV_VARS["database_url"]] = self.database_url
        return out

    def describe(self) -> list[tuple[str, str, str]]:
        """(variable, value with secrets masked, help) for every setting."""
        rows = []
        for name, var in ENV_VARS.items():
            value = getattr(self, name)
            shown = "" if value is None else str(value)
            if name in SECRET_FIELDS and value:
                shown = "****"
            shown = mask_secrets(shown)
            rows.append((var, shown, Settings.model_fields[name].description or ""))
        return rows


# query parameters / key=value pairs whose value is a secret: the name contains one of these words
# (password, sslpassword, secret_key, X-Amz-Signature, ...) or one of its parts (split at _ . -)
# is one of _SECRET_PARTS (auth_token, api-key, key; but not max_tokens)
_SECRET_WORDS = ("password", "passwd", "secret", "signature", "credential")
_SECRET_PARTS = {"pwd", "token", "key", "apikey", "sig"}
_PARAM = re.compile(r"(?<![\w.-])([\w.-]+)=([^&;\s'\"]*)")
_URL = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)([^\s'\"<>]*)")


def mask_secrets(text: str) -> str:
    """``text`` with every secret it may hold replaced by ``****``: the password of any URL
    (``scheme://user:PASS@host``, any scheme, also refused ones) and the value of secret-looking
    parameters (``?password=…``, ``&token=…``, ``secret_key=…``). Raises nothing."""
    if not text:
        return text

    def url(m: re.Match) -> str:
        rest = m.group(2)
        at = rest.rfind("@")
        if at > 0 and ":" in rest[:at]:
            user = rest[:at].split(":", 1)[0]
            rest = f"{user}:****{rest[at:]}"
        return m.group(1) + rest

    text = _URL.sub(url, str(text))
    def param(m: re.Match) -> str:
        name = m.group(1).lower()
        if m.group(2) and (any(w in name for w in _SECRET_WORDS)
                           or _SECRET_PARTS.intersection(re.split(r"[_.-]", name))):
            return f"{m.group(1)}=****"
        return m.group(0)

    return _PARAM.sub(param, text)


def _parse_bool(var: str, raw: str) -> bool:
    low = raw.strip().lower()
    if low in ("1", "true", "yes", "on"):
        return True
    if low in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{var}={raw!r} is not a boolean; use true or false")


def _carries_own_secrets(env: dict[str, str]) -> bool:
    """True when ``env`` itself holds secret settings: a node of a multi-node cluster that carries
    them in its own environment (docs/operations.md, "Secrets"). Such a node may not see the
    head's secrets file; one that carries none still fails on an unreadable file."""
    return any(env.get(ENV_VARS[name]) for name in SECRET_FIELDS) or bool(
        urlparse(env.get(ENV_VARS["database_url"]) or "").password)


def read_secrets_file(path: str) -> dict[str, str]:
    """The ``{VARIABLE: value}`` of a secrets file. Raises ConfigError naming
    BRIGHTRUN_SECRETS_FILE when it is unreadable, not a JSON object of strings, or names a
    variable that is not a setting."""
    var = ENV_VARS["secrets_file"]
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{var}={path}: cannot read it ({type(exc).__name__}: {exc})") from None
    known = set(ENV_VARS.values())
    if not isinstance(data, dict) or not all(isinstance(k, str) and isinstance(v, str) and k in known
                                             for k, v in data.items()):
        raise ConfigError(f"{var}={path}: not a JSON object of settings (VARIABLE: text)")
    return data


def _parse_seconds(var: str, raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not 0 <= value < 10**7:
        raise ConfigError(f"{var}={raw!r} is not a number of seconds (0 or more)")
    return value


def load_settings(environ: dict[str, str] | None = None) -> Settings:
    """Read settings from ``environ`` (default ``os.environ``); the values in
    ``BRIGHTRUN_SECRETS_FILE`` (when set) take precedence.

    Raises ConfigError naming the variable for any bad value (unknown URL scheme, bad number, ...).
    """
    env = dict(os.environ if environ is None else environ)
    path = env.get(ENV_VARS["secrets_file"])
    if path and not (_carries_own_secrets(env) and not Path(path).exists()):
        env.update(read_secrets_file(path))
    home = Path(env.get("BRIGHTRUN_HOME") or "~/.brightrun").expanduser().resolve()
    values: dict[str, object] = {"home": home}
    values["database_url"] = env.get("BRIGHTRUN_DATABASE_URL") or f"sqlite:///{home / 'brightrun.db'}"
    values["storage_url"] = env.get("BRIGHTRUN_STORAGE_URL") or f"file://{home / 'objects'}"
    for name, var in ENV_VARS.items():
        if name in values or var not in env or env[var] == "":
            continue
        raw = env[var]
        if name in BOOL_FIELDS:
            values[name] = _parse_bool(var, raw)
        elif name in SECONDS_FIELDS:
            values[name] = _parse_seconds(var, raw)
        elif name == "ray_dashboard_port":
            if not raw.isdigit() or not 0 < int(raw) < 65536:
                raise ConfigError(f"{var}={raw!r} is not a port number (1-65535)")
            values[name] = int(raw)
        else:
            values[name] = raw
    _check_urls(values)
    try:
        return Settings(**values)
    except ValidationError as exc:
        err = exc.errors()[0]
        field = str(err["loc"][0]) if err.get("loc") else "?"
        var = ENV_VARS.get(field, field)
        raise ConfigError(f"{var}: {err['msg']}") from None


def _check_urls(values: dict[str, object]) -> None:
    db = str(values["database_url"])
    scheme = db.split(":", 1)[0]
    if "://" not in db or scheme not in SUPPORTED_DB_SCHEMES:
        raise ConfigError(f"BRIGHTRUN_DATABASE_URL={mask_secrets(repr(db))} has an unsupported "
                          f"scheme {scheme!r}; "
                          f"supported: sqlite:///PATH, postgresql+psycopg://USER:PASS@HOST/DB")
    st = str(values["storage_url"])
    sscheme = st.split(":", 1)[0]
    if "://" not in st or sscheme not in SUPPORTED_STORAGE_SCHEMES:
        raise ConfigError(f"BRIGHTRUN_STORAGE_URL={mask_secrets(repr(st))} has an unsupported "
                          f"scheme {sscheme!r}; "
                          f"supported: file:///PATH, s3://BUCKET")
    if sscheme == "s3":
        if not urlparse(st).netloc:
            raise ConfigError(f"BRIGHTRUN_STORAGE_URL={mask_secrets(repr(st))} names no bucket; "
                              "use s3://BUCKET")
        if not values.get("s3_endpoint"):
            raise ConfigError("BRIGHTRUN_S3_ENDPOINT is required when BRIGHTRUN_STORAGE_URL is s3://…")
    auth = values.get("auth")
    if auth is not None and auth not in ("none", "password"):
        raise ConfigError(f"BRIGHTRUN_AUTH={auth!r} is not one of: none, password")


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings (read once). Tests call :func:`reset_settings` after changing env."""
    return load_settings()


def reset_settings() -> None:
    get_settings.cache_clear()


# ----- where the dashboard listens ----------------------------------------------------------------
def is_loopback_address(address: str) -> bool:
    """True for localhost, 127.x.x.x and ::1 (this machine only)."""
    host = address.strip().strip("[]").lower()
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def dashboard_bind(address: str, auth: str, allow_without_auth: bool) -> tuple[str, str | None]:
    """``(address to serve on, warning or None)`` for the dashboard (pure; table-tested).

    Loopback: always allowed. A network address (0.0.0.0, ::, a host's IP or name): allowed in
    password mode, or with auth none only when ``allow_without_auth`` — then with a warning.
    Raises ConfigError (network address, auth none, no override) naming both ways out."""
    address = address.strip()
    if not address:
        raise ConfigError("BRIGHTRUN_DASHBOARD_ADDRESS is empty; use 127.0.0.1 (this machine only)")
    if is_loopback_address(address) or auth == "password":
        return address, None
    if allow_without_auth:
        return address, (f"WARNING: the dashboard is served on {address} without login "
                         "(BRIGHTRUN_AUTH=none): everyone who can reach this machine's port is "
                         "the admin and can read every dataset and model")
    raise ConfigError(f"BRIGHTRUN_DASHBOARD_ADDRESS={address} would serve the dashboard to the "
                      "network without login (BRIGHTRUN_AUTH=none: everyone would be the admin)",
                      hint="use BRIGHTRUN_AUTH=password (team mode), or keep 127.0.0.1, or accept "
                           "the risk with BRIGHTRUN_ALLOW_NETWORK_WITHOUT_AUTH=true")


def print_dashboard_address() -> int:
    """For ``scripts/run``: print the address to serve the dashboard on (stdout), a warning or the
    refusal (stderr). Returns the exit status: 0, or 2 when refused."""
    try:
        settings = get_settings()
        address, warning = dashboard_bind(settings.dashboard_address, settings.auth,
                                          settings.allow_network_without_auth)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if warning:
        print(warning, file=sys.stderr)
    print(address)
    return 0
