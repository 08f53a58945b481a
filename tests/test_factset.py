"""The fact-set of issue 23's acceptance 2 (examples/factset-openai-*.jsonl): what its generator
writes, 90 + 18 valid OpenAI-format lines, held-out questions in new words, every answer stating
its own key fact and no other fact's; and bench/evaluate_check.py agreeing with an in-process
evaluation of a tiny adapter (and disagreeing when a stored ROUGE-L is tampered with)."""
from __future__ import annotations

import copy
import importlib.util
import json
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

from backend.datasets.formats import OPENAI, detect_format, iter_conversations
from backend.datasets.validation import validate_stream
from backend.training.scoring import contains_fact, key_facts

REPO = Path(__file__).resolve().parents[1]
TRAIN = REPO / "examples" / "factset-openai-train.jsonl"
HELDOUT = REPO / "examples" / "factset-openai-heldout.jsonl"


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _answers(row: dict) -> list[str]:
    return [m["content"] for m in row["messages"] if m["role"] == "assistant"]


def _questions(row: dict) -> list[str]:
    return [m["content"] for m in row["messages"] if m["role"] == "user"]


def test_the_files_are_what_the_generator_writes(tmp_path):
    script = tmp_path / "make_factset.py"
    script.write_text((REPO / "examples" / "make_factset.py").read_text())
    subprocess.run([sys.executable, str(script)], check=True, capture_output=True, cwd=tmp_path)
    assert (tmp_path / TRAIN.name).read_bytes() == TRAIN.read_bytes()
    assert (tmp_path / HELDOUT.name).read_bytes() == HELDOUT.read_bytes()


def test_90_and_18_valid_openai_lines():
    for path, n in ((TRAIN, 90), (HELDOUT, 18)):
        rows = _rows(path)
        assert len(rows) == n and all(detect_format(r) == OPENAI for r in rows)
        with path.open("rb") as fh:
            convs = [c for _, c in iter_conversations(fh)]
        assert len(convs) == n and all(key_facts(c.metadata) for c in convs)
        with path.open("rb") as fh:
            report = validate_stream(fh)
        assert report.ok and report.error_count == 0 and report.warning_count == 0
    systems = {r["messages"][0]["content"] for r in _rows(TRAIN) + _rows(HELDOUT)}
    assert len(systems) == 1 and all(r["messages"][0]["role"] == "system"
                                     for r in _rows(TRAIN) + _rows(HELDOUT))


def test_each_fact_taught_five_times_and_held_out_in_new_words():
    train, held = _rows(TRAIN), _rows(HELDOUT)
    by_fact: dict[str, list[dict]] = defaultdict(list)
    for r in train:
        by_fact[r["metadata"]["fact"]].append(r)
    assert len(by_fact) == 18 and all(len(v) == 5 for v in by_fact.values())
    assert sum(len(_answers(r)) == 2 for r in train) >= 3  # a few two-exchange conversations
    assert sorted(r["metadata"]["fact"] for r in held) == sorted(by_fact)
    for r in held:
        taught = by_fact[r["metadata"]["fact"]]
        assert {t["metadata"]["key_fact"] for t in taught} == {r["metadata"]["key_fact"]}
        trained_qs = {q.lower() for t in taught for q in _questions(t)}
        assert len({_questions(t)[-1] for t in taught}) == 5
        assert _questions(r)[-1].lower() not in trained_qs


def test_every_answer_states_its_key_fact_and_no_other():
    rows = _rows(TRAIN) + _rows(HELDOUT)
    facts = {r["metadata"]["fact"]: r["metadata"]["key_fact"] for r in rows}
    for r in rows:
        key = r["metadata"]["key_fact"]
        assert key in _answers(r)[-1] and contains_fact(_answers(r)[-1], key)
        for fact, other in facts.items():
            if fact == r["metadata"]["fact"]:
                continue
            for a in _answers(r):
                assert not contains_fact(a, other) and other.lower() not in a.lower(), (other, a)


# ----- bench/evaluate_check.py against the product's evaluation ----------------------------------
def _check_module():
    spec = importlib.util.spec_from_file_location("evaluate_check",
                                                  REPO / "bench" / "evaluate_check.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_evaluate_check_agrees_with_the_product(brightrun_home, tmp_path, tiny_model_dir):
    from backend.accounts.users import ensure_local_user
    from backend.evaluations import service as ev
    from backend.storage import get_object_store
    from ray_jobs import evaluate_model
    from tests.pages.conftest import make_dataset
    from tests.pages.job_helpers import finished_job

    actor = ensure_local_user()
    _, model_id = finished_job(actor, make_dataset(actor, "train").id, tmp_path, name="m",
                               real=True, base_dir=tiny_model_dir)
    three = tmp_path / "three.jsonl"
    three.write_text("".join(HELDOUT.read_text().splitlines(keepends=True)[:3]))
    test = make_dataset(actor, "three", content=three.read_bytes())
    info = ev.create_evaluation(actor, model_id, test.id, submit=False)
    assert evaluate_model.main(["--evaluation-id", info["id"]]) == 0
    evaluation = json.loads(json.dumps(ev.get_evaluation(actor, info["id"], rows=True)))
    assert evaluation["status"] == "completed", evaluation["error_message"]
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    store, prefix = get_object_store(), f"models/{model_id}/"
    for key in store.list(prefix):
        (adapter / key[len(prefix):]).parent.mkdir(parents=True, exist_ok=True)
        fh = store.open(key)
        try:
            (adapter / key[len(prefix):]).write_bytes(fh.read())
        finally:
            fh.close()
    check = _check_module()
    dataset = check.read_jsonl(three)
    scores = check.recompute_scores(evaluation, dataset)
    losses = check.recompute_losses(str(tiny_model_dir), str(adapter), dataset, 2048)
    assert losses["conversations"] == evaluation["conversations"] == 3
    args = check.argparse.Namespace(rouge_tol=0.02, loss_abs=0.02, loss_rel=0.01,
                                    min_adapter_facts=None, max_base_facts=None)
    ok, lines = check.verdict(evaluation, scores, losses, args)
    print("\n".join(lines))
    assert ok, lines
    assert abs(losses["base"] - evaluation["base_loss"]) < 1e-3
    assert abs(losses["adapter"] - evaluation["adapter_loss"]) < 1e-3
    tampered = copy.deepcopy(evaluation)
    tampered["scores"]["adapter"]["rouge_l"] += 0.1
    assert not check.verdict(tampered, check.recompute_scores(tampered, dataset), losses, args)[0]
    (tmp_path / "eval.json").write_text(json.dumps(tampered))
    rc = check.main(["--evaluation-json", str(tmp_path / "eval.json"), "--base-model",
                     str(tiny_model_dir), "--adapter", str(adapter), "--dataset", str(three)])
    assert rc == 1


def test_evaluate_check_marks_the_tokens_the_trainer_trains(tiny_model_dir):
    """The check's assistant-token mask equals the trainer's labels on every line of the set, for
    the tiny model ({% generation %} template) and, when cached, SmolLM2 (ChatML, no tags)."""
    import os

    import pytest
    from transformers import AutoTokenizer

    from backend.training.data import IGNORE_INDEX, encode_conversation

    check = _check_module()
    smollm = Path(os.environ.get("BRIGHTRUN_TEST_MODEL_HOME", "~/.cache/brightrun-test")
                  ).expanduser() / "base-models" / "smollm2-135m-instruct"
    folders = [tiny_model_dir] + ([smollm] if (smollm / "tokenizer.json").exists() else [])
    for folder in folders:
        tok = AutoTokenizer.from_pretrained(folder, local_files_only=True)
        for d in check.read_jsonl(TRAIN) + check.read_jsonl(HELDOUT):
            turns = check.turns_of(d)
            ids, mask = check.assistant_ids(tok, turns, 2048)
            enc = encode_conversation(tok, turns, 2048)
            assert ids == enc.input_ids and mask == [x != IGNORE_INDEX for x in enc.labels]
    if len(folders) == 1:
        pytest.skip("SmolLM2 not cached: checked the tiny model only")
