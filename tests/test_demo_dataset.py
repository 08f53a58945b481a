"""The "Try it" demo (examples/demo-support-v6.jsonl): the product's default split holds out
exactly its probe conversations, each asking a fact that training teaches 5 times in other words
(4 answer wordings, each naming its subject); the tuning probes (bench/demo_learning_bench.py tune)
are other questions again; the file is what its generator writes and validates without a problem."""
from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

from backend.datasets.validation import validate_stream
from backend.training.config import TrainingConfig
from backend.training.plan import held_out_indices
from backend.training.scoring import contains_fact, key_facts

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "examples" / "demo-support-v6.jsonl"


def _rows():
    return [json.loads(line) for line in DEMO.read_text().splitlines() if line.strip()]


def _generator():
    spec = importlib.util.spec_from_file_location("make_demo_v6", REPO / "examples" / "make_demo_v6.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _user_questions(rows, indices):
    return {t["content"] for i in indices for t in rows[i]["turns"] if t["role"] == "user"}


def test_default_split_holds_out_exactly_the_probes():
    rows = _rows()
    fraction = TrainingConfig.model_fields["validation_fraction"].default
    held = held_out_indices([r["conversation_id"] for r in rows], fraction, 0)
    assert len(rows) >= 140 and len(held) == 15
    assert {i for i, r in enumerate(rows) if r["metadata"].get("probe")} == set(held)
    trained = [i for i in range(len(rows)) if i not in held]
    taught = Counter(f for i in trained
                     for f in rows[i]["metadata"].get("facts") or key_facts(rows[i]["metadata"]))
    assert len(taught) == 30 and min(taught.values()) >= 5
    trained_questions = _user_questions(rows, trained)
    for i in held:
        (fact,) = key_facts(rows[i]["metadata"])
        question = rows[i]["turns"][-2]["content"]
        assert question not in trained_questions  # asked in new words
        assert contains_fact(rows[i]["turns"][-1]["content"], fact)  # the reference states it


def test_the_tuning_probes_are_held_out_and_are_not_the_reported_ones():
    gen = _generator()
    rows = gen.build(tuning=True)
    held = held_out_indices([r["conversation_id"] for r in rows], gen.TUNING_FRACTION, 0)
    assert len(held) == 30 == len({key_facts(rows[i]["metadata"])[0] for i in held})
    assert {i for i, r in enumerate(rows) if r["metadata"].get("probe")} == set(held)
    tuning_questions = _user_questions(rows, held)
    reported = _rows()
    reported_probes = [i for i, r in enumerate(reported) if r["metadata"].get("probe")]
    assert not tuning_questions & _user_questions(reported, range(len(reported)))
    # the same teaching conversations in both files
    assert ([r for r in rows if not r["metadata"].get("probe")]
            == [r for i, r in enumerate(reported) if i not in reported_probes])


def test_every_answer_names_its_fact_in_four_wordings():
    gen = _generator()
    for topic, fact, questions, answers, _, _ in gen.FACTS:
        assert len(set(questions)) == 5 and len(set(answers)) == 4, fact
        assert all(contains_fact(a, fact) for a in answers), fact


def test_every_answer_states_its_key_fact_and_the_file_validates():
    for r in _rows():
        answers = [t["content"] for t in r["turns"] if t["role"] == "assistant"]
        assert contains_fact(answers[-1], key_facts(r["metadata"])), r["conversation_id"]
        assert contains_fact(" ".join(answers), r["metadata"].get("facts")) is not False
    with DEMO.open("rb") as fh:
        report = validate_stream(fh)
    assert report.ok and report.error_count == 0 and report.warning_count == 0


def test_the_file_is_what_the_generator_writes(tmp_path):
    script = tmp_path / "make_demo_v6.py"
    script.write_text((REPO / "examples" / "make_demo_v6.py").read_text())
    subprocess.run([sys.executable, str(script)], check=True, capture_output=True, cwd=tmp_path)
    assert (tmp_path / "demo-support-v6.jsonl").read_text() == DEMO.read_text()
