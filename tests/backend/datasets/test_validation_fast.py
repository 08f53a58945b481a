"""The typed fast path (backend/datasets/validation_fast.py) and the block reader of validate_stream: lines
the typed decoder takes and lines it hands to the full check must give exactly the report of the
full check alone, for every message-list format; the typed decoder never accepts what orjson
refuses or reads differently."""
from __future__ import annotations

import io
import json
import random

import msgspec
import orjson
import pytest

from backend.datasets import validation
from backend.datasets.formats import MESSAGE_SPECS, OPENAI, SHAREGPT, V4
from backend.datasets.validation_fast import DECODERS, FAST_TOP, ROLE_OF

FORMATS = {"v4": V4, "openai": OPENAI, "sharegpt": SHAREGPT}
SYSTEM = "You are a bank support agent."


def good(fmt: str, cid: str | None = "c", system: bool = True, **extra) -> dict:
    """A valid line of ``fmt`` (v4 / openai / sharegpt)."""
    spec = MESSAGE_SPECS[FORMATS[fmt]]
    roles = {"system": "system", "user": "user", "assistant": "assistant"}
    if fmt == "sharegpt":
        roles = {"system": "system", "user": "human", "assistant": "gpt"}
    pairs = [("system", SYSTEM)] if system else []
    pairs += [("user", "How do I reset my PIN?"), ("assistant", "Open the app, then Cards.")]
    obj = {spec.list_key: [{spec.role_key: roles[r], spec.content_key: c} for r, c in pairs]}
    if cid is not None:
        obj["conversation_id"] = cid
    return obj | extra


def line_of(fmt: str, cid: str = "x", meta: bytes | None = None, content: bytes = b'"ok"',
            tail: bytes = b"") -> bytes:
    """A raw line with a chosen metadata value, assistant content and text after the object."""
    spec = MESSAGE_SPECS[FORMATS[fmt]]
    role = b"gpt" if fmt == "sharegpt" else b"assistant"
    user = b"human" if fmt == "sharegpt" else b"user"
    r, c = spec.role_key.encode(), spec.content_key.encode()
    out = (b'{"conversation_id": "' + cid.encode() + b'", "' + spec.list_key.encode() + b'": [{"'
           + r + b'": "' + user + b'", "' + c + b'": "q"}, {"' + r + b'": "' + role + b'", "' + c
           + b'": ' + content + b"}]")
    if meta is not None:
        out += b', "metadata": ' + meta
    return out + b"}" + tail


def encode(lines: list) -> bytes:
    return b"".join((x if isinstance(x, bytes) else json.dumps(x).encode()) + b"\n" for x in lines)


def full_only(self, lines, line_no):
    for raw in lines:
        line_no += 1
        self.one_line(line_no, raw)
    return line_no


def both(monkeypatch, data: bytes, **kw) -> tuple[dict, dict, int]:
    """(report with the fast path, report with the full check only, lines the full check saw
    with the fast path on)."""
    calls = {"n": 0}
    real = validation._Validation.one_line

    def counting(self, line_no, raw):
        calls["n"] += 1
        return real(self, line_no, raw)

    with monkeypatch.context() as m:
        m.setattr(validation._Validation, "one_line", counting)
        fast = validation.validate_stream(io.BytesIO(data), **kw).to_dict()
        fallbacks = calls["n"]
        m.setattr(validation._Validation, "_fast_loop", full_only)
        full = validation.validate_stream(io.BytesIO(data), **kw).to_dict()
    # The fast loop (today's as before this module) logs its pending missing_system_prompt lines at
    # the end even when there are none, which leaves a 0 count; the full check alone does not.
    if fast["issue_counts"].get("missing_system_prompt") == 0:
        del fast["issue_counts"]["missing_system_prompt"]
    return fast, full, fallbacks


# Lines (after three good ones) where orjson and msgspec differ or the fast path must step aside.
def tricky(fmt: str) -> dict[str, object]:
    spec = MESSAGE_SPECS[FORMATS[fmt]]
    g = good(fmt, "t")
    turns = g[spec.list_key]
    return {
        "plain": g,
        "no system (warning)": good(fmt, "t", system=False),
        "metadata flat": line_of(fmt, meta=b'{"a": 1, "b": "x", "c": [1, 2.5], "d": {"e": null}}'),
        "metadata null": line_of(fmt, meta=b"null"),
        "metadata nested deeper": line_of(fmt, meta=b'{"a": [[1]], "b": {"c": {"d": 1}}}'),
        "metadata not an object": line_of(fmt, meta=b"[1]"),
        "metadata u64 int": line_of(fmt, meta=b'{"a": 18446744073709551615}'),
        "metadata 25-digit int (orjson: float)": line_of(fmt, meta=b'{"a": ' + b"7" * 25 + b"}"),
        "metadata 400-digit int (orjson: invalid)": line_of(fmt, meta=b'{"a": ' + b"7" * 400
                                                             + b"}"),
        "metadata 400-digit int in list": line_of(fmt, meta=b'{"a": [' + b"7" * 400 + b"]}"),
        "metadata 1e400": line_of(fmt, meta=b'{"a": 1e400}'),
        "metadata NaN": line_of(fmt, meta=b'{"a": NaN}'),
        "metadata deep 2000": line_of(fmt, meta=b'{"a": ' + b"[" * 2000 + b"]" * 2000 + b"}"),
        "metadata invalid UTF-8": line_of(fmt, meta=b'{"a": "\xff"}'),
        "content invalid UTF-8": line_of(fmt, content=b'"caf\xe9"'),
        "content lone surrogate": line_of(fmt, content=b'"\\ud800"'),
        "content surrogate pair": line_of(fmt, content=b'"\\ud83d\\ude00"'),
        "content escaped NUL": line_of(fmt, content=b'"\\u0000"'),
        "content raw tab": line_of(fmt, content=b'"a\tb"'),
        "content escaped blank": line_of(fmt, content=b'"\\u00a0\\t"'),
        "content number": line_of(fmt, content=b"5"),
        "trailing data": line_of(fmt, tail=b" {}"),
        "trailing whitespace": line_of(fmt, tail=b" \t\r"),
        "duplicate top-level key": line_of(fmt)[:-1] + b', "conversation_id": "dup-last"}',
        "duplicate role key": line_of(fmt).replace(
            b'"q"}', b'"q", "' + spec.role_key.encode() + b'": "'
            + (b"gpt" if fmt == "sharegpt" else b"assistant") + b'"}'),
        "id key": good(fmt, None, id="i1"),
        "integer id": good(fmt, None, id=7),
        "null conversation_id": good(fmt, None, conversation_id=None),
        "integer conversation_id": good(fmt, None, conversation_id=3),
        "blank conversation_id": good(fmt, " "),
        "no id": good(fmt, None),
        "duplicate id": good(fmt, "g0"),
        "extra turn key": g | {spec.list_key: turns[:-1] + [turns[-1] | {"name": "bot"}]},
        "unknown role": g | {spec.list_key: turns[:-1] + [turns[-1] | {spec.role_key: "bot"}]},
        "roles reversed": g | {spec.list_key: turns[::-1]},
        "empty turns": g | {spec.list_key: []},
        "turn not an object": g | {spec.list_key: turns + ["x"]},
        "system key": good(fmt, "s", system=False) | {"system": SYSTEM},
        "unknown key": good(fmt, "u", extra=1),
        "other format": good("openai" if fmt != "openai" else "v4", "o"),
        "not an object": b"[1, 2]",
        "blank": b"   ",
        "invalid JSON": b'{"conversation_id": ',
    }


@pytest.mark.parametrize("skip_tokens", [True, False])
@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_each_tricky_line_gets_the_full_checks_report(monkeypatch, fmt, skip_tokens):
    prefix = [good(fmt, f"g{i}") for i in range(3)]
    for name, line in tricky(fmt).items():
        data = encode(prefix + [line, good(fmt, "after")])
        fast, full, _ = both(monkeypatch, data, skip_tokens=skip_tokens)
        assert fast == full, name


@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_mixed_file_matches_and_takes_the_typed_path(monkeypatch, fmt):
    rng = random.Random(fmt)
    cases = list(tricky(fmt).values())
    lines = [good(fmt, f"g{i}") for i in range(3)]
    for i in range(400):
        lines.append(rng.choice(cases) if rng.random() < 0.25 else
                     good(fmt, f"m{i}", system=rng.random() < 0.7, metadata={"i": i}))
    for skip_tokens in (True, False):
        fast, full, fallbacks = both(monkeypatch, encode(lines), skip_tokens=skip_tokens)
        assert fast == full
        assert fallbacks < 150  # about a quarter of the lines need the full check, not all
        assert fast["error_count"] > 20 and fast["stats"]["conversations"] > 250


def test_structs_take_exactly_the_fast_path_keys():
    for fmt, decoder in DECODERS.items():
        spec = MESSAGE_SPECS[fmt]
        fields = msgspec.structs.fields(decoder.type)
        assert {f.encode_name for f in fields} == FAST_TOP[fmt]
        messages = fields[0].type.__args__[0].__args__  # list[Union[one Struct per role]]
        assert sorted(ROLE_OF[m] for m in messages) == sorted(spec.role_map)
        for message in messages:
            info = msgspec.inspect.type_info(message)
            assert info.tag_field == spec.role_key and info.tag == ROLE_OF[message]
            assert [f.encode_name for f in info.fields] == [spec.content_key]


_PIECES = [b'"', b"\\", b"\\u", b"d800", b"dc00", b"\xff", b"\xc3\xa9", b"\xed\xa0\x80", b"\t",
           b"\x00", b"1", b"9" * 20, b"9" * 320, b"e999", b".", b"-", b"[", b"]", b"{", b"}", b",",
           b":", b"null", b"NaN", b" ", b"\n", b"true", b"\\n", b'"k":', b"\x7f"]


@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_typed_decoder_never_accepts_what_orjson_reads_differently(fmt):
    """Random byte-level edits of a good line: whenever the typed decoder accepts the result,
    orjson accepts it too, with the same id, roles, texts and an object-or-null metadata."""
    spec = MESSAGE_SPECS[FORMATS[fmt]]
    decode = DECODERS[FORMATS[fmt]].decode
    base = line_of(fmt, meta=b'{"a": [1, "x"], "b": 2.5}')
    rng = random.Random(7)
    accepted = 0
    for _ in range(4000):
        raw = bytearray(base)
        for _ in range(rng.randint(1, 3)):
            at = rng.randrange(len(raw) + 1)
            if rng.random() < 0.3:
                del raw[at:at + rng.randint(1, 4)]
            else:
                raw[at:at] = rng.choice(_PIECES)
        raw = bytes(raw)
        try:
            obj = decode(raw)
        except (msgspec.DecodeError, UnicodeDecodeError, RecursionError):
            continue
        accepted += 1
        ref = orjson.loads(raw)  # must not raise
        turns = ref[spec.list_key]
        assert obj.conversation_id == ref.get("conversation_id", msgspec.UNSET), raw
        assert [(ROLE_OF[type(t)], t.content) for t in obj.turns] == \
            [(t[spec.role_key], t[spec.content_key]) for t in turns], raw
        assert all(len(t) == 2 for t in turns), raw
        assert set(ref) <= FAST_TOP[FORMATS[fmt]], raw
        assert ref.get("metadata") is None or type(ref["metadata"]) is dict, raw
    assert accepted > 100  # the edits also hit harmless places (inside texts)


class ReadOnly:
    """A file object with only ``read`` (no fileno, readline or readinto), in short pieces."""

    def __init__(self, data: bytes, piece: int):
        self._data, self._pos, self._piece = data, 0, piece

    def read(self, n: int = -1) -> bytes:
        n = self._piece if n < 0 else min(n, self._piece)
        out = self._data[self._pos:self._pos + n]
        self._pos += len(out)
        return out

    def readline(self, limit: int = -1) -> bytes:  # only the first line is read with it
        end = self._data.find(b"\n", self._pos)
        end = len(self._data) if end < 0 else end + 1
        if limit >= 0:
            end = min(end, self._pos + limit)
        out = self._data[self._pos:end]
        self._pos = end
        return out


@pytest.mark.parametrize("piece", [1, 7, 4096])
def test_block_reader_over_a_file_object_with_short_reads(piece):
    lines = [good("v4", f"c{i}", system=i % 3 > 0) for i in range(60)]
    lines[20] = b"{oops"
    lines[30] = b'{"conversation_id": "long", "turns": [' + b" " * 3000 + b"]}"
    lines[40] = b""
    data = b"\xef\xbb\xbf" + encode(lines)
    expected = validation.validate_stream(io.BytesIO(data), max_line_bytes=1000).to_dict()
    got = validation.validate_stream(ReadOnly(data, piece), max_line_bytes=1000).to_dict()
    assert got == expected
    assert [(i["line"], i["code"]) for i in expected["issues"] if i["severity"] == "error"] == \
        [(21, "invalid_json"), (31, "line_too_long")]


def test_line_too_long_across_read_blocks(tmp_path, monkeypatch):
    """Lines longer than the limit straddling the 1 MiB read blocks: skipped with their size, the
    lines after them numbered and validated as before."""
    monkeypatch.setattr(validation, "READ_BLOCK", 4096)
    long_line = b'{"conversation_id": "long", "turns": [' + b" " * 10_000 + b"]}"
    lines = [good("v4", f"c{i}") for i in range(5)] + [long_line] * 3 + \
        [good("v4", f"d{i}") for i in range(300)] + [long_line]
    path = tmp_path / "f.jsonl"
    path.write_bytes(encode(lines))
    with path.open("rb") as fh:  # the file is larger than the limit: bounded readline
        report = validation.validate_stream(fh, max_line_bytes=5000)
    assert report.error_count == report.issue_counts["line_too_long"] == 4
    assert [i.line for i in report.issues] == [6, 7, 8, 309]
    assert report.issues[0].error.startswith(f"the line is {len(long_line) + 1} bytes long")
    assert report.stats.conversations == 305


def test_split_of_non_ascii_ids_is_the_same_in_the_statistics_and_the_plan():
    """The statistics keep each id's split key (the prefix state copied, then the id): the same
    BLAKE2b as backend.training.plan.held_out_indices."""
    from backend.datasets.stats import StatsAccumulator
    from backend.training.plan import held_out_indices

    rng = random.Random(3)
    ids = ["".join(rng.choice("abé€😀 -_09") for _ in range(rng.randint(0, 30))) for _ in range(3000)]
    weights = [rng.randint(0, 4) for _ in ids]
    for fraction, seed in ((0.1, 0), (0.5, 7), (0.9, 123)):
        acc = StatsAccumulator(None, fraction, seed)
        acc.add_split(ids, weights)
        held = held_out_indices(ids, fraction, seed)
        assert acc.held_out() == (len(held), sum(weights[i] for i in held))
