"""Format detection, normalisation to v4 turns, streaming reading and the held-out split."""
from __future__ import annotations

import io
import json
import subprocess
import sys

import pytest

from backend.core.errors import InvalidInput
from backend.datasets.formats import (
    ALPACA,
    FORMAT_LABELS,
    FORMATS,
    OPENAI,
    SHAREGPT,
    V3,
    V4,
    Conversation,
    detect_format,
    extract,
    iter_conversations,
    normalise,
)
from backend.training.plan import held_out_indices
from tests.fixtures.paths import REPO, SAMPLE_DATA

SHARED = SAMPLE_DATA

U, A, S = "user", "assistant", "system"


def turns(*pairs: tuple[str, str]) -> list[dict[str, str]]:
    return [{"role": r, "content": c} for r, c in pairs]


@pytest.mark.parametrize("obj,fmt", [
    ({"conversation_id": "a", "turns": []}, V4),
    ({"turns": []}, V4),
    ({"conversation_id": "a", "training_pairs": []}, V3),
    ({"messages": []}, OPENAI),
    ({"conversations": []}, SHAREGPT),
    ({"instruction": "x", "output": "y"}, ALPACA),
    ({"instruction": "x"}, ALPACA),
    ({"turns": [], "messages": []}, V4),  # detection order: v4 first
    ({"conversation_id": "a"}, None),
    ({"output": "y", "input": "x"}, None),
    ({}, None),
])
def test_detect_format(obj, fmt):
    assert detect_format(obj) == fmt


def test_every_format_has_a_label():
    assert set(FORMAT_LABELS) == set(FORMATS) == {V4, V3, OPENAI, SHAREGPT, ALPACA}
    assert all(FORMAT_LABELS.values())


@pytest.mark.parametrize("obj,fmt,expected", [
    # v4 passes through, metadata kept
    ({"conversation_id": "c1", "turns": turns((U, "hi"), (A, "hello")), "metadata": {"k": 1}}, V4,
     Conversation("c1", turns((U, "hi"), (A, "hello")), {"k": 1})),
    # v3: system prompt first, then the pairs
    ({"conversation_id": "c2", "system_prompt": "be nice",
      "training_pairs": [{"input": "q1", "output": "a1"}, {"input": "q2", "output": "a2"}]}, V3,
     Conversation("c2", turns((S, "be nice"), (U, "q1"), (A, "a1"), (U, "q2"), (A, "a2")))),
    # v3 without system prompt
    ({"conversation_id": "c3", "training_pairs": [{"input": "q", "output": "a"}]}, V3,
     Conversation("c3", turns((U, "q"), (A, "a")))),
    # OpenAI: developer is a system turn, name/weight allowed, id from `id` (number -> string)
    ({"id": 7, "messages": [{"role": "developer", "content": "sys"},
                            {"role": "user", "content": "q", "name": "bob"},
                            {"role": "assistant", "content": "a", "weight": 1}]}, OPENAI,
     Conversation("7", turns((S, "sys"), (U, "q"), (A, "a")))),
    # OpenAI without id: line-based id
    ({"messages": turns((U, "q"), (A, "a"))}, OPENAI, Conversation("line-4", turns((U, "q"), (A, "a")))),
    # ShareGPT: human/gpt/model, top-level system
    ({"conversations": [{"from": "human", "value": "q"}, {"from": "gpt", "value": "a"},
                        {"from": "user", "value": "q2"}, {"from": "model", "value": "a2"}],
      "system": "sys"}, SHAREGPT,
     Conversation("line-4", turns((S, "sys"), (U, "q"), (A, "a"), (U, "q2"), (A, "a2")))),
    ({"conversation_id": "s1", "conversations": [{"from": "system", "value": "sys"},
                                                 {"from": "human", "value": "q"},
                                                 {"from": "assistant", "value": "a"}]}, SHAREGPT,
     Conversation("s1", turns((S, "sys"), (U, "q"), (A, "a")))),
    # Alpaca: instruction + input in one user turn, optional system
    ({"instruction": "Translate", "input": "hola", "output": "hello", "system": "sys"}, ALPACA,
     Conversation("line-4", turns((S, "sys"), (U, "Translate\n\nhola"), (A, "hello")))),
    ({"instruction": "Say hi", "input": "", "output": "hi"}, ALPACA,
     Conversation("line-4", turns((U, "Say hi"), (A, "hi")))),
    ({"instruction": "Say hi", "output": "hi", "id": "al-1"}, ALPACA,
     Conversation("al-1", turns((U, "Say hi"), (A, "hi")))),
])
def test_normalise(obj, fmt, expected):
    assert detect_format(obj) == fmt
    assert normalise(obj, fmt, 4) == expected


@pytest.mark.parametrize("obj,fmt,code", [
    ({"turns": turns((U, "q"), (A, "a"))}, V4, "missing_key"),
    ({"conversation_id": "c", "turns": turns((U, "q"), (A, "a")), "extra": 1}, V4, "unknown_key"),
    ({"conversation_id": "c", "turns": "hello"}, V4, "wrong_type"),
    ({"conversation_id": 5, "turns": turns((U, "q"), (A, "a"))}, V4, "wrong_type"),
    ({"conversation_id": "c", "turns": turns(("customer", "q"), (A, "a"))}, V4, "unknown_role"),
    ({"conversation_id": "c", "turns": turns((U, " "), (A, "a"))}, V4, "empty_content"),
    ({"conversation_id": "c", "turns": [{"role": "user"}]}, V4, "missing_key"),
    ({"conversation_id": "c", "turns": [{"role": "user", "content": "q", "x": 1}]}, V4, "unknown_key"),
    ({"conversation_id": "c", "turns": ["q"]}, V4, "wrong_type"),
    ({"conversation_id": "c", "turns": [], "metadata": []}, V4, "wrong_type"),
    ({"conversation_id": "c", "training_pairs": [{"input": "q"}]}, V3, "missing_key"),
    ({"conversation_id": "c", "training_pairs": [{"input": "q", "output": 3}]}, V3, "wrong_type"),
    ({"conversation_id": "c", "training_pairs": [{"input": "q", "output": "a", "n": 1}]}, V3,
     "unknown_key"),
    ({"conversation_id": "c", "training_pairs": {}}, V3, "wrong_type"),
    ({"conversation_id": "c", "training_pairs": [], "system_prompt": 1}, V3, "wrong_type"),
    ({"messages": [{"role": "tool", "content": "x"}]}, OPENAI, "unknown_role"),
    ({"messages": [{"role": "assistant", "content": None}]}, OPENAI, "wrong_type"),
    ({"conversations": [{"from": "bot", "value": "x"}]}, SHAREGPT, "unknown_role"),
    ({"conversations": [{"from": "human", "text": "x"}]}, SHAREGPT, "missing_key"),
    ({"conversations": [], "system": 3}, SHAREGPT, "wrong_type"),
    ({"instruction": "x"}, ALPACA, "missing_key"),
    ({"instruction": "", "output": "y"}, ALPACA, "empty_content"),
    ({"instruction": "x", "output": "y", "history": []}, ALPACA, "unknown_key"),
    ({"instruction": "x", "output": "y", "input": 1}, ALPACA, "wrong_type"),
])
def test_structural_problems(obj, fmt, code):
    _, problems = extract(obj, fmt, 1)
    assert code in [p[0] for p in problems]
    with pytest.raises(InvalidInput) as exc:
        normalise(obj, fmt, 9)
    assert "line 9" in str(exc.value)


def test_extract_reports_every_problem_of_a_line():
    obj = {"turns": [{"role": "bot", "content": ""}, {"role": "user"}, 3], "zzz": 1}
    _, problems = extract(obj, V4, 1)
    assert sorted(p[0] for p in problems) == ["empty_content", "missing_key", "missing_key",
                                              "unknown_key", "unknown_role", "wrong_type"]


def test_normalise_rejects_unknown_format_and_non_objects():
    with pytest.raises(InvalidInput) as exc:
        normalise({"turns": []}, "csv", 1)
    assert exc.value.code == "unknown_format"
    with pytest.raises(InvalidInput) as exc:
        normalise(["x"], V4, 1)  # type: ignore[arg-type]
    assert exc.value.code == "not_object"


def _jsonl(*objs, sep=b"\n") -> bytes:
    return sep.join(json.dumps(o).encode() for o in objs) + sep


def test_iter_conversations_streams_with_bom_crlf_and_blank_lines():
    a = {"conversation_id": "a", "turns": turns((U, "q"), (A, "a"))}
    b = {"conversation_id": "b", "training_pairs": [{"input": "q", "output": "a"}]}
    data = b"\xef\xbb\xbf" + _jsonl(a, sep=b"\r\n") + b"\r\n  \r\n" + _jsonl(b, sep=b"\r\n")
    got = list(iter_conversations(io.BytesIO(data)))
    assert [(n, c.conversation_id) for n, c in got] == [(1, "a"), (4, "b")]
    assert got[1][1].turns == turns((U, "q"), (A, "a"))


def test_iter_conversations_reads_the_shared_samples_alike():
    v4 = list(iter_conversations((SHARED / "sample-v4.jsonl").open("rb")))
    v3 = list(iter_conversations((SHARED / "sample-v3.jsonl").open("rb"), fmt=V3))
    assert len(v4) == len(v3) == 5
    assert [c.turns for _, c in v4] == [c.turns for _, c in v3]


@pytest.mark.parametrize("data,code", [
    (b'{"turns": [\n', "invalid_json"),
    (b'[1, 2]\n', "not_object"),
    (b'{"foo": 1}\n', "unknown_format"),
    (b'{"conversation_id": "c", "turns": [{"role": "bot", "content": "x"}]}\n', "unknown_role"),
])
def test_iter_conversations_raises_naming_the_line(data, code):
    good = _jsonl({"conversation_id": "a", "turns": turns((U, "q"), (A, "a"))})
    with pytest.raises(InvalidInput) as exc:
        list(iter_conversations(io.BytesIO(good + data)))
    assert exc.value.code == code and "line 2" in str(exc.value)


def test_iter_conversations_refuses_text_mode():
    with pytest.raises(InvalidInput):
        list(iter_conversations(io.StringIO('{"turns": []}\n')))  # type: ignore[arg-type]


# ----- held-out split: exact, in backend/training/plan.py (tests/backend/training/test_plan.py) --
def test_split_is_stable_across_processes():
    """hash() is salted per process; the split must not be."""
    code = ("from backend.training.plan import held_out_indices;"
            "print(sorted(held_out_indices([f'conv-{i:05d}' for i in range(500)], 0.1)))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                         check=True, env={"PYTHONHASHSEED": "123", "PATH": "/usr/bin:/bin"})
    ids = [f"conv-{i:05d}" for i in range(500)]
    assert out.stdout.strip() == str(sorted(held_out_indices(ids, 0.1)))
