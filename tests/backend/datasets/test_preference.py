"""Preference (DPO) datasets: detection, line-numbered errors, template token counts, the demo set."""
from __future__ import annotations

import io
import json
import subprocess
import sys

import pytest

from backend.core.errors import InvalidInput
from backend.datasets.preference import (
    encode_pair,
    is_preference,
    load_pairs,
    parse_pair,
    validate_preferences,
)
from tests.fixtures.paths import REPO

DEMO = REPO / "examples" / "preference-demo.jsonl"


def _file(*rows) -> io.BytesIO:
    return io.BytesIO("".join((r if isinstance(r, str) else json.dumps(r)) + "\n"
                              for r in rows).encode())


def test_standard_conversational_and_implicit_rows_parse():
    std, errs = parse_pair({"prompt": "Hi?", "chosen": "Hello!", "rejected": "Go away."}, 1)
    assert not errs and std.prompt == [{"role": "user", "content": "Hi?"}]
    conv, errs = parse_pair({"prompt": [{"role": "system", "content": "Be kind."},
                                        {"role": "user", "content": "Hi?"}],
                             "chosen": [{"role": "assistant", "content": "Hello!"}],
                             "rejected": [{"role": "assistant", "content": "No."}]}, 2)
    assert not errs and conv.chosen == "Hello!" and conv.prompt[0]["role"] == "system"
    user = {"role": "user", "content": "Hi?"}
    imp, errs = parse_pair({"chosen": [user, {"role": "assistant", "content": "Hello!"}],
                            "rejected": [user, {"role": "assistant", "content": "No."}]}, 3)
    assert not errs and imp.prompt == [user] and imp.rejected == "No."
    assert is_preference({"chosen": "a"}) and not is_preference({"messages": []})


def test_bad_rows_get_line_numbered_errors():
    report = validate_preferences(_file(
        {"prompt": "ok", "chosen": "yes", "rejected": "no"},
        {"prompt": "missing", "chosen": "yes"},
        {"prompt": "same", "chosen": "Same answer", "rejected": "Same answer "},
        {"prompt": 3, "chosen": "yes", "rejected": "no"},
        {"prompt": "p", "chosen": ["not a message"], "rejected": "no"},
        "{not json",
        {"prompt": "p", "chosen": "a", "rejected": "b", "score": 1}))
    assert report.pairs == 1 and not report.ok
    by_line = {line: msg for line, msg in report.errors}
    assert "missing required key `rejected`" in by_line[2]
    assert "same answer" in by_line[3]
    assert "`prompt` must be a string or a non-empty list of messages, got a number" in by_line[4]
    assert "`chosen` message 1" in by_line[5]
    assert "invalid JSON" in by_line[6]
    assert "unknown key `score`" in by_line[7]
    with pytest.raises(InvalidInput, match="line 2: missing required key `rejected`"):
        load_pairs(_file({"prompt": "ok", "chosen": "yes", "rejected": "no"},
                         {"prompt": "x", "chosen": "y"}))


def test_demo_set_is_valid_and_its_generator_is_deterministic(tmp_path):
    before = DEMO.read_bytes()
    subprocess.run([sys.executable, str(REPO / "examples" / "make_preference_demo.py")], check=True,
                   capture_output=True)
    assert DEMO.read_bytes() == before
    with DEMO.open("rb") as fh:
        report = validate_preferences(fh)
    assert report.ok and report.pairs == 60 and len(report.preview) == 5


def test_tokens_counted_with_the_base_models_template(tmp_path, monkeypatch):
    from transformers import AutoTokenizer

    from backend.base_models.tiny_model import ensure_tiny_model

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    tok = AutoTokenizer.from_pretrained(ensure_tiny_model(tmp_path / "home"))
    pair, _ = parse_pair({"prompt": "What is 2+2?", "chosen": "Four, of course.",
                          "rejected": "Five."}, 1)
    chosen, rejected = encode_pair(tok, pair, 512)
    assert chosen.trained_tokens > rejected.trained_tokens > 0
    assert tok.decode([t for t in chosen.labels if t != -100]).strip().startswith("Four")
    prompt_len = len(tok.apply_chat_template(pair.prompt, add_generation_prompt=True))
    assert chosen.input_ids[:prompt_len] == rejected.input_ids[:prompt_len]
    with DEMO.open("rb") as fh:
        report = validate_preferences(fh, tokenizer=tok)
    assert report.tokens["pairs"] == 60 and report.tokens["answer_tokens"] > 0
    assert report.tokens["tokens"] > report.tokens["answer_tokens"]
