"""Datasets through the CLI with --wait on a real Ray head (the validation runs as a Ray job)."""
import json

import pytest

from backend.cli import main
from tests.fixtures.paths import SAMPLE_DATA

SHARED = SAMPLE_DATA
pytestmark = pytest.mark.ray


def cli_json(capsys, *argv):
    rc = main(list(argv))
    out = capsys.readouterr().out
    return rc, json.loads(out)


@pytest.mark.parametrize("sample", ["sample-v4.jsonl", "sample-v3.jsonl"])
def test_samples_ready_through_cli(ray_env, capsys, sample):
    rc, info = cli_json(capsys, "datasets", "upload", str(SHARED / sample), "--name", sample,
                        "--wait", "--timeout", "240", "--json")
    assert rc == 0, (info["error_message"], info["validation_errors"])
    assert info["status"] == "ready"
    assert info["total_conversations"] == 5 and info["total_training_pairs"] == 7
    for key in ("id", "name", "format", "total_validation_pairs", "total_tokens",
                "assistant_tokens", "avg_turns_per_conversation", "avg_tokens_per_turn",
                "error_count", "warning_count", "validation_errors"):
        assert key in info
    # the validation really ran as a Ray job
    assert info["external_job_id"].startswith("brightrun-validate-")
    assert ray_env.wait(info["external_job_id"], timeout_s=60) == "SUCCEEDED"


def test_invalid_sample_error_through_cli(ray_env, capsys):
    rc, info = cli_json(capsys, "datasets", "upload", str(SHARED / "invalid-v4.jsonl"), "--name",
                        "bad", "--wait", "--timeout", "240", "--json")
    assert rc == 1 and info["status"] == "error"
    lines = {e["line"] for e in info["validation_errors"] if e["severity"] == "error"}
    assert set(range(2, 9)) <= lines
    dup = [e for e in info["validation_errors"] if e["code"] == "duplicate_id"]
    assert dup and dup[0]["line"] == 8
    rc, listed = cli_json(capsys, "datasets", "list", "--json")
    assert [d["status"] for d in listed] == ["error"]
    rc, again = cli_json(capsys, "datasets", "validate", info["id"], "--wait", "--json")
    assert again["status"] == "error"


def test_bad_inputs_give_one_clear_line(ray_env, capsys, tmp_path):
    assert main(["datasets", "upload", str(tmp_path / "nope.jsonl"), "--name", "x"]) == 1
    err = capsys.readouterr().err
    assert "no such file" in err and "Traceback" not in err
    empty = tmp_path / "empty.jsonl"
    empty.write_bytes(b"")
    assert main(["datasets", "upload", str(empty), "--name", "x"]) == 1
    assert "empty" in capsys.readouterr().err
    assert main(["datasets", "show", "00000000-0000-0000-0000-000000000000"]) == 1
    assert "not found" in capsys.readouterr().err
    assert main(["datasets", "list", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == []
