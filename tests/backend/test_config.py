"""Settings: defaults, every variable has help, bad values name their variable, secrets masked."""
import os
import subprocess
import sys

import pytest

from backend.core.config import ENV_VARS, Settings, load_settings
from backend.core.errors import ConfigError
from tests.fixtures.paths import REPO

ROOT = REPO


def test_defaults_are_embedded(tmp_path):
    s = load_settings({"BRIGHTRUN_HOME": str(tmp_path)})
    assert s.database_url == f"sqlite:///{tmp_path}/brightrun.db"
    assert s.storage_url == f"file://{tmp_path}/objects"
    assert s.ray_address is None and s.auth == "none"
    assert s.db_is_local and s.storage_is_local


def test_every_setting_has_help_and_is_in_readme():
    readme = (ROOT / "README.md").read_text()
    for name, var in ENV_VARS.items():
        assert Settings.model_fields[name].description, name
        assert f"`{var}`" in readme, var


@pytest.mark.parametrize("env,var", [
    ({"BRIGHTRUN_DATABASE_URL": "mysql://x/y"}, "BRIGHTRUN_DATABASE_URL"),
    ({"BRIGHTRUN_STORAGE_URL": "ftp://bucket"}, "BRIGHTRUN_STORAGE_URL"),
    ({"BRIGHTRUN_STORAGE_URL": "s3://bucket"}, "BRIGHTRUN_S3_ENDPOINT"),
    ({"BRIGHTRUN_STORAGE_URL": "s3://"}, "BRIGHTRUN_STORAGE_URL"),
    ({"BRIGHTRUN_AUTH": "ldap"}, "BRIGHTRUN_AUTH"),
    ({"BRIGHTRUN_S3_SECURE": "maybe"}, "BRIGHTRUN_S3_SECURE"),
    ({"BRIGHTRUN_RAY_DASHBOARD_PORT": "99999"}, "BRIGHTRUN_RAY_DASHBOARD_PORT"),
])
def test_bad_value_names_variable(tmp_path, env, var):
    with pytest.raises(ConfigError) as err:
        load_settings({"BRIGHTRUN_HOME": str(tmp_path), **env})
    assert var in str(err.value)


def test_secrets_masked_and_not_passed_to_jobs(tmp_path):
    s = load_settings({"BRIGHTRUN_HOME": str(tmp_path), "BRIGHTRUN_STORAGE_URL": "s3://b",
                       "BRIGHTRUN_S3_ENDPOINT": "http://h:9000", "BRIGHTRUN_S3_SECRET_KEY": "abc",
                       "BRIGHTRUN_DATABASE_URL": "postgresql+psycopg://u:pw@h/db",
                       "BRIGHTRUN_PASSWORD": "hunter22"})
    shown = {var: value for var, value, _ in s.describe()}
    assert shown["BRIGHTRUN_S3_SECRET_KEY"] == "****" and shown["BRIGHTRUN_PASSWORD"] == "****"
    assert "pw" not in shown["BRIGHTRUN_DATABASE_URL"]
    assert "BRIGHTRUN_PASSWORD" not in s.env() and s.env()["BRIGHTRUN_S3_SECRET_KEY"] == "abc"


def _cli(*args, **env):
    full = {k: v for k, v in os.environ.items() if not k.startswith(("BRIGHTRUN_", "RAY_ADDRESS"))}
    full.update(env)
    return subprocess.run([sys.executable, "-m", "backend.cli", *args], capture_output=True,
                          text=True, env=full, cwd=ROOT, timeout=120)


@pytest.mark.parametrize("env,needle", [
    ({"BRIGHTRUN_STORAGE_URL": "ftp://x"}, "BRIGHTRUN_STORAGE_URL"),
    ({"BRIGHTRUN_DATABASE_URL": "postgresql+psycopg://u:secret@127.0.0.1:1/x"},
     "Cannot reach the database"),
])
def test_cli_bad_settings_one_clear_line(tmp_path, env, needle):
    r = _cli("datasets", "list", BRIGHTRUN_HOME=str(tmp_path), **env)
    assert r.returncode == 1
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and needle in lines[0], r.stderr
    assert "Traceback" not in r.stderr and "secret" not in r.stderr


def test_cli_config_prints_masked(tmp_path):
    r = _cli("config", "--json", BRIGHTRUN_HOME=str(tmp_path), BRIGHTRUN_S3_SECRET_KEY="zzz")
    assert r.returncode == 0 and '"****"' in r.stdout and "zzz" not in r.stdout


@pytest.mark.parametrize("text,secret", [
    ("postgresql+psycopg://u:pw-1@h:5432/db", "pw-1"),
    ("postgres://u:pw-2@h/db", "pw-2"),
    ("mysql://root:pw-3@h/x", "pw-3"),
    ("postgresql://u@h/db?sslmode=require&password=pw-4", "pw-4"),
    ("postgresql://h/db?PASSWORD=pw-5", "pw-5"),
    ("s3://b?secret_key=pw-6&region=x", "pw-6"),
    ("http://h/?token=pw-7", "pw-7"),
    ("http://h/?auth_token=pw-11&api-key=pw-12", "pw-1"),
    ("https://h/o?X-Amz-Signature=pw-13", "pw-13"),
    ("error: 'postgres://:pw-8@h' refused", "pw-8"),
    ("postgresql://u:p@ss-9@h/db", "ss-9"),
    ("host=h user=u password=pw-10 dbname=x", "pw-10"),
])
def test_mask_secrets_every_url_shape(text, secret):
    from backend.core.config import mask_secrets

    masked = mask_secrets(text)
    assert secret not in masked and "****" in masked


@pytest.mark.parametrize("text", ["sqlite:////tmp/x.db", "file:///tmp/objects", "s3://bucket",
                                  "http://minio:9000", "postgresql://u@h/db?sslmode=require",
                                  "max_tokens=512 batch_size=8", "tokenizer_name=x"])
def test_mask_secrets_leaves_the_rest(text):
    from backend.core.config import mask_secrets

    assert mask_secrets(text) == text


def test_masked_in_describe_and_refused_url_errors(tmp_path):
    s = load_settings({"BRIGHTRUN_HOME": str(tmp_path),
                       "BRIGHTRUN_DATABASE_URL": "postgresql+psycopg://u@h/db?password=qq-secret"})
    shown = {var: value for var, value, _ in s.describe()}
    assert "qq-secret" not in shown["BRIGHTRUN_DATABASE_URL"]
    assert shown["BRIGHTRUN_DATABASE_URL"].startswith("postgresql+psycopg://u@h/db")
    for var, url in (("BRIGHTRUN_DATABASE_URL", "postgres://u:zz-secret@h/db"),
                     ("BRIGHTRUN_STORAGE_URL", "ftp://u:zz-secret@h/b")):
        with pytest.raises(ConfigError) as err:
            load_settings({"BRIGHTRUN_HOME": str(tmp_path), var: url})
        assert "zz-secret" not in str(err.value) and "****" in str(err.value)


@pytest.mark.parametrize("env", [
    {"BRIGHTRUN_DATABASE_URL": "postgres://u:zz-secret@h/db"},
    {"BRIGHTRUN_DATABASE_URL": "postgresql+psycopg://u@127.0.0.1:1/x?password=zz-secret"},
])
def test_cli_never_prints_a_database_password(tmp_path, env):
    for args in (("config",), ("config", "--json"), ("datasets", "list")):
        r = _cli(*args, BRIGHTRUN_HOME=str(tmp_path), **env)
        assert "zz-secret" not in r.stdout + r.stderr, (args, r.stdout, r.stderr)
        assert "Traceback" not in r.stderr


def test_a_node_carrying_its_own_secrets_may_not_see_the_heads_secrets_file(tmp_path):
    import json as _json

    from backend.core.config import ConfigError, load_settings

    missing = str(tmp_path / "nope" / "ray-jobs.json")
    base = {"BRIGHTRUN_HOME": str(tmp_path), "BRIGHTRUN_SECRETS_FILE": missing}
    with pytest.raises(ConfigError, match="BRIGHTRUN_SECRETS_FILE"):
        load_settings(base)  # carries nothing itself: the unreadable file is an error
    own = load_settings({**base, "BRIGHTRUN_S3_SECRET_KEY": "node-own"})
    assert own.s3_secret_key == "node-own"
    present = tmp_path / "s.json"
    present.write_text(_json.dumps({"BRIGHTRUN_S3_SECRET_KEY": "from-file"}))
    both = load_settings({**base, "BRIGHTRUN_SECRETS_FILE": str(present),
                          "BRIGHTRUN_S3_SECRET_KEY": "node-own"})
    assert both.s3_secret_key == "from-file"  # a readable file still wins
