"""Streaming validation: one case per issue code, the shared samples, every format, hostile files,
the issue cap, the held-out split, statistics and token counting with a real BPE tokenizer."""
from __future__ import annotations

import gzip
import io
import json
import random
import subprocess
import sys

import pytest

from backend.core.errors import InvalidInput
from backend.datasets import validation
from backend.datasets.stats import (
    StatsAccumulator,
    count_words,
    histogram,
    percentile,
    split_long_text,
    tokenizer_counter,
    whitespace_counter,
)
from backend.datasets.validation import ISSUE_CODES, check_roles, sniff_binary, validate_stream
from backend.training.plan import held_out_indices
from tests.fixtures.paths import REPO, SAMPLE_DATA

SHARED = SAMPLE_DATA


def conv(cid="g1", *roles_contents, system=True, **extra):
    pairs = roles_contents or (("user", "How do I reset my card PIN?"),
                               ("assistant", "Open the app, choose Cards, then Reset PIN."))
    turns = ([{"role": "system", "content": "You are a bank support agent."}] if system else [])
    turns += [{"role": r, "content": c} for r, c in pairs]
    return {"conversation_id": cid, "turns": turns, **extra}


def jsonl(*lines, sep=b"\n") -> bytes:
    out = []
    for line in lines:
        out.append(line if isinstance(line, bytes) else json.dumps(line).encode())
    return sep.join(out) + (sep if out else b"")


def validate(data: bytes, **kw):
    return validate_stream(io.BytesIO(data), **kw)


def codes_at(report) -> list[tuple[int, str]]:
    return [(i.line, i.code) for i in report.issues]


GOOD = conv()
BAD_UTF8 = b'{"conversation_id": "x", "turns": [{"role": "user", "content": "caf\xe9"}]}'

# code -> (lines, validate kwargs, line where the issue is expected, line-level?)
CASES = {
    "invalid_utf8": ([GOOD, BAD_UTF8], {}, 2, True),
    "invalid_json": ([GOOD, b'{"conversation_id": "x", "turns": ['], {}, 2, True),
    "not_object": ([GOOD, b'"just a string"'], {}, 2, True),
    "missing_key": ([GOOD, {"turns": conv()["turns"]}], {}, 2, True),
    "unknown_key": ([GOOD, conv("x", extra_field=1)], {}, 2, True),
    "wrong_type": ([GOOD, {"conversation_id": "x", "turns": "hello"}], {}, 2, True),
    "unknown_role": ([GOOD, conv("x", ("customer", "hi"), ("assistant", "hello"))], {}, 2, True),
    "empty_content": ([GOOD, conv("x", ("user", "  \n"), ("assistant", "ok"))], {}, 2, True),
    "no_assistant_turn": ([GOOD, conv("x", ("user", "anyone?"))], {}, 2, True),
    "roles_not_alternating": ([GOOD, conv("x", ("user", "a"), ("user", "b"), ("assistant", "c"))],
                              {}, 2, True),
    "mixed_formats": ([GOOD, {"messages": conv()["turns"]}], {}, 2, True),
    "unknown_format": ([{"question": "q", "answer": "a"}, GOOD], {}, 1, False),
    "duplicate_id": ([GOOD, conv("g1")], {}, 2, True),
    "too_few_conversations": ([GOOD], {"min_conversations": 2}, 0, False),
    "empty_file": ([], {}, 0, False),
    "binary_file": ([gzip.compress(jsonl(GOOD))], {}, 1, False),
    "line_too_long": ([GOOD, conv("x", ("user", "q " * 200), ("assistant", "a"))],
                      {"max_line_bytes": 300}, 2, True),
    "truncated": ([GOOD, conv("x", ("user", "q " * 50), ("assistant", "a"))],
                  {"max_seq_length": 40}, 2, True),
    "missing_system_prompt": ([GOOD, conv("x", system=False)], {}, 2, True),
}


def test_every_issue_code_has_a_case():
    assert set(CASES) == set(ISSUE_CODES)
    assert {sev for sev, _, _ in ISSUE_CODES.values()} == {"error", "warning"}


@pytest.mark.parametrize("code", sorted(CASES))
def test_issue_code(code):
    lines, kw, line, _ = CASES[code]
    report = validate(jsonl(*lines), **kw)
    assert (line, code) in codes_at(report), codes_at(report)
    issue = next(i for i in report.issues if i.code == code)
    assert issue.severity == ISSUE_CODES[code][0]
    assert issue.error and issue.suggestion
    assert report.issue_counts[code] == 1
    assert report.ok is (issue.severity == "warning")


@pytest.mark.parametrize("skip_tokens", [False, True])
@pytest.mark.parametrize("code", sorted(c for c in CASES if CASES[c][3]))
def test_fast_path_reports_the_same_as_the_full_check(code, skip_tokens):
    """After three good lines validation switches to the fast loop: a bad line must still get
    exactly the issues it gets through the full check."""
    lines, kw, line, _ = CASES[code]
    kw = {**kw, "skip_tokens": skip_tokens}
    alone = validate(jsonl(*lines), **kw)
    prefix = [conv(f"p{i}") for i in range(3)]
    shifted = validate(jsonl(*prefix, *lines), **kw)
    def seen(issues, offset):  # (the duplicate's message names a line number: shifted too)
        return [(i.line - offset, i.code, i.error.replace(f"line {1 + offset}", "line 1"))
                for i in issues]

    assert seen(shifted.issues, 3) == seen(alone.issues, 0)
    assert shifted.stats.conversations == alone.stats.conversations + 3


def _noisy_file(n: int, seed: int, fmt: str = "v4") -> bytes:
    """Good lines in several shapes with random defects (deterministic)."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        obj = conv(f"c{i}", system=rng.random() < 0.7, metadata={"i": i})
        roll = rng.random()
        if roll < 0.03:
            obj["turns"][-1]["role"] = "bot"
        elif roll < 0.06:
            obj["turns"][-1]["content"] = rng.choice(["", " ", 5, None, ["x"]])
        elif roll < 0.09:
            obj["conversation_id"] = f"c{rng.randrange(max(i, 1))}"
        elif roll < 0.11:
            obj["turns"].append(rng.choice([{"role": "user"}, "x", {"role": "user", "content": "q",
                                                                     "w": 1}]))
        elif roll < 0.13:
            obj["metadata"] = rng.choice([[], "m", None])
        elif roll < 0.15:
            obj["turns"].reverse()
        elif roll < 0.17:
            obj["conversation_id"] = rng.choice([" ", 3, None])
        elif roll < 0.19:
            out.append(rng.choice([b"", b"{oops", b"[]", b"\r"]))
            continue
        elif roll < 0.21:
            obj["turns"] = rng.choice([[], {}, "t"])
        out.append(json.dumps(_as(fmt, obj, rng)).encode())
    return b"\n".join(out) + b"\n"


_SHAREGPT_ROLE = {"user": "human", "assistant": "gpt", "system": "system"}


def _as(fmt: str, obj: dict, rng: random.Random) -> dict:
    """A (possibly broken) v4 object rewritten in another message-list format."""
    if fmt == "v4":
        return obj
    out = {k: v for k, v in obj.items() if k not in ("turns", "conversation_id")}
    if rng.random() < 0.5:
        out[rng.choice(["conversation_id", "id"])] = obj.get("conversation_id")
    turns = obj.get("turns")
    if fmt == "sharegpt" and isinstance(turns, list):
        turns = [{("from" if k == "role" else "value" if k == "content" else k):
                  (_SHAREGPT_ROLE.get(v, v) if k == "role" and isinstance(v, str) else v)
                  for k, v in t.items()} if isinstance(t, dict) else t for t in turns]
    out["messages" if fmt == "openai" else "conversations"] = turns
    return out


@pytest.mark.parametrize("seed,skip_tokens,fmt", [
    (1, False, "v4"), (2, False, "v4"), (3, True, "v4"), (4, True, "v4"),
    (5, False, "openai"), (6, True, "openai"), (7, False, "sharegpt"), (8, True, "sharegpt")])
def test_fast_loop_agrees_with_the_full_check_on_noisy_files(monkeypatch, seed, skip_tokens, fmt):
    data = _noisy_file(600, seed, fmt)
    calls = {"n": 0}
    real_one_line = validation._Validation.one_line

    def counting(self, line_no, raw):
        calls["n"] += 1
        return real_one_line(self, line_no, raw)

    monkeypatch.setattr(validation._Validation, "one_line", counting)
    fast = validate(data, skip_tokens=skip_tokens).to_dict()
    fast_calls = calls["n"]

    def full_only(self, lines, line_no):
        for raw in lines:
            line_no += 1
            self.one_line(line_no, raw)
        return line_no

    monkeypatch.setattr(validation._Validation, "_fast_loop", full_only)
    calls["n"] = 0
    full = validate(data, skip_tokens=skip_tokens).to_dict()
    assert fast_calls < calls["n"] / 2  # the fast loop really handled most lines
    assert fast == full
    assert fast["error_count"] > 50 and fast["stats"]["conversations"] > 300


# ----- the shared samples ------------------------------------------------------------------------
@pytest.mark.parametrize("name,fmt", [("sample-v4.jsonl", "brightrun_lora_v4"),
                                      ("sample-v3.jsonl", "brightrun_lora_v3")])
def test_shared_samples_are_valid(name, fmt):
    report = validate((SHARED / name).read_bytes())
    assert report.ok and report.format == fmt and report.error_count == 0
    s = report.stats
    assert (s.conversations, s.training_pairs) == (5, 7)
    assert s.total_turns == 18 and s.avg_turns_per_conversation == 3.6
    assert 0 < s.assistant_tokens < s.total_tokens
    assert len(report.preview) == 3
    assert report.preview[0]["turns"][0] == {
        "role": "system", "content": "You are Elena, a calm and thorough financial planner."}
    assert codes_at(report) == [(3, "missing_system_prompt")]


def test_v3_and_v4_samples_have_the_same_statistics():
    v4 = validate((SHARED / "sample-v4.jsonl").read_bytes()).to_dict()
    v3 = validate((SHARED / "sample-v3.jsonl").read_bytes()).to_dict()
    for d in (v4, v3):
        d.pop("format")
        for p in d["preview"]:
            p.pop("metadata")
    assert v4 == v3


def test_invalid_sample_reports_every_bad_line():
    report = validate((SHARED / "invalid-v4.jsonl").read_bytes())
    assert not report.ok
    errors = [(i.line, i.code) for i in report.issues if i.severity == "error"]
    assert errors == [(2, "invalid_json"), (3, "missing_key"), (4, "unknown_role"),
                      (5, "no_assistant_turn"), (6, "empty_content"), (7, "not_object"),
                      (8, "duplicate_id")]
    by_line = {i.line: i for i in report.issues}
    assert "conversation_id" in by_line[3].error
    assert "line 1" in by_line[8].error
    assert report.error_count == 7 and report.stats.conversations == 1


# ----- formats -----------------------------------------------------------------------------------
FORMAT_FILES = {
    "brightrun_lora_v4": [conv("a"), conv("b", system=False)],
    "brightrun_lora_v3": [{"conversation_id": "a", "system_prompt": "sys",
                           "training_pairs": [{"input": "q", "output": "r"}]},
                          {"conversation_id": "b", "training_pairs": [{"input": "q", "output": "r"},
                                                                      {"input": "q2", "output": "r2"}]}],
    "openai_chat": [{"messages": conv()["turns"]}, {"messages": conv(system=False)["turns"]}],
    "sharegpt": [{"conversations": [{"from": "human", "value": "q"}, {"from": "gpt", "value": "r"}],
                  "system": "sys"},
                 {"conversations": [{"from": "human", "value": "q"}, {"from": "gpt", "value": "r"}]}],
    "alpaca": [{"instruction": "Sum", "input": "1 2", "output": "3", "system": "sys"},
               {"instruction": "Say hi", "output": "hi"}],
}


@pytest.mark.parametrize("fmt", sorted(FORMAT_FILES))
def test_each_format_is_detected_and_normalised(fmt):
    lines = FORMAT_FILES[fmt] * 3  # ids repeat for v3/v4: make them unique
    for i, line in enumerate(lines):
        if "conversation_id" in line:
            lines[i] = {**line, "conversation_id": f"id-{i}"}
    report = validate(jsonl(*lines))
    assert report.ok, codes_at(report)
    assert report.format == fmt and report.stats.conversations == 6
    assert codes_at(report) == [(n, "missing_system_prompt") for n in (2, 4, 6)]
    first = report.preview[0]["turns"]
    assert first[0]["role"] == "system" and first[-1]["role"] == "assistant"
    assert {t["role"] for t in report.preview[1]["turns"]} == {"user", "assistant"}


@pytest.mark.parametrize("declared", [None, "auto", "brightrun_lora_v4"])
def test_declared_format_matches(declared):
    assert validate(jsonl(GOOD), declared_format=declared).ok


def test_declared_format_differs_from_the_file():
    report = validate(jsonl(*[conv(f"c{i}") for i in range(5)]), declared_format="brightrun_lora_v3")
    assert report.issue_counts == {"mixed_formats": 5, "too_few_conversations": 1}
    assert "declared" in [i for i in report.issues if i.code == "mixed_formats"][0].error


def test_mixed_formats_names_where_the_format_was_detected():
    report = validate(jsonl(GOOD, conv("b"), {"messages": conv()["turns"]},
                            {"instruction": "x", "output": "y"}))
    assert codes_at(report) == [(3, "mixed_formats"), (4, "mixed_formats")]
    assert "detected on line 1" in report.issues[0].error


def test_unknown_declared_format_raises():
    with pytest.raises(InvalidInput):
        validate(jsonl(GOOD), declared_format="csv")


@pytest.mark.parametrize("kw", [{"max_seq_length": 0}, {"validation_fraction": 2},
                                {"min_conversations": -1}])
def test_bad_arguments_raise(kw):
    with pytest.raises(InvalidInput):
        validate(jsonl(GOOD), **kw)


def test_text_mode_file_is_refused():
    with pytest.raises(InvalidInput):
        validate_stream(io.StringIO(json.dumps(GOOD) + "\n"))  # type: ignore[arg-type]


# ----- hostile and odd files ---------------------------------------------------------------------
@pytest.mark.parametrize("data,reason", [
    (b"\x1f\x8b\x08\x00" + bytes(range(256)) * 8, "gzip"),
    (b"PK\x03\x04" + b"x" * 100, "ZIP"),
    ('{"turns": []}\n'.encode("utf-16"), "UTF-16"),
    (bytes(random.Random(0).randrange(256) for _ in range(200_000)), "binary"),
    (jsonl(GOOD) * 3 + b'{"conversation_id": "z\x00\x00\x00"}\n' + jsonl(GOOD) * 1000, "NUL"),
])
def test_binary_file_is_one_issue_and_stops(data, reason):
    report = validate(data)
    assert report.issue_counts == {"binary_file": 1} | (
        {"duplicate_id": 2} if reason == "NUL" else {})
    assert reason in [i for i in report.issues if i.code == "binary_file"][0].error
    assert not report.ok


@pytest.mark.parametrize("head,reason", [
    (b'{"conversation_id": "a"}', None),
    ("{\"x\": \"é ü 中文\"}".encode(), None),
    (b"\x00\x01\x02\x03" * 10, "NUL"),
    (bytes(range(128, 256)) * 2, "not text"),
    (b"SQLite format 3\x00", "SQLite"),
    (b"%PDF-1.7", "PDF"),
])
def test_sniff_binary(head, reason):
    got = sniff_binary(head)
    assert (got is None) if reason is None else (reason in got)


@pytest.mark.parametrize("data", [b"", b"\n", b"\n\r\n   \n", b"\xef\xbb\xbf", b"\xef\xbb\xbf\n\n"])
def test_empty_file(data):
    report = validate(data)
    assert codes_at(report) == [(0, "empty_file")] and not report.ok


def test_bom_crlf_and_blank_lines_are_accepted():
    plain = validate(jsonl(*[conv(f"c{i}") for i in range(6)]))
    odd = validate(b"\xef\xbb\xbf" + b"\r\n".join(
        json.dumps(conv(f"c{i}")).encode() + (b"\r\n" if i % 2 else b"") for i in range(6)) + b"\r\n")
    assert odd.ok and odd.error_count == 0
    assert odd.stats.conversations == plain.stats.conversations == 6
    assert odd.stats.total_tokens == plain.stats.total_tokens
    assert odd.preview == plain.preview


def test_invalid_utf8_is_reported_per_line_not_as_binary():
    latin1 = "\n".join(json.dumps(conv(f"c{i}", ("user", "café crème"), ("assistant", "oui")),
                                  ensure_ascii=False) for i in range(20)).encode("latin-1")
    report = validate(latin1 + b"\n")
    assert report.issue_counts == {"invalid_utf8": 20, "too_few_conversations": 1}
    assert "UTF-8" in [i for i in report.issues if i.code == "invalid_utf8"][0].suggestion


def test_line_too_long_is_skipped_and_the_rest_validated():
    data = jsonl(GOOD, b"x" * 5000, conv("b"), b'{"turns": [' + b" " * 1500, conv("c"))
    report = validate(data, max_line_bytes=1000)
    assert codes_at(report) == [(2, "line_too_long"), (4, "line_too_long")]
    assert "5001 bytes" in report.issues[0].error
    assert report.stats.conversations == 3


_CHILD = """
import json, sys
from backend.datasets.validation import validate_stream

def peak_kib():  # VmHWM restarts at exec (ru_maxrss would keep the parent's peak)
    with open("/proc/self/status") as fh:
        return next(int(line.split()[1]) for line in fh if line.startswith("VmHWM:"))

before = peak_kib()
with open(sys.argv[1], "rb") as fh:
    report = validate_stream(fh)
print(json.dumps({"before_kib": before, "growth_kib": peak_kib() - before,
                  "report": report.to_dict()}))
"""


def test_a_single_50mb_line_works_in_bounded_memory(tmp_path):
    """Peak memory (RSS of a child process) grows by a few times the longest line, not more."""
    path = tmp_path / "huge.jsonl"
    chunk = b"lorem " * (1 << 16)
    n_chunks = 50 * 1024 * 1024 // len(chunk) + 1
    with path.open("wb") as fh:
        fh.write(b'{"conversation_id": "huge", "turns": [{"role": "user", "content": "Summarise."}, '
                 b'{"role": "assistant", "content": "')
        for _ in range(n_chunks):
            fh.write(chunk)
        fh.write(b'end"}]}\n')
        fh.write(json.dumps(conv("next")).encode() + b"\n")
    size = path.stat().st_size
    assert size > 50 * 1024 * 1024
    out = subprocess.run([sys.executable, "-c", _CHILD, str(path)], cwd=REPO, check=True,
                         capture_output=True, text=True, timeout=300)
    result = json.loads(out.stdout)
    report = result["report"]
    assert report["ok"] and report["stats"]["conversations"] == 2
    assert [(i["line"], i["code"]) for i in report["issues"]] == [(1, "missing_system_prompt"),
                                                                  (1, "truncated")]
    expected = n_chunks * (1 << 16) + 1  # "lorem" words + "end"
    assert report["stats"]["assistant_tokens"] == expected + count_words(GOOD["turns"][2]["content"])
    assert len(report["preview"][0]["turns"][1]["content"]) < 2100  # the preview is cut
    assert result["before_kib"] < 200 * 1024  # measured in the child, not inherited from pytest
    assert 0 < result["growth_kib"] * 1024 < 4 * size, f"grew {result['growth_kib'] // 1024} MiB"


# ----- the issue cap -----------------------------------------------------------------------------
def test_issue_cap_keeps_full_counts_and_prefers_errors():
    lines = [conv(f"w{i}", system=False) for i in range(150)]  # warnings first
    lines += [conv(f"e{i}", ("customer", "hi"), ("assistant", "hello")) for i in range(250)]
    report = validate(jsonl(*lines))
    assert report.error_count == 250 and report.warning_count == 150
    assert report.issue_counts == {"missing_system_prompt": 150, "unknown_role": 250}
    assert len(report.issues) == 100
    assert {i.code for i in report.issues} == {"unknown_role"}
    assert [i.line for i in report.issues] == list(range(151, 251))


@pytest.mark.parametrize("cap,errors,warnings,stored_errors", [
    (100, 30, 150, 30), (10, 30, 150, 10), (0, 30, 150, 0), (100, 0, 150, 0)])
def test_issue_cap_table(cap, errors, warnings, stored_errors):
    lines = [conv(f"w{i}", system=False) for i in range(warnings)]
    lines += [{"conversation_id": f"e{i}", "turns": "x"} for i in range(errors)]
    report = validate(jsonl(*lines), max_issues_stored=cap)
    assert (report.error_count, report.warning_count) == (errors, warnings)
    assert len(report.issues) == min(cap, errors + warnings)
    assert sum(i.severity == "error" for i in report.issues) == stored_errors
    assert report.issues == sorted(report.issues, key=lambda i: i.line)


def test_stored_issues_are_the_lowest_lines_whatever_order_they_are_found_in():
    """truncated warnings are only known when a token batch is counted, after later lines'
    warnings: the stored ones are still those of the first lines."""
    long = [conv(f"l{i}", ("user", "word " * 50), ("assistant", "ok")) for i in range(10)]
    plain = [conv(f"p{i}", system=False) for i in range(10)]
    report = validate(jsonl(*long, *plain), max_seq_length=20, max_issues_stored=5)
    assert report.warning_count == 20
    assert codes_at(report) == [(n, "truncated") for n in range(1, 6)]


# ----- statistics --------------------------------------------------------------------------------
def test_validation_pairs_are_the_trainers_exact_split():
    turns = {i: [("user", "q"), ("assistant", "a")] * (1 + i % 3) for i in range(2000)}
    data = jsonl(*[conv(f"c{i}", *turns[i]) for i in range(2000)])
    ids = [f"c{i}" for i in range(2000)]
    for fraction, held in ((0.1, 200), (0.25, 500), (0.0, 0), (1.0, 1999)):
        expected = sum(1 + i % 3 for i in held_out_indices(ids, fraction, 0))
        assert len(held_out_indices(ids, fraction, 0)) == held
        assert validate(data, validation_fraction=fraction).stats.validation_pairs == expected
    # the trainer's load_split holds out exactly those conversations
    from backend.datasets.formats import load_split
    train, val = load_split(io.BytesIO(data.encode() if isinstance(data, str) else data), 0.1)
    assert len(val) == 200 and {c.conversation_id for c in val} == {
        ids[i] for i in held_out_indices(ids, 0.1, 0)}
    assert validate(data).stats.training_pairs == sum(1 + i % 3 for i in range(2000))


def test_statistics_with_whitespace_counting():
    lines = [conv("a", ("user", "one two"), ("assistant", "three four five"), system=False),
             conv("b", ("user", "x"), ("assistant", "y"), ("user", "z"), ("assistant", "w w w w"),
                  system=False)]
    s = validate(jsonl(*lines)).stats
    assert s.tokenizer == "whitespace (approximate)"
    assert (s.total_tokens, s.assistant_tokens, s.total_turns) == (12, 8, 6)
    assert s.avg_tokens_per_turn == 2.0 and s.avg_turns_per_conversation == 3.0
    assert s.length_percentiles == {"p10": 5, "p50": 5, "p90": 7, "max": 7}
    assert sum(b["count"] for b in s.length_histogram) == 2


def test_skip_tokens_leaves_token_statistics_empty():
    report = validate(jsonl(GOOD, conv("b")), skip_tokens=True)
    s = report.stats
    assert report.ok and s.conversations == 2 and s.training_pairs == 2
    assert s.total_tokens is None and s.length_percentiles is None and s.length_histogram == []
    assert "skipped" in s.tokenizer


def test_report_to_dict_is_json_safe():
    d = validate((SHARED / "invalid-v4.jsonl").read_bytes()).to_dict()
    assert json.loads(json.dumps(d)) == d
    assert set(d) == {"format", "ok", "error_count", "warning_count", "issues", "issue_counts",
                      "stats", "preview"}
    assert set(d["issues"][0]) == {"line", "code", "severity", "error", "suggestion"}
    assert {"conversations", "training_pairs", "validation_pairs", "total_tokens",
            "assistant_tokens", "avg_turns_per_conversation", "avg_tokens_per_turn",
            "length_percentiles", "length_histogram", "tokenizer"} <= set(d["stats"])


@pytest.mark.parametrize("counts,q,expected", [
    ({}, 50, 0), ({7: 1}, 10, 7), ({7: 1}, 100, 7),
    ({1: 1, 2: 1, 3: 1, 4: 1, 5: 1, 6: 1, 7: 1, 8: 1, 9: 1, 10: 1}, 10, 1),
    ({1: 1, 2: 1, 3: 1, 4: 1, 5: 1, 6: 1, 7: 1, 8: 1, 9: 1, 10: 1}, 50, 5),
    ({1: 1, 2: 1, 3: 1, 4: 1, 5: 1, 6: 1, 7: 1, 8: 1, 9: 1, 10: 1}, 90, 9),
    ({1: 98, 1000: 2}, 90, 1), ({1: 98, 1000: 2}, 99, 1000),
])
def test_percentile(counts, q, expected):
    assert percentile(counts, q) == expected


@pytest.mark.parametrize("counts,bins,expected", [
    ({}, 20, []),
    ({5: 3}, 20, [(5, 6, 3)]),
    ({0: 1, 9: 1}, 5, [(0, 2, 1), (2, 4, 0), (4, 6, 0), (6, 8, 0), (8, 10, 1)]),
    ({10: 2, 12: 1, 29: 4}, 2, [(10, 20, 3), (20, 30, 4)]),
    ({100: 1, 103: 1}, 20, [(100, 101, 1), (101, 102, 0), (102, 103, 0), (103, 104, 1)]),
])
def test_histogram(counts, bins, expected):
    got = histogram(counts, bins)
    assert [(b["bin_start"], b["bin_end"], b["count"]) for b in got] == expected


def test_accumulator_without_tokens():
    acc = StatsAccumulator(None)
    acc.add(2, 7, 3)
    acc.add_validation_pairs(1)
    s = acc.finish(lines=4)
    assert (s.conversations, s.total_turns, s.training_pairs, s.validation_pairs) == (2, 7, 3, 1)
    assert s.avg_turns_per_conversation == 3.5 and s.total_tokens is None and s.lines == 4


@pytest.mark.parametrize("text,expected", [
    ("", 0), ("one", 1), ("  one  two\tthree\n", 3), ("a " * 70_000, 70_000),
    ("ab" * 40_000, 1), (("x" * 65_535 + " ") * 3, 3), ("word " * 13_107 + "w", 13_108),
])
def test_count_words(text, expected):
    assert count_words(text) == expected == len(text.split())


@pytest.mark.parametrize("text,cut_at_whitespace", [
    ("short", True), ("word " * 200_000, True), ("a  b " * 100_000, True),
    ("x" * 600_000, False),  # no whitespace near the cut: cut anyway, 1024 characters later
])
def test_split_long_text_reassembles(text, cut_at_whitespace):
    pieces = list(split_long_text(text))
    assert "".join(pieces) == text
    assert all(len(p) <= 256 * 1024 + 1024 for p in pieces)
    assert all(p[0].isspace() for p in pieces[1:]) == cut_at_whitespace
    if cut_at_whitespace:
        assert sum(count_words(p) for p in pieces) == count_words(text)


@pytest.mark.parametrize("roles,errors,warnings,n_assistant", [
    (("system", "user", "assistant"), [], [], 1),
    (("user", "assistant", "user", "assistant"), [], ["missing_system_prompt"], 2),
    (("system", "user", "assistant", "user"), [], [], 1),  # a trailing user turn is allowed
    (("system", "user"), ["no_assistant_turn"], [], 0),
    ((), ["no_assistant_turn"], ["missing_system_prompt"], 0),
    (("assistant", "user"), ["roles_not_alternating"], ["missing_system_prompt"], 1),
    (("system", "user", "user", "assistant"), ["roles_not_alternating"], [], 1),
    (("system", "user", "assistant", "system"), ["roles_not_alternating"], [], 1),
    (("system", "system", "user", "assistant"), ["roles_not_alternating"], [], 1),
])
def test_check_roles(roles, errors, warnings, n_assistant):
    check = check_roles(roles)
    got = [c for c, _ in check.problems]
    assert [c for c in got if ISSUE_CODES[c][0] == "error"] == errors
    assert [c for c in got if ISSUE_CODES[c][0] == "warning"] == warnings
    assert check.n_assistant == n_assistant and check.has_error == bool(errors)


# ----- token counting with a real tokenizer ------------------------------------------------------
SENTENCES = ["How do I reset my card PIN?", "Open the app, choose Cards, then Reset PIN.",
             "You are a bank support agent.", "My transfer is still pending after two days.",
             "Pending transfers usually clear within three business days."]


@pytest.fixture(scope="module")
def bpe():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE(unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=["[UNK]", "<s>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(SENTENCES * 20, trainer)
    from tokenizers.processors import TemplateProcessing

    tok.post_processor = TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
    return tok


def _tokens(tok, text):
    return len(tok.encode(text, add_special_tokens=False).ids)


def test_token_counts_with_a_real_bpe_tokenizer(bpe):
    data = (SHARED / "sample-v4.jsonl").read_bytes()
    report = validate(data, count_tokens=tokenizer_counter(bpe), tokenizer_name="test-bpe",
                      max_seq_length=150)
    convs = [json.loads(line) for line in data.splitlines()]
    per_conv = [sum(_tokens(bpe, t["content"]) for t in c["turns"]) for c in convs]
    assistant = sum(_tokens(bpe, t["content"]) for c in convs for t in c["turns"]
                    if t["role"] == "assistant")
    s = report.stats
    assert s.tokenizer == "test-bpe"
    assert s.total_tokens == sum(per_conv) and s.assistant_tokens == assistant
    assert s.length_percentiles["max"] == max(per_conv)
    assert s.total_tokens > validate(data).stats.total_tokens  # BPE splits more than whitespace
    truncated = [i.line for i in report.issues if i.code == "truncated"]
    assert truncated == [n for n, t in enumerate(per_conv, 1) if t > 150] and truncated


def test_counter_ignores_special_tokens_truncation_and_padding(bpe):
    from tokenizers import Tokenizer

    tok = Tokenizer.from_str(bpe.to_str())
    tok.enable_truncation(max_length=3)
    tok.enable_padding(length=64)
    count = tokenizer_counter(tok)
    assert count(SENTENCES) == [_tokens(bpe, s) for s in SENTENCES]
    assert tok.truncation["max_length"] == 3  # the caller's tokenizer is left as it was


def test_counter_wraps_a_transformers_fast_tokenizer(bpe):
    from transformers import PreTrainedTokenizerFast

    hf = PreTrainedTokenizerFast(tokenizer_object=bpe, name_or_path="acme/tiny")
    count = tokenizer_counter(hf)
    assert count(SENTENCES) == [_tokens(bpe, s) for s in SENTENCES]
    assert count.tokenizer_name == "acme/tiny"
    report = validate(jsonl(GOOD), count_tokens=count)
    assert report.stats.tokenizer == "acme/tiny"


def test_counter_rejects_other_objects():
    with pytest.raises(InvalidInput):
        tokenizer_counter(object())


def test_long_texts_are_counted_in_pieces(bpe):
    text = " ".join(SENTENCES) + " "
    long = text * (600_000 // len(text))
    seen = []

    def counter(texts):
        seen.append(sum(map(len, texts)))
        return tokenizer_counter(bpe)(texts)

    report = validate(jsonl(conv("a", ("user", "q"), ("assistant", long))), count_tokens=counter)
    assert report.stats.assistant_tokens == _tokens(bpe, long)
    assert max(seen) <= (1 << 20) + 256 * 1024 + 1024  # never one huge batch


def test_tokens_are_counted_in_batches():
    batches = []

    def counter(texts):
        batches.append(len(texts))
        return whitespace_counter(texts)

    report = validate(jsonl(*[conv(f"c{i}") for i in range(1000)]), count_tokens=counter)
    assert report.stats.total_tokens == validate(jsonl(*[conv(f"c{i}") for i in range(1000)])
                                                 ).stats.total_tokens
    assert len(batches) < 10 and max(batches) >= 512 and sum(batches) == 3000


def test_a_counter_returning_the_wrong_number_of_counts_raises():
    with pytest.raises(InvalidInput):
        validate(jsonl(GOOD), count_tokens=lambda texts: [1])


# ----- docs and the demo dataset -----------------------------------------------------------------
def test_docs_describe_every_format_and_issue_code():
    from backend.datasets.formats import FORMATS

    doc = (REPO / "docs" / "dataset-formats.md").read_text()
    for fmt in FORMATS:
        assert f"## {fmt}" in doc
    for code, (severity, _, _) in ISSUE_CODES.items():
        assert f"| `{code}` | {severity} |" in doc, code


def test_demo_dataset_is_valid():
    report = validate((REPO / "examples" / "demo-support-v4.jsonl").read_bytes())
    assert report.ok and report.format == "brightrun_lora_v4"
    assert report.stats.conversations == 40 and report.stats.training_pairs == 56
    assert report.issue_counts == {"missing_system_prompt": 4}
    assert report.stats.total_turns == 148


def test_second_example_openai_chat_is_valid():
    """examples/support-60-openai.jsonl: the second example (Larkspur Telecom, OpenAI chat) is read
    by the product's own detection and validation: 60 conversations, one persona, no issue."""
    from backend.datasets.formats import OPENAI, iter_conversations

    path = REPO / "examples" / "support-60-openai.jsonl"
    report = validate(path.read_bytes())
    assert report.ok and report.format == OPENAI
    assert report.error_count == report.warning_count == 0 and report.issues == []
    assert report.stats.conversations == 60 and report.stats.training_pairs == 110
    with path.open("rb") as f:
        conversations = [c for _, c in iter_conversations(f)]
    assert len(conversations) == 60
    assert all(c.turns[0]["role"] == "system" for c in conversations)
    assert len({c.turns[0]["content"] for c in conversations}) == 1
    assert all(c.turns[-1]["role"] == "assistant" for c in conversations)
    assert sorted(sum(t["role"] == "assistant" for t in c.turns) for c in conversations) \
        == [1] * 20 + [2] * 30 + [3] * 10
    assert len({json.dumps(c.turns) for c in conversations}) == 60
