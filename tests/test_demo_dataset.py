"""The "Try it" demo (examples/demo-support-v5.jsonl): the product's default split holds out
exactly its probe conversations, each asking a fact that training teaches at least 4 times in
other words; the file is what its generator writes and validates without a problem."""
from __future__ import annotations

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
DEMO = REPO / "examples" / "demo-support-v5.jsonl"


def _rows():
    return [json.loads(line) for line in DEMO.read_text().splitlines() if line.strip()]


def test_default_split_holds_out_exactly_the_probes():
    rows = _rows()
    fraction = TrainingConfig.model_fields["validation_fraction"].default
    held = held_out_indices([r["conversation_id"] for r in rows], fraction, 0)
    assert len(rows) >= 110 and len(held) == 12
    assert {i for i, r in enumerate(rows) if r["metadata"].get("probe")} == set(held)
    taught = Counter(f for i, r in enumerate(rows) if i not in held
                     for f in r["metadata"].get("facts") or key_facts(r["metadata"]))
    assert len(taught) == 30 and min(taught.values()) >= 4
    trained_questions = {t["content"] for i, r in enumerate(rows) if i not in held
                         for t in r["turns"] if t["role"] == "user"}
    for i in held:
        (fact,) = key_facts(rows[i]["metadata"])
        assert taught[fact] >= 4
        question = rows[i]["turns"][-2]["content"]
        assert question not in trained_questions  # asked in new words
        assert contains_fact(rows[i]["turns"][-1]["content"], fact)  # the reference states it


def test_every_answer_states_its_key_fact_and_the_file_validates():
    for r in _rows():
        answers = [t["content"] for t in r["turns"] if t["role"] == "assistant"]
        assert contains_fact(answers[-1], key_facts(r["metadata"])), r["conversation_id"]
        assert contains_fact(" ".join(answers), r["metadata"].get("facts")) is not False
    with DEMO.open("rb") as fh:
        report = validate_stream(fh)
    assert report.ok and report.error_count == 0 and report.warning_count == 0


def test_the_file_is_what_the_generator_writes(tmp_path):
    script = tmp_path / "make_demo_v5.py"
    script.write_text((REPO / "examples" / "make_demo_v5.py").read_text())
    subprocess.run([sys.executable, str(script)], check=True, capture_output=True, cwd=tmp_path)
    assert (tmp_path / "demo-support-v5.jsonl").read_text() == DEMO.read_text()
