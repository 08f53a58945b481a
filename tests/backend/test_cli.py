"""CLI: users in password mode, login required, notifications and costs commands."""
import json

import pytest

from backend.cli import main
from backend.core.config import reset_settings


@pytest.fixture
def team(db, monkeypatch):
    monkeypatch.setenv("BRIGHTRUN_AUTH", "password")
    reset_settings()


def test_users_create_list_budget(team, capsys, monkeypatch):
    assert main(["users", "create", "admin@x.io", "--name", "Ada", "--role", "admin",
                 "--password", "secret-pass"]) == 0
    assert main(["users", "create", "bob@x.io", "--name", "Bob", "--password", "bob-pass-1"]) == 0
    assert main(["users", "create", "bob@x.io", "--name", "Bob", "--password", "bob-pass-1"]) == 1
    assert "already exists" in capsys.readouterr().err
    # no credentials: refused with a clear message
    assert main(["users", "list"]) == 1
    assert "--user" in capsys.readouterr().err
    monkeypatch.setenv("BRIGHTRUN_PASSWORD", "wrong")
    reset_settings()
    assert main(["--user", "admin@x.io", "users", "list"]) == 1
    assert "wrong e-mail or password" in capsys.readouterr().err
    monkeypatch.setenv("BRIGHTRUN_PASSWORD", "secret-pass")
    reset_settings()
    capsys.readouterr()
    assert main(["--user", "admin@x.io", "users", "set-budget", "bob@x.io", "250"]) == 0
    capsys.readouterr()
    assert main(["--user", "admin@x.io", "users", "list", "--json"]) == 0
    users = {u["email"]: u for u in json.loads(capsys.readouterr().out)}
    assert users["bob@x.io"]["monthly_budget"] == 250 and users["admin@x.io"]["role"] == "admin"
    monkeypatch.setenv("BRIGHTRUN_PASSWORD", "bob-pass-1")
    reset_settings()
    assert main(["--user", "bob@x.io", "users", "set-budget", "admin@x.io", "1"]) == 1
    assert "only admins" in capsys.readouterr().err


def test_bad_password_and_role(team, capsys):
    assert main(["users", "create", "c@x.io", "--name", "C", "--password", "short"]) == 1
    assert "8 characters" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["users", "create", "c@x.io", "--name", "C", "--role", "god", "--password", "x" * 9])


def test_notifications_and_costs_commands(db, capsys):
    assert main(["notifications", "list", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == []
    assert main(["notifications", "read", "--all"]) == 0
    capsys.readouterr()
    assert main(["costs", "summary", "--json"]) == 0
    s = json.loads(capsys.readouterr().out)
    assert s["total"] == 0 and set(s["by_type"]) == {"compute", "storage", "data_transfer"}


@pytest.mark.parametrize("override,message", [
    ("target_modules=[bad", "target_modules='[bad': not a valid JSON list"),
    ("target_modules=q_proj,c_attn", "'c_attn' not found in base model"),
])
def test_jobs_estimate_bad_override_is_one_clear_line(db, capsys, override, message):
    from backend.accounts.users import ensure_local_user
    from tests.pages.conftest import make_dataset

    ds = make_dataset(ensure_local_user(), "d")
    for cmd in ("estimate", "create"):
        assert main(["jobs", cmd, "--dataset", ds.id, "--set", override]) == 1
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("path, name, expected", [
    ("examples/demo-support-v4.jsonl", None, "demo-support-v4"),
    ("/data/x.y.jsonl", "", "x.y"),
    ("a.jsonl", "  Mine  ", "Mine"),
    ("noext", None, "noext"),
])
def test_upload_name_defaults_to_the_file_name(path, name, expected):
    from backend.cli.datasets import default_name

    assert default_name(path, name) == expected


def test_jobs_samples_and_show_json_carry_scores(db, capsys):
    from backend.accounts.users import ensure_local_user
    from backend.jobs import service as jobs
    from backend.jobs.db_sink import DbSink
    from tests.backend.jobs.test_jobs import ready_dataset

    me = ensure_local_user()
    job = jobs.create_job(me, ready_dataset(me).id, submit=False)
    sink = DbSink(job.id)
    sink.stage("training")
    ref = "The code is ZX-42."
    sink.samples(0, [{"index": 0, "question": "Code? \x1b[31m[bold]", "prompt": "p",
                      "reference": ref, "answer": "no idea"}])
    sink.samples(5, [{"index": 0, "question": "Code? \x1b[31m[bold]", "prompt": "p",
                      "reference": ref, "answer": "the code is zx-42"}])
    capsys.readouterr()
    assert main(["jobs", "samples", job.id, "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    row = out["samples"][0]
    assert row["base"] == "no idea" and row["adapter_exact_match"] is True
    assert out["scores"]["base"]["rouge_l"] == 0 and out["scores"]["adapter"]["exact_match"] == 1
    assert main(["jobs", "samples", job.id]) == 0
    text = capsys.readouterr().out
    assert "\\x1b[31m[bold]" in text and "\x1b[31m" not in text and "→" in text
    assert main(["jobs", "show", job.id, "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["scores"] == out["scores"] and shown["samples"][0]["adapter"] == row["adapter"]
    assert main(["jobs", "samples", "nope"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error [") and len(err.strip().splitlines()) == 1


def test_jobs_estimate_method_dpo_on_a_preference_set(db, capsys):
    import io

    from backend.accounts.users import ensure_local_user
    from backend.datasets import service as ds
    from tests.fixtures.paths import REPO

    data = (REPO / "examples" / "preference-demo.jsonl").read_bytes()
    info = ds.upload_dataset(ensure_local_user(), io.BytesIO(data), "p.jsonl", "prefs",
                             size=len(data), submit=False)
    ds.run_validation(info.id)
    assert main(["jobs", "estimate", "--dataset", info.id, "--method", "dpo",
                 "--base-model", "brightrun/tiny-llama", "--json"]) == 0
    assert "DPO:" in capsys.readouterr().out
    assert main(["jobs", "estimate", "--dataset", info.id,
                 "--base-model", "brightrun/tiny-llama"]) == 1
    err = capsys.readouterr().err
    assert "method sft cannot train" in err and len(err.strip().splitlines()) == 1
