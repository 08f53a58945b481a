"""Multi-process validation: on generated files (every issue code spread over the range boundaries,
duplicate ids in different ranges, mixed formats, BOM, CRLF, blank lines, a line straddling the
naive split points, binary data mid-file, token counting with a real tokenizer) ``validate_path``
must return exactly what ``validate_stream`` returns on the same file."""
from __future__ import annotations

import gzip
import json
import multiprocessing
import operator
import random
import subprocess
import sys
from concurrent.futures import ProcessPoolExecutor

import pytest

from backend.core.errors import InvalidInput
from backend.datasets import validation_parallel as vp
from backend.datasets.stats import tokenizer_counter, whitespace_counter
from backend.datasets.validation import ISSUE_CODES, validate_stream
from tests.fixtures.paths import REPO

SYSTEM = {"role": "system", "content": "You are a bank support agent."}
WORDS = "card pin reset transfer refund fee balance limit app branch please thanks".split()
BAD_UTF8 = b'{"conversation_id": "u", "turns": [{"role": "user", "content": "caf\xe9"}]}'


def text(rng: random.Random, low: int = 3, high: int = 30) -> str:
    return " ".join(rng.choices(WORDS, k=rng.randint(low, high)))


def v4(rng: random.Random, cid, *, system: bool | None = None, **extra) -> dict:
    turns = [SYSTEM] if (rng.random() < 0.7 if system is None else system) else []
    for _ in range(rng.randint(1, 3)):
        turns += [{"role": "user", "content": text(rng)},
                  {"role": "assistant", "content": text(rng)}]
    return {"conversation_id": cid, "turns": turns, **extra}


def messages(rng: random.Random, **extra) -> dict:
    turns = v4(rng, "x")["turns"]
    return {"messages": turns, **extra}


def encode(items, crlf_every: int = 0) -> bytes:
    out = []
    for i, item in enumerate(items):
        line = item if isinstance(item, bytes) else json.dumps(item).encode()
        out.append(line + (b"\r\n" if crlf_every and i % crlf_every == 0 else b"\n"))
    return b"".join(out)


def bad_lines(rng: random.Random, file_format: str = "v4") -> list:
    """One line per line-level issue code (and a few variants), for a file of ``file_format``."""
    other = v4(rng, "other-format") if file_format != "v4" else \
        {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]}
    return [
        BAD_UTF8, b'{"conversation_id": "x", "turns": [', b'"just a string"', b"[1, 2]",
        {"turns": v4(rng, "a")["turns"]}, {"conversation_id": "no-main-key"},
        v4(rng, "k", extra_field=1), {"conversation_id": "w", "turns": "hello"},
        v4(rng, "m", metadata="not an object"), {"conversation_id": 5, "turns": []},
        v4(rng, "r", system=False) | {"turns": [{"role": "customer", "content": "hi"},
                                                 {"role": "assistant", "content": "ok"}]},
        v4(rng, "e", system=False) | {"turns": [{"role": "user", "content": "  \n"},
                                                 {"role": "assistant", "content": "ok"}]},
        {"conversation_id": "n", "turns": [{"role": "user", "content": "anyone?"}]},
        {"conversation_id": "alt", "turns": [{"role": "user", "content": "a"},
                                             {"role": "user", "content": "b"},
                                             {"role": "assistant", "content": "c"}]},
        other, {"instruction": "a", "output": "b"},
        b'{"conversation_id": "long", "turns": [{"role": "user", "content": "'
        + b"z " * 2000 + b'"}]}',  # line_too_long with max_line_bytes=3000
        b"", b"   ", b"\t",
    ]


def noisy(seed: int = 1, n: int = 500, file_format: str = "v4") -> bytes:
    """Good conversations with a bad line every 5th line (cycling through every code), ids reused
    from earlier lines now and then, unknown_format and not_object before the format is known."""
    rng = random.Random(seed)
    bad = bad_lines(rng, file_format)
    items: list = [{"question": "q", "answer": "a"}, b"42"]
    for i in range(n):
        if i % 5 == 3:
            items.append(bad[(i // 5) % len(bad)])
        elif i % 23 == 0 and i:
            items.append(v4(rng, f"c{rng.randrange(i)}"))  # a duplicate id, maybe across ranges
        else:
            items.append(v4(rng, f"c{i}") if file_format == "v4" else messages(rng))
    return encode(items, crlf_every=7)


def duplicates(seed: int = 2, n: int = 600) -> bytes:
    """Ids used again in later ranges and within a range, an id first used on a line with an
    error, the same id three times, and ``line-N`` ids (numbered like lines without ids)."""
    rng = random.Random(seed)
    items: list = [v4(rng, f"d{i}") for i in range(n)]
    for i in range(40, n, 37):
        items[i] = v4(rng, f"d{rng.randrange(n)}")
    items[20] = v4(rng, "first-on-error", bogus=True)
    items[450] = v4(rng, "first-on-error")
    for line in (10, 300, 550):
        items[line - 1] = v4(rng, "three-times", system=False)
    items[249] = v4(rng, "line-250")  # on line 250: validate_stream's fast loop registers it
    items[499] = v4(rng, "line-250")
    return encode(items)


def mixed_openai(seed: int = 3, n: int = 500) -> bytes:
    """OpenAI lines mostly without ids (their held-out split hashes ``line-N``), int and string
    ids, duplicates among them, v4 and ShareGPT lines mixed in."""
    rng = random.Random(seed)
    items: list = []
    for i in range(n):
        if i % 17 == 5:
            items.append(v4(rng, f"v{i}"))
        elif i % 19 == 7:
            items.append({"conversations": [{"from": "human", "value": "hi"},
                                            {"from": "gpt", "value": "hello"}]})
        elif i % 11 == 0:
            items.append(messages(rng, id=i // 100))  # int ids, repeated
        elif i % 13 == 0:
            items.append(messages(rng, conversation_id=f"o{i % 200}"))
        else:
            items.append(messages(rng))
    return encode(items)


def alpaca(seed: int = 4, n: int = 500) -> bytes:
    """Alpaca (never on validate_stream's fast loop), with errors and duplicate ids."""
    rng = random.Random(seed)
    items: list = []
    for i in range(n):
        row = {"instruction": text(rng), "output": text(rng), "id": f"a{i % 300}"}
        if i % 9 == 0:
            row["input"] = text(rng)
        if i % 31 == 0:
            row["output"] = " "
        if i % 37 == 0:
            row["extra"] = 1
        items.append(row)
    return encode(items)


def bom_crlf_blank(seed: int = 5, n: int = 400) -> bytes:
    rng = random.Random(seed)
    items: list = [v4(rng, f"b{i}") if i % 6 else b"" for i in range(n)]
    return b"\xef\xbb\xbf" + encode(items, crlf_every=2).rstrip(b"\r\n")  # no newline at the end


def straddle(seed: int = 6) -> bytes:
    """A line holding the naive split points of 3 ranges (and all 2-range points' neighbours)."""
    rng = random.Random(seed)
    head = encode([v4(rng, f"s{i}") for i in range(60)])
    long = {"conversation_id": "long", "turns": [
        {"role": "user", "content": "q"}, {"role": "assistant", "content": "word " * 20000}]}
    return head + encode([long]) + encode([v4(rng, f"t{i}") for i in range(60)])


def binary_mid(seed: int = 7) -> bytes:
    rng = random.Random(seed)
    items: list = [v4(rng, f"n{i}") for i in range(600)]
    items[330] = b'{"conversation_id": "nul", "turns": [\x00\x00]}'
    return encode(items)


# name -> (file bytes, validate kwargs, workers, ranges expected (0: one process))
CASES = {
    "valid": (lambda: encode([v4(random.Random(i), f"c{i}") for i in range(400)]), {}, 3, 3),
    "noisy": (noisy, {"max_line_bytes": 3000, "max_seq_length": 60}, 3, 3),
    "noisy, 7 issues stored": (noisy, {"max_line_bytes": 3000, "max_issues_stored": 7}, 2, 2),
    "noisy, no issues stored": (noisy, {"max_line_bytes": 3000, "max_issues_stored": 0}, 2, 2),
    "noisy openai": (lambda: noisy(8, file_format="openai"), {"max_line_bytes": 3000}, 3, 3),
    "duplicates": (duplicates, {}, 3, 3),
    "mixed formats": (mixed_openai, {"validation_fraction": 0.5}, 3, 3),
    "declared v4": (mixed_openai, {"declared_format": "brightrun_lora_v4"}, 2, 2),
    "declared openai": (noisy, {"declared_format": "openai_chat", "max_line_bytes": 3000}, 2, 2),
    "declared auto": (duplicates, {"declared_format": "auto"}, 2, 2),
    "alpaca": (alpaca, {"max_seq_length": 30}, 3, 3),
    "BOM, CRLF, blank lines": (bom_crlf_blank, {}, 3, 3),
    "line straddling the split points": (straddle, {"max_seq_length": 100}, 3, 2),
    "binary data mid-file": (binary_mid, {}, 3, 3),
    "too few conversations": (duplicates, {"min_conversations": 10**6, "skip_tokens": True}, 2, 2),
    "empty": (lambda: b"", {}, 2, 0),
    "blank lines only": (lambda: b"\n  \n\r\n", {}, 2, 0),
    "gzip": (lambda: gzip.compress(encode([v4(random.Random(0), "g")] * 50)), {}, 2, 0),
    "two conversations": (lambda: encode([v4(random.Random(0), "x"), v4(random.Random(1), "y")]),
                          {}, 2, 0),
    "nothing valid": (lambda: b"not json\n" * 500, {}, 2, 0),
}


@pytest.fixture(scope="module")
def pool():
    with ProcessPoolExecutor(3, mp_context=multiprocessing.get_context("spawn")) as executor:
        list(executor.map(abs, range(3)))  # start the processes once for the whole module
        yield executor


@pytest.fixture
def spy(monkeypatch):
    """Records the ranges validate_path ran in parallel and the ids it validated again."""
    seen: dict[str, list] = {"ranges": [], "reruns": []}
    parallel, ids_used_earlier = vp._parallel, vp._ids_used_earlier

    def record_parallel(path, head, ranges, *args):
        seen["ranges"].append(ranges)
        return parallel(path, head, ranges, *args)

    def record_reruns(results):
        seeds = ids_used_earlier(results)
        seen["reruns"].append(seeds)
        return seeds

    monkeypatch.setattr(vp, "_parallel", record_parallel)
    monkeypatch.setattr(vp, "_ids_used_earlier", record_reruns)
    return seen


def sequential(path, **kwargs) -> dict:
    with open(path, "rb") as fh:
        return validate_stream(fh, **kwargs).to_dict()


def same_json(a: dict, b: dict) -> bool:
    """Equal, keys in the same order too (the report is stored and shown as JSON)."""
    return json.dumps(a) == json.dumps(b)


@pytest.mark.parametrize("name", list(CASES))
def test_same_report_as_validate_stream(name, tmp_path, pool, spy):
    make, kwargs, workers, n_ranges = CASES[name]
    path = tmp_path / "data.jsonl"
    path.write_bytes(make())
    report = vp.validate_path(path, workers=workers, min_bytes_per_worker=1, executor=pool,
                              **kwargs).to_dict()
    expected = sequential(path, **kwargs)
    assert report == expected and same_json(report, expected)
    assert [len(r) for r in spy["ranges"]] == ([n_ranges] if n_ranges else [])


def test_the_noisy_file_has_every_issue_code_in_several_ranges(tmp_path, pool, spy):
    path = tmp_path / "noisy.jsonl"
    path.write_bytes(noisy())
    kwargs = {"max_line_bytes": 3000, "max_seq_length": 60, "max_issues_stored": 10**6}
    report = vp.validate_path(path, workers=3, min_bytes_per_worker=1, executor=pool, **kwargs)
    assert report.to_dict() == sequential(path, **kwargs)
    file_level = {"too_few_conversations", "empty_file", "binary_file"}
    assert set(report.issue_counts) == set(ISSUE_CODES) - file_level
    (ranges,) = spy["ranges"]
    data = path.read_bytes()
    starts = [data[:start].count(b"\n") + 1 for start, _ in ranges]
    where: dict[str, set] = {}
    for issue in report.issues:
        where.setdefault(issue.code, set()).add(sum(issue.line >= s for s in starts))
    assert where.pop("unknown_format") == {1}  # only before the format is known (line 1)
    assert all(len(found) >= 2 for found in where.values()), where


def test_duplicate_ids_in_earlier_ranges_are_found_again(tmp_path, pool, spy):
    path = tmp_path / "dup.jsonl"
    path.write_bytes(duplicates())
    report = vp.validate_path(path, workers=3, min_bytes_per_worker=1, executor=pool)
    messages = {(i.line, i.error) for i in report.issues if i.code == "duplicate_id"}
    assert (300, "conversation_id 'three-times' was already used on line 10") in messages
    assert (550, "conversation_id 'three-times' was already used on line 10") in messages
    assert (451, "conversation_id 'first-on-error' was already used on line 21") in messages
    assert (500, "conversation_id 'line-250' was already used on line 250") in messages
    (seeds,) = spy["reruns"]
    assert set(seeds) == {1, 2} and seeds[2]["three-times"] == 10


def test_a_head_longer_than_head_bytes_is_validated_in_one_process(tmp_path, pool, spy,
                                                                   monkeypatch):
    monkeypatch.setattr(vp, "HEAD_BYTES", 500)
    path = tmp_path / "noisy.jsonl"
    path.write_bytes(noisy())  # 2 bad lines first: the third conversation ends past 500 bytes
    report = vp.validate_path(path, workers=2, min_bytes_per_worker=1, executor=pool,
                              max_line_bytes=3000)
    assert report.to_dict() == sequential(path, max_line_bytes=3000) and spy["ranges"] == []
    monkeypatch.setattr(vp, "HEAD_BYTES", 5000)
    assert vp.validate_path(path, workers=2, min_bytes_per_worker=1, executor=pool,
                            max_line_bytes=3000).to_dict() == sequential(path, max_line_bytes=3000)
    assert len(spy["ranges"]) == 1


def test_binary_data_ends_the_file_in_its_range(tmp_path, pool, spy):
    path = tmp_path / "nul.jsonl"
    path.write_bytes(binary_mid())
    report = vp.validate_path(path, workers=3, min_bytes_per_worker=1, executor=pool)
    assert report.stats.lines == 331 and report.issue_counts["binary_file"] == 1
    assert report.issues[-1].line == 331 and not report.ok


def test_token_counts_with_a_tokenizer_file(tmp_path, pool, spy):
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.train_from_iterator(WORDS * 20, trainers.BpeTrainer(vocab_size=60, special_tokens=["<unk>"],
                                                           show_progress=False))
    tok_file = tmp_path / "tokenizer.json"
    tok.save(str(tok_file))
    path = tmp_path / "data.jsonl"
    path.write_bytes(noisy(9))
    kwargs = {"max_line_bytes": 3000, "max_seq_length": 150}
    report = vp.validate_path(f"file://{path}", workers=3, min_bytes_per_worker=1, executor=pool,
                              tokenizer_path=tok_file, **kwargs).to_dict()
    expected = sequential(path, count_tokens=tokenizer_counter(Tokenizer.from_file(str(tok_file))),
                          **kwargs)
    assert report == expected and report["issue_counts"]["truncated"] > 0
    assert report["stats"]["total_tokens"] > 2 * report["stats"]["total_turns"]
    assert len(spy["ranges"][0]) == 3


def test_token_counts_with_a_hugging_face_tokenizer_folder(tmp_path, spy):
    """The tiny model's tokenizer saved as a folder, loaded with AutoTokenizer in each process of
    a pool started by validate_path itself."""
    from transformers import AutoTokenizer

    from backend.base_models.tiny_model import build_tokenizer

    folder = tmp_path / "tok"
    build_tokenizer().save_pretrained(folder)
    path = tmp_path / "data.jsonl"
    path.write_bytes(duplicates(10))
    report = vp.validate_path(path, workers=2, min_bytes_per_worker=1, tokenizer_path=folder,
                              tokenizer_name="tiny", max_seq_length=40).to_dict()
    counter = tokenizer_counter(AutoTokenizer.from_pretrained(folder, local_files_only=True))
    expected = sequential(path, count_tokens=counter, tokenizer_name="tiny", max_seq_length=40)
    assert report == expected and report["stats"]["tokenizer"] == "tiny"
    assert report["issue_counts"]["truncated"] > 0 and len(spy["ranges"][0]) == 2


def test_a_picklable_count_tokens_is_used_and_its_errors_propagate(tmp_path, pool):
    path = tmp_path / "data.jsonl"
    path.write_bytes(duplicates())
    report = vp.validate_path(path, workers=2, min_bytes_per_worker=1, executor=pool,
                              count_tokens=whitespace_counter, tokenizer_name="words")
    assert report.to_dict() == sequential(path, count_tokens=whitespace_counter,
                                          tokenizer_name="words")
    with pytest.raises(IndexError):  # itemgetter(10**9)(texts): a picklable counter that fails
        vp.validate_path(path, workers=2, min_bytes_per_worker=1, executor=pool,
                         count_tokens=operator.itemgetter(10**9))


def test_a_pool_of_its_own_started_with_spawn(tmp_path, monkeypatch, spy):
    monkeypatch.setattr(vp, "mp_context", lambda: multiprocessing.get_context("spawn"))
    path = tmp_path / "dup.jsonl"
    path.write_bytes(duplicates())
    report = vp.validate_path(path, workers=3, min_bytes_per_worker=1).to_dict()
    assert report == sequential(path) and len(spy["ranges"][0]) == 3 and spy["reruns"][0]


FORK_SCRIPT = """
import json, sys
from backend.datasets import validation_parallel as vp
from backend.datasets.validation import validate_stream
method = vp.mp_context().get_start_method()
report = vp.validate_path(sys.argv[1], workers=3, min_bytes_per_worker=1).to_dict()
with open(sys.argv[1], "rb") as fh:
    expected = validate_stream(fh).to_dict()
print(json.dumps({"method": method, "same": report == expected}))
"""


def test_a_fresh_single_threaded_process_forks_its_workers(tmp_path):
    """In a process of its own: this one has threads (the module's pool) and tokenizers loaded."""
    path = tmp_path / "dup.jsonl"
    path.write_bytes(duplicates())
    out = subprocess.run([sys.executable, "-c", FORK_SCRIPT, str(path)], cwd=REPO, check=True,
                         capture_output=True, text=True, timeout=120)
    assert json.loads(out.stdout) == {"method": "fork", "same": True}


def test_fork_only_on_linux_with_one_thread_and_no_torch_or_tokenizers(monkeypatch):
    monkeypatch.setattr(vp, "_FORK_UNSAFE", ("no_such_module_here",))
    monkeypatch.setattr(vp.sys, "platform", "linux")
    monkeypatch.setattr(vp.threading, "active_count", lambda: 1)
    assert vp.mp_context().get_start_method() == "fork"
    monkeypatch.setattr(vp, "_FORK_UNSAFE", ("json",))  # imported: like torch in this process
    assert vp.mp_context().get_start_method() == "spawn"
    monkeypatch.setattr(vp, "_FORK_UNSAFE", ("no_such_module_here",))
    monkeypatch.setattr(vp.threading, "active_count", lambda: 2)
    assert vp.mp_context().get_start_method() == "spawn"
    monkeypatch.setattr(vp.threading, "active_count", lambda: 1)
    monkeypatch.setattr(vp.sys, "platform", "darwin")
    assert vp.mp_context().get_start_method() == "spawn"


def test_small_files_and_one_worker_use_validate_stream(tmp_path, spy):
    path = tmp_path / "data.jsonl"
    path.write_bytes(duplicates())
    size = path.stat().st_size
    for kwargs in ({"workers": 1, "min_bytes_per_worker": 1},
                   {"workers": 4, "min_bytes_per_worker": size // 2 + 1}, {}):
        assert vp.validate_path(path, **kwargs).to_dict() == sequential(path)
    assert spy["ranges"] == []


@pytest.mark.parametrize("kwargs, message", [
    ({"workers": 0}, "workers must be at least 1"),
    ({"min_bytes_per_worker": 0}, "min_bytes_per_worker"),
    ({"count_tokens": lambda texts: [1] * len(texts)}, "cannot be sent to worker processes"),
    ({"count_tokens": whitespace_counter, "tokenizer_path": "."}, "not both"),
    ({"tokenizer_path": "/no/such/tokenizer"}, "does not exist"),
    ({"declared_format": "csv"}, "unknown dataset format"),
    ({"validation_fraction": 2.0}, "not between 0 and 1"),
])
def test_bad_arguments_are_refused(kwargs, message, tmp_path):
    path = tmp_path / "data.jsonl"
    path.write_bytes(b"{}\n")
    with pytest.raises(InvalidInput, match=message):
        vp.validate_path(path, **kwargs)


def test_only_local_files():
    with pytest.raises(InvalidInput, match="not a local file"):
        vp.validate_path("s3://bucket/data.jsonl")
    with pytest.raises(FileNotFoundError):
        vp.validate_path("file:///no/such/file.jsonl")


def test_ranges_are_cut_after_newlines_and_line_numbers_add_up(tmp_path):
    path = tmp_path / "data.jsonl"
    options = {"declared_format": None, "count_tokens": None, "max_seq_length": 2048,
               "min_conversations": 1, "validation_fraction": 0.1, "max_issues_stored": 100,
               "tokenizer_name": None, "skip_tokens": True, "max_line_bytes": 1 << 20}
    path.write_bytes(straddle())
    head, ranges = vp.plan_ranges(str(path), 3, options)
    assert len(ranges) == 2  # the long line holds both split points
    assert vp.plan_ranges(str(path), 1, options) is None
    data = straddle() + noisy(11)
    path.write_bytes(data)
    head, ranges = vp.plan_ranges(str(path), 4, options)
    assert ranges[0][0] == 0 and ranges[-1][1] == len(data) and ranges[0][1] >= head.end
    assert all(a[1] == b[0] and data[b[0] - 1:b[0]] == b"\n" for a, b in zip(ranges, ranges[1:]))
    assert (head.fmt, head.fmt_source) == ("brightrun_lora_v4", "detected on line 1")
    assert sum(vp.count_newlines(str(path), *r) for r in ranges) == data.count(b"\n")
