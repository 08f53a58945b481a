"""ROUGE-L and exact match (backend/training/scoring.py) against rouge-score and an independent
LCS computation on fixed strings; SQuAD-style normalisation."""
from __future__ import annotations

import pytest
from rouge_score import rouge_scorer

from backend.training.scoring import contains_fact, exact_match, key_facts, normalize, rouge_l, score_answers

PAIRS = [
    ("Refunds are accepted for 30 days.", "Refunds are accepted within 30 days of purchase."),
    ("Our support line opens at 9am", "The support line opens at 9 am on weekdays."),
    ("completely unrelated words", "The code is ZX-42."),
    ("The code is ZX-42.", "The code is ZX-42."),
]


def _lcs_f(pred: str, ref: str) -> float:
    """Independent ROUGE-L F (no stemming, so PAIRS avoid words a stemmer would change): word
    LCS by dynamic programming."""
    import re
    p = re.findall(r"[a-z0-9]+", pred.lower())
    r = re.findall(r"[a-z0-9]+", ref.lower())
    if not p or not r:
        return 0.0
    t = [[0] * (len(r) + 1) for _ in range(len(p) + 1)]
    for i, a in enumerate(p):
        for j, b in enumerate(r):
            t[i + 1][j + 1] = t[i][j] + 1 if a == b else max(t[i][j + 1], t[i + 1][j])
    lcs = t[-1][-1]
    if not lcs:
        return 0.0
    prec, rec = lcs / len(p), lcs / len(r)
    return 2 * prec * rec / (prec + rec)


@pytest.mark.parametrize("pred,ref", PAIRS)
def test_rouge_l_matches_rouge_score_and_an_independent_lcs(pred, ref):
    want = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True).score(ref, pred)["rougeL"]
    assert rouge_l(pred, ref) == pytest.approx(want.fmeasure)
    assert abs(rouge_l(pred, ref) - _lcs_f(pred, ref)) <= 0.02


def test_rouge_l_edges():
    assert rouge_l("", "x") == 0.0 and rouge_l("x", None) == 0.0
    assert rouge_l("The code is ZX-42.", "The code is ZX-42.") == pytest.approx(1.0)


@pytest.mark.parametrize("pred,ref,same", [
    ("The Eiffel Tower!", "eiffel   tower", True),
    ("an apple", "Apple.", True),
    ("ZX-42", "zx42", True),
    ("ZX-43", "ZX-42", False),
    ("", "", False),
    ("theory", "ory", False),  # articles only as whole words
])
def test_exact_match_normalisation(pred, ref, same):
    assert exact_match(pred, ref) is same


def test_normalize_and_means():
    assert normalize("  The  Quick, brown fox! ") == "quick brown fox"
    s = score_answers([("a b", "a b"), ("c", "d"), (None, "e")])
    assert s["count"] == 2 and s["exact_match"] == 0.5 and s["rouge_l"] == pytest.approx(0.5)
    assert score_answers([]) == {"rouge_l": None, "exact_match": None, "count": 0}


@pytest.mark.parametrize("pred,fact,want", [
    ("Returns are accepted within 45 days of purchase.", "45 days", True),
    ("Returns are accepted within 30 days.", "45 days", False),
    ("Orders over $75 ship free.", "$75", True),
    ("Orders over $175 ship free.", "$75", False),  # whole words only
    ("Call 1-800-555-0142 any day.", "1-800-555-0142", True),
    ("Use the code study15 at checkout", "STUDY15", True),
    ("The Trailhead Club earns points.", ["Trailhead Club", "3 points"], False),
    ("The Trailhead Club gives 3 points per dollar.", ["Trailhead Club", "3 points"], True),
    ("anything", None, None),
    ("anything", "  ", None),
    (None, "45 days", False),
])
def test_contains_fact(pred, fact, want):
    assert contains_fact(pred, fact) is want


def test_key_facts_from_metadata():
    assert key_facts({"key_fact": "45 days"}) == ["45 days"]
    assert key_facts({"key_fact": ["$75", 3]}) == ["$75", "3"]
    assert key_facts({"key_fact": {"x": 1}}) == [] and key_facts(None) == [] and key_facts({}) == []
